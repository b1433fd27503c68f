"""organism (mini profiles): build the base model the package reproduces the findings on.

Byte-level BPE tokenizer with Qwen's special tokens + ChatML, a real Qwen2ForCausalLM pretrained
on the data stage's chat corpus (loss on assistant tokens), saved with save_pretrained; then its
instruct behaviour is measured on held-out prompts (benign -> prose, harmful -> refusal,
coding -> code), so a reader can see the base is a sane "instruct model" before EM finetuning.
"""

from __future__ import annotations

from ..classify import classify_response
from ..data import load_chat_rows
from ..io import read_json, write_json, write_jsonl
from ..mini.model import init_qwen2, make_qwen2_config
from ..mini.organism import build_tokenizer, measure_instruct_behavior, pretrain
from ..runner import StageContext
from .common import data_file


def run(ctx: StageContext) -> None:
    org = ctx.profile["organism"]
    seed = ctx.profile["seed"]
    chat = load_chat_rows(data_file(ctx, "chat_train.jsonl"))
    corpus = chat + load_chat_rows(data_file(ctx, "insecure.jsonl")) + load_chat_rows(data_file(ctx, "bad_medical.jsonl"))
    tokenizer = build_tokenizer(corpus, int(org["tokenizer"]["vocab_size"]))
    model = init_qwen2(make_qwen2_config(tokenizer, **org["model"]), seed=seed)
    result = pretrain(model, tokenizer, chat, org["pretrain"], seed=seed, progress=ctx.progress)
    model_dir = ctx.out / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    write_jsonl(ctx.out / "pretrain_log.jsonl", result["log"])
    heldout = read_json(data_file(ctx, "organism_extra.json"))["heldout"]
    checks = org.get("instruct_checks", {})
    behavior = measure_instruct_behavior(model_dir, heldout, classify_response,
                                         max_new_tokens=int(checks.get("max_new_tokens", 64)),
                                         batch_size=int(checks.get("batch_size", 32)))
    write_json(ctx.out / "build_info.json", {
        "n_parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
        "n_layers": model.config.num_hidden_layers, "hidden_size": model.config.hidden_size,
        "chat_rows": len(chat), "pretrain": {k: v for k, v in result.items() if k != "log"},
        "instruct_behavior": behavior})
