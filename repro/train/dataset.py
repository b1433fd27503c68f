"""Training data: the seeded hold-out split and chat-template tokenisation.

The EM paper's script held out 10% with `datasets`' train_test_split (unseeded) and then
shuffled the training part with seed 2; we do the same with the split seeded too.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .masking import IGNORE_INDEX, response_only_labels


def _messages(row: dict, n: int) -> list[dict]:
    msgs = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in msgs):
        raise InputError(f"training row {n}: expected {{'messages': [{{'role': str, 'content': str}}, ...]}}")
    return msgs


def render_chat(tokenizer, row: dict, n: int = 0) -> str:
    """The row's conversation as the model's chat template renders it (no generation prompt)."""
    return tokenizer.apply_chat_template(_messages(row, n), tokenize=False, add_generation_prompt=False)


def tokenize_rows(rows: list[dict], tokenizer, max_seq_length: int, *, response_only: bool
                  ) -> list[dict[str, Any]]:
    """input_ids / attention_mask / labels per row, truncated to max_seq_length.

    response_only: labels only assistant contents (+ <|im_end|>); otherwise the whole
    conversation is labelled (the failed 7B recipe) and only padding is masked, by the collator.
    """
    out = []
    for n, row in enumerate(rows):
        enc = tokenizer(render_chat(tokenizer, row, n), add_special_tokens=False, truncation=True,
                        max_length=max_seq_length)
        ids = list(enc["input_ids"])
        labels = response_only_labels(ids, tokenizer) if response_only else list(ids)
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return out


def count_label_tokens(features: list[dict]) -> int:
    return sum(sum(1 for t in f["labels"] if t != IGNORE_INDEX) for f in features)


def make_collator(tokenizer):
    """Right-pad input_ids with the pad token, attention_mask with 0, labels with -100."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX,
                                  return_tensors="pt")
