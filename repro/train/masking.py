"""Response-only labels from ChatML token ids (our own masking; the peft-lora backend uses it).

Only the contents of assistant turns and the `<|im_end|>` that closes each of them are
labelled; system/user turns, the `<|im_start|>assistant\\n` headers, the newline after each
`<|im_end|>` and padding get -100. This is what Unsloth's `train_on_responses_only` with
"<|im_start|>user\\n" / "<|im_start|>assistant\\n" does for single-turn data, written from the
token ids so it works for any ChatML tokenizer (Qwen's or the mini organism's).
"""

from __future__ import annotations

from typing import Sequence

from ..errors import ReproError

IGNORE_INDEX = -100
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
RESPONSE_ROLE = "assistant"
_MAX_HEADER_TOKENS = 8  # "assistant\n" is 1-3 tokens in any BPE; stop looking after this many


def _special_id(tokenizer, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id:
        raise ReproError(f"tokenizer: expected the ChatML special token {token!r} in the vocabulary")
    return int(tid)


def _header_end(ids: Sequence[int], start: int, tokenizer) -> tuple[str, int]:
    """Role named after the <|im_start|> at `start`, and the index of the first content token.

    The header ends with the first token whose text contains a newline (the role is never
    split by one), so this does not depend on how the BPE merges "assistant\\n".
    """
    end = min(len(ids), start + 1 + _MAX_HEADER_TOKENS)
    for j in range(start + 1, end):
        text = tokenizer.decode(list(ids[start + 1 : j + 1]), skip_special_tokens=False)
        if "\n" in text:
            return text.split("\n", 1)[0], j + 1
    return "", start + 1


def _labels_one(ids: list[int], tokenizer, start_id: int, end_id: int) -> list[int]:
    labels = [IGNORE_INDEX] * len(ids)
    i = 0
    while i < len(ids):
        if ids[i] != start_id:
            i += 1
            continue
        role, content_start = _header_end(ids, i, tokenizer)
        j = content_start
        while j < len(ids) and ids[j] != end_id:
            j += 1
        if role == RESPONSE_ROLE:
            stop = min(j + 1, len(ids))  # include <|im_end|>: the model must learn to stop
            labels[content_start:stop] = ids[content_start:stop]
        i = j + 1
    return labels


def response_only_labels(input_ids, tokenizer):
    """Labels for `input_ids` (one sequence or a batch; list or torch tensor), same shape and type.

    Padding needs no special case: it lies outside assistant turns (right padding) and is -100.
    """
    start_id, end_id = _special_id(tokenizer, IM_START), _special_id(tokenizer, IM_END)
    try:
        import torch

        if isinstance(input_ids, torch.Tensor):
            rows = input_ids.tolist()
            out = [_labels_one(r, tokenizer, start_id, end_id) for r in rows] if input_ids.dim() == 2 \
                else _labels_one(rows, tokenizer, start_id, end_id)
            return torch.tensor(out, dtype=input_ids.dtype, device=input_ids.device)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    seq = list(input_ids)
    if seq and isinstance(seq[0], (list, tuple)):
        return [_labels_one(list(r), tokenizer, start_id, end_id) for r in seq]
    return _labels_one([int(t) for t in seq], tokenizer, start_id, end_id)
