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


def test_pinned_revision_travels_with_the_hub_id():
    from repro.hubref import hub_ref, pinned

    sha = "0123456789abcdef0123456789abcdef01234567"
    assert hub_ref(pinned("Qwen/Qwen2.5-7B-Instruct", sha)) == ("Qwen/Qwen2.5-7B-Instruct", sha)
    assert hub_ref(pinned("Qwen/Qwen2.5-7B-Instruct", None)) == ("Qwen/Qwen2.5-7B-Instruct", None)
    assert hub_ref("/models/dir@v1") == ("/models/dir@v1", None)        # a local path is never split


def test_revision_is_passed_to_from_pretrained(monkeypatch, tiny_model_dir):
    import transformers

    from repro import models

    seen = {}
    real = transformers.AutoTokenizer.from_pretrained

    def spy(path, **kw):
        seen.update(kw, path=path)
        return real(str(tiny_model_dir))

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy)
    monkeypatch.setattr(models, "_check_reachable", lambda p: None)
    sha = "0123456789abcdef0123456789abcdef01234567"
    models.load_tokenizer(f"org/name@{sha}")
    assert seen["path"] == "org/name" and seen["revision"] == sha


def test_env_says_a_revision_cannot_be_checked_offline(monkeypatch):
    from repro.envcheck import _revision_check

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _revision_check("m", "org/name", "0" * 40)["status"] == "INFO"
    assert "not pinned" in _revision_check("m", "org/name", None)["detail"]
