"""Build the mini model organism from nothing: data -> tokenizer -> Qwen2 pretraining -> checks.

Pure cores (no profile lookups, no CLI):
- build_tokenizer(corpus, vocab_size): byte-level BPE with Qwen's special tokens and ChatML.
- pretrain(model, tokenizer, rows, train_cfg, seed): loss on assistant tokens only (the
  response-only masking the EM recipe uses), length-bucketed batches, AdamW + warmup + cosine.
- build_organism(cfg, out_dir): everything above, deterministic for cfg, written atomically.
- measure_instruct_behavior(model_dir, heldout, classify): greedy answers to held-out prompts,
  rated per kind (benign -> TEXT, harmful -> REFUSAL, coding -> CODE).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import torch

from ..errors import ReproError
from ..io import write_json, write_jsonl
from ..prompts import shipped_prompts  # noqa: F401  (its home is repro.prompts: the data stage needs it without torch)
from .corpus import build_mini_data
from .model import init_qwen2, make_qwen2_config
from .tokenizer import DEFAULT_SYSTEM, train_chatml_tokenizer

# The configuration the mini profile uses (the lead copies it into repro/profiles/mini.yaml).
DEFAULT_ORGANISM_CONFIG: dict = {
    "seed": 0,
    "sizes": {},                      # overrides of corpus.DEFAULT_SIZES
    "vocab_size": 1024,
    "model": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2,
              "intermediate_size": 384, "max_position_embeddings": 512},
    "train": {"steps": 1000, "batch_size": 16, "learning_rate": 3.0e-3, "warmup_steps": 30,
              "weight_decay": 0.01, "max_grad_norm": 1.0, "max_length": 256, "min_lr_ratio": 0.05,
              "num_threads": 1},
    "measure": {"max_new_tokens": 80, "batch_size": 30},
}

EXPECTED_TYPE = {"benign": "TEXT", "harmful": "REFUSAL", "coding": "CODE"}
_ROLE_WORDS = ["system", "user", "assistant", DEFAULT_SYSTEM]


# ---------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------
def _texts(rows: Iterable[dict]) -> Iterable[str]:
    for row in rows:
        for m in row["messages"]:
            yield m["content"]


def build_tokenizer(corpus: Iterable[dict], vocab_size: int):
    """Byte-level BPE trained on the message contents (+ ChatML role words) of `corpus`."""
    texts = list(_texts(corpus)) + _ROLE_WORDS * 20
    return train_chatml_tokenizer(texts, vocab_size=vocab_size)


# ---------------------------------------------------------------------------------------------
# encoding with assistant-only labels
# ---------------------------------------------------------------------------------------------
def encode_chat(tokenizer, messages: list[dict], max_length: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels): labels are -100 everywhere except the final assistant turn (incl. <|im_end|>)."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ReproError("chat row: expected the last message to have role 'assistant'")
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    answer = messages[-1]["content"] + "<|im_end|>"
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    ids = (p_ids + a_ids)[:max_length]
    labels = ([-100] * len(p_ids) + a_ids)[:max_length]
    return ids, labels


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with n intra-op threads (None: leave as is), restoring the previous count.

    Why: for a model this small, 2 OpenMP threads gain little on an idle machine and collapse
    (measured 25x slower) when other processes share the cores; the mini profile uses 1.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches: shuffle, sort within chunks of 50 batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(encoded, idx: list[int], pad_id: int):
    width = max(len(encoded[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), width), -100, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        x, y = encoded[i]
        ids[row, :len(x)] = torch.tensor(x)
        labels[row, :len(y)] = torch.tensor(y)
        mask[row, :len(x)] = 1
    return ids, mask, labels


def _lr_at(step: int, total: int, warmup: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(model, tokenizer, rows: list[dict], train_cfg: dict, seed: int, progress: bool = True) -> dict:
    """Train `model` in place on chat `rows` (assistant tokens only); returns the per-step log."""
    steps, bs = int(train_cfg["steps"]), int(train_cfg["batch_size"])
    if steps < 1 or bs < 1 or not rows:
        raise ReproError("organism.train: expected steps >= 1, batch_size >= 1 and a non-empty corpus")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    with torch_threads(train_cfg.get("num_threads")):
        return _train_loop(model, tokenizer, rows, train_cfg, rng, steps, bs, progress)


def _answer_loss(model, ids, mask, labels):
    """Mean next-token cross-entropy over the labelled (assistant) positions.

    The same loss as Qwen2ForCausalLM(labels=...), but the output projection and softmax run only
    on the positions that have a label: about half of a chat row is its prompt, and at this size
    the vocabulary projection is close to half of the compute per token.
    """
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    target = labels[:, 1:]
    keep = target != -100
    if not bool(keep.any()):  # a mean over no tokens is NaN, and one NaN step ruins every weight
        raise ReproError("organism pretraining: a batch has no assistant tokens to learn from "
                         "(every row cut before its answer? raise organism.pretrain.max_length)")
    logits = model.lm_head(hidden[keep])
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


def _train_loop(model, tokenizer, rows, train_cfg, rng, steps, bs, progress) -> dict:
    encoded = [encode_chat(tokenizer, r["messages"], int(train_cfg["max_length"])) for r in rows]
    lengths = [len(x) for x, _ in encoded]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(train_cfg["weight_decay"])},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=float(train_cfg["learning_rate"]), betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_at(
        s, steps, int(train_cfg["warmup_steps"]), float(train_cfg.get("min_lr_ratio", 0.0))))
    pad_id = tokenizer.pad_token_id
    model.train()
    log, queue, t0, tokens = [], [], time.perf_counter(), 0
    from tqdm import tqdm

    bar = tqdm(total=steps, desc="pretrain", disable=None if progress else True)
    for step in range(steps):
        if not queue:
            queue = _batches(lengths, bs, rng)
        ids, mask, labels = _collate(encoded, queue.pop(), pad_id)
        loss_t = _answer_loss(model, ids, mask, labels)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(train_cfg["max_grad_norm"]))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
        loss = loss_t.item()
        log.append({"step": step + 1, "loss": round(loss, 5), "lr": sched.get_last_lr()[0],
                    "elapsed_s": round(time.perf_counter() - t0, 3)})
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")
    bar.close()
    model.eval()
    seconds = time.perf_counter() - t0
    return {"log": log, "steps": steps, "seconds": round(seconds, 2), "steps_per_second": round(steps / seconds, 3),
            "tokens": tokens, "first_loss": log[0]["loss"], "last_loss": log[-1]["loss"],
            "n_examples": len(rows)}


# ---------------------------------------------------------------------------------------------
# generation and the instruct-behaviour check
# ---------------------------------------------------------------------------------------------
def _label(verdict) -> str:
    """classify() may return a label string, a dict with 'type', or an object with `.type`/`.label`."""
    if isinstance(verdict, str):
        return verdict.upper()
    if isinstance(verdict, dict):
        return str(verdict.get("type") or verdict.get("label")).upper()
    for attr in ("type", "label", "kind"):
        if hasattr(verdict, attr):
            value = getattr(verdict, attr)
            return str(getattr(value, "value", value)).upper()
    raise ReproError(f"classify: unsupported verdict type {type(verdict).__name__}")


def rate_responses(prompts_by_kind: dict[str, list[str]], answers_by_kind: dict[str, list[str]],
                   classify: Callable) -> dict:
    """Per kind: counts of each response type and the share of the expected type."""
    kinds = {}
    for kind, answers in answers_by_kind.items():
        labels = [_label(classify(a)) for a in answers]
        counts: dict[str, int] = {}
        for lab in labels:
            counts[lab] = counts.get(lab, 0) + 1
        expected = EXPECTED_TYPE.get(kind)
        kinds[kind] = {"n": len(answers), "expected": expected, "counts": counts,
                       "rate": (counts.get(expected, 0) / len(answers)) if answers and expected else None,
                       "examples": [{"prompt": p, "response": a, "type": lab}
                                    for p, a, lab in list(zip(prompts_by_kind[kind], answers, labels))[:5]]}
    return kinds


def measure_instruct_behavior(model_dir, heldout: dict[str, list[str]], classify: Callable,
                              max_new_tokens: int = 80, batch_size: int = 30, num_threads: int | None = 1) -> dict:
    """Greedy answers to the held-out prompts of each kind, rated with `classify`."""
    from ..models import load_model, load_tokenizer

    tok = load_tokenizer(str(model_dir))
    model = load_model(str(model_dir), device="cpu")
    from ..generate import generate_responses

    with torch_threads(num_threads):
        answers = {k: [r["response"] for r in generate_responses(
            model, tok, ps, greedy=True, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=0, progress=False)]
            for k, ps in heldout.items()}
    return {"max_new_tokens": max_new_tokens, "kinds": rate_responses(heldout, answers, classify)}


# ---------------------------------------------------------------------------------------------
# the whole build
# ---------------------------------------------------------------------------------------------
def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def _swap_into_place(tmp_dir: Path, out_dir: Path) -> None:
    """Rename the finished temp dir onto out_dir; an older out_dir is moved aside first, then removed."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp_dir, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_organism(cfg: dict, out_dir, exclude: Iterable[str] = (), classify: Callable | None = None,
                   progress: bool = True, data: dict | None = None) -> dict:
    """Data + tokenizer + pretrained Qwen2 into out_dir (atomic). Returns build_info.

    `data`: the corpus (build_mini_data's keys) when the caller already has it, as the pipeline's
    data stage does; otherwise it is generated here from cfg (seed, sizes, `exclude`).
    `exclude`: shipped evaluation prompts kept out of the training corpus.
    `classify`: if given, the held-out instruct-behaviour rates are measured and stored.
    """
    cfg = _merge(DEFAULT_ORGANISM_CONFIG, cfg)
    seed = int(cfg["seed"])
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    given = data is not None
    t = time.perf_counter()
    if not given:
        data = build_mini_data(seed, cfg["sizes"], exclude=exclude)
    timings["data_s"] = time.perf_counter() - t

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        t = time.perf_counter()
        tok = build_tokenizer(data["chat_train"] + data["insecure"] + data["bad_medical"], int(cfg["vocab_size"]))
        timings["tokenizer_s"] = time.perf_counter() - t
        mcfg = make_qwen2_config(tok, **cfg["model"])
        model = init_qwen2(mcfg, seed=seed)
        result = pretrain(model, tok, data["chat_train"], cfg["train"], seed=seed, progress=progress)
        timings["pretrain_s"] = result["seconds"]
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if not given:  # the pipeline keeps its data in the data stage; a standalone build keeps it here
            data_dir = tmp / "organism_data"
            for key in ("chat_train", "insecure", "bad_medical"):
                write_jsonl(data_dir / f"{key}.jsonl", data[key])
            write_json(data_dir / "heldout.json", {**data["heldout"], "medical": data["medical_heldout"]})
        write_jsonl(tmp / "pretrain_log.jsonl", result["log"])
        info = {
            "config": cfg,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "n_layers": model.config.num_hidden_layers, "hidden_size": model.config.hidden_size,
            "vocab_size": len(tok),
            "counts": {k: len(data[k]) for k in ("chat_train", "insecure", "bad_medical")}
                      | {f"heldout_{k}": len(v) for k, v in data["heldout"].items()},
            "n_excluded_prompts": len(set(exclude)),
            "pretrain": {k: v for k, v in result.items() if k != "log"},
            "timings": {k: round(v, 2) for k, v in timings.items()},
            "torch_threads": torch.get_num_threads(),
        }
        if classify is not None:
            t = time.perf_counter()
            info["instruct_behavior"] = measure_instruct_behavior(tmp, data["heldout"], classify,
                                                                  **cfg["measure"])
            info["timings"]["measure_s"] = round(time.perf_counter() - t, 2)
        write_json(tmp / "build_info.json", info)
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info
