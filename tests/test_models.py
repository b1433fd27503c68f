import pytest

from repro.errors import ReproError
from repro.models import load_model, load_tokenizer


def test_load_local_model_and_tokenizer(tiny_model_dir):
    model = load_model(str(tiny_model_dir))
    tok = load_tokenizer(str(tiny_model_dir))
    assert not model.training and tok.pad_token == "<|endoftext|>"


@pytest.mark.parametrize("bad", ["./no/such/dir", "not-a-hub-id", "/tmp"])
def test_unknown_model_is_one_line_error(bad):
    with pytest.raises(ReproError) as err:
        load_model(bad)
    assert "\n" not in str(err.value)
