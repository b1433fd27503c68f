"""Loading models and tokenizers the same way for every profile.

Paper profile: hub ids (Qwen/..., unsloth/...). Mini/test profiles: local directories written by
`save_pretrained`. Both go through `from_pretrained` with safetensors only and no remote code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import ReproError
from .hubref import hub_ref

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ReproError(f"dtype: expected one of {sorted(_DTYPES)}, got {name!r}")
    dtype = _DTYPES[name]
    # bf16 matmuls on CPU are slow and some kernels are missing; compute in fp32 there.
    if dtype != torch.float32 and not torch.cuda.is_available():
        return torch.float32
    return dtype


def _check_reachable(path_or_id: str) -> None:
    p = Path(path_or_id)
    if p.exists():
        if not (p / "config.json").exists():
            raise ReproError(f"{p}: not a model directory (expected config.json from save_pretrained)")
        return
    if os.environ.get("HF_HUB_OFFLINE") == "1" or path_or_id.startswith((".", "/")) or path_or_id.count("/") != 1:
        raise ReproError(f"model {path_or_id!r}: not a local directory and not a hub id of the form org/name")


def load_tokenizer(path_or_id: str):
    from transformers import AutoTokenizer

    path_or_id, revision = hub_ref(path_or_id)
    _check_reachable(path_or_id)
    try:
        tok = AutoTokenizer.from_pretrained(path_or_id, revision=revision, trust_remote_code=False)
    except OSError as exc:  # unknown hub id, no network, missing files
        raise ReproError(f"tokenizer {path_or_id!r}: cannot load ({str(exc).splitlines()[0]})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path_or_id: str, *, adapter: str | None = None, dtype: str = "float32", device: str | None = None):
    """AutoModelForCausalLM.from_pretrained (+ an optional PEFT adapter), eval mode, safetensors only."""
    from transformers import AutoModelForCausalLM

    path_or_id, revision = hub_ref(path_or_id)
    _check_reachable(path_or_id)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path_or_id, revision=revision, dtype=resolve_dtype(dtype), use_safetensors=True, trust_remote_code=False,
        )
    except OSError as exc:
        raise ReproError(f"model {path_or_id!r}: cannot load ({str(exc).splitlines()[0]})") from None
    if adapter is not None:
        from peft import PeftModel

        adapter_id, adapter_rev = hub_ref(adapter)
        if Path(adapter_id).exists() and not (Path(adapter_id) / "adapter_config.json").exists():
            raise ReproError(f"{adapter}: not a PEFT adapter directory (expected adapter_config.json)")
        if not Path(adapter_id).exists():
            _check_reachable(adapter_id)
        try:
            model = PeftModel.from_pretrained(model, adapter_id, revision=adapter_rev)
        except (OSError, ValueError) as exc:
            raise ReproError(f"adapter {adapter!r}: cannot load ({str(exc).splitlines()[0]})") from None
    model.to(device)
    model.eval()
    return model
