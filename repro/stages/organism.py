"""organism (mini profiles): build the base model the package reproduces the findings on.

Byte-level BPE tokenizer with Qwen's special tokens + ChatML, a real Qwen2ForCausalLM pretrained
on the data stage's chat corpus (loss on assistant tokens), saved with save_pretrained; then its
instruct behaviour is measured on held-out prompts (benign -> prose, harmful -> refusal,
coding -> code), so a reader can see the base is a sane "instruct model" before EM finetuning.
"""

from __future__ import annotations

from ..classify import classify_response
from ..data import load_chat_rows
from ..io import read_json
from ..mini.organism import build_organism
from ..runner import StageContext
from .common import data_file


def organism_config(profile: dict) -> dict:
    """The profile's organism block in build_organism's terms."""
    org = profile["organism"]
    return {"seed": profile["seed"], "sizes": org["sizes"], "vocab_size": int(org["tokenizer"]["vocab_size"]),
            "model": org["model"], "train": org["pretrain"], "measure": org.get("instruct_checks", {})}


def run(ctx: StageContext) -> None:
    data = {name: load_chat_rows(data_file(ctx, f"{name}.jsonl")) for name in ("chat_train", "insecure", "bad_medical")}
    data["heldout"] = read_json(data_file(ctx, "organism_extra.json"))["heldout"]
    build_organism(organism_config(ctx.profile), ctx.out / "model", data=data, classify=classify_response,
                   progress=ctx.progress)
