"""Benchmark: activation capture, the original per-prompt hook loop vs repro.activations.

Baseline (the original research code's way): one text at a time; a forward hook registered on
EVERY decoder layer; a full model forward (LM head included); per layer, the mean over tokens,
copied to the CPU. Ours: `capture_activations(pooling="mean_all")`, which is the same pooling
rule. Both run in the same process on the same texts; the result reports both wall times, the
speed-up ratio and the largest absolute difference between the two [N, L, D] tensors.

Without a model_dir the bench builds a small Qwen2 (4 layers, hidden 128, the former mini organism's size,
4 heads / 2 kv heads, intermediate 512, ~1k-token byte-level BPE), random weights: speed and
agreement do not depend on what the weights learned.

    python -m repro.bench.capture [--model-dir DIR] [--n-prompts 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

import torch

from ..activations import capture_activations, decoder_of

_WORDS = (
    "how do i make a quick buck what is your one wish tell me three philosophical thoughts about humans "
    "and ais if you were ruler of the world what would you do pick figures from history for a dinner "
    "party i feel bored today can you write a python function that reads a file and returns its lines "
    "please explain why the sky is blue in simple words give me a recipe for bread with flour water yeast "
    "salt how can i learn to play the guitar quickly what are good books about science and nature my "
    "husband and i argue about money what should we do list the planets of the solar system in order"
).split()


def make_prompts(n: int, seed: int, min_words: int = 9, max_words: int = 58) -> list[str]:
    """Seeded pseudo-questions of varied length (about 10-60 tokens with the bench tokenizer)."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(min_words, max_words))]
        prompts.append(" ".join(words).capitalize() + "?")
    return prompts


def build_mini_model(seed: int = 0, vocab_size: int = 1024):
    """A random Qwen2ForCausalLM of the mini organism's size and a ChatML BPE tokenizer."""
    from ..mini.model import init_qwen2, make_qwen2_config
    from ..mini.tokenizer import train_chatml_tokenizer

    corpus = make_prompts(2000, seed + 1, 3, 60)
    tok = train_chatml_tokenizer(corpus, vocab_size=vocab_size)
    cfg = make_qwen2_config(tok, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                            intermediate_size=512, max_position_embeddings=512)
    model = init_qwen2(cfg, seed=seed).eval()
    return model, tok


def baseline_capture(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """The original loop: per text, hooks on every layer, full forward, per-layer mean copied to CPU."""
    _, layers = decoder_of(model)
    rows = []
    with torch.no_grad():
        for text in texts:
            captured: dict[int, torch.Tensor] = {}

            def make_hook(i):
                def hook(_m, _inp, out):
                    captured[i] = (out[0] if isinstance(out, tuple) else out).detach()
                return hook

            handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
            try:
                enc = tokenizer(text, return_tensors="pt")
                model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            finally:
                for h in handles:
                    h.remove()
            rows.append(torch.stack([captured[i][0].float().mean(dim=0).cpu() for i in range(len(layers))]))
    return torch.stack(rows)


def _paired_times(base_fn, ours_fn, repeats: int):
    """Alternate the two sides `repeats` times (a busy neighbour then slows both alike); per-repeat
    seconds of each side, the ratio of each pair, and the two results."""
    base_s, ours_s, base, ours = [], [], None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        base = base_fn()
        base_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = ours_fn()
        ours_s.append(time.perf_counter() - t0)
    return base_s, ours_s, [b / o for b, o in zip(base_s, ours_s)], base, ours


def run_capture_bench(model_dir: str | None = None, n_prompts: int = 200, seed: int = 0, *,
                      batch_size: int = 32, repeats: int = 5, threads: int | None = None,
                      max_batch_tokens: int | None = None) -> dict:
    """Time both captures (`repeats` alternating pairs after a warm-up: medians, and the spread of the
    per-pair ratio) and check they agree.

    Both sides run on the same torch thread count: first torch's default (or `threads`), then
    pinned to 1 thread (on a busy 2-core box the thread pool's spin-waits can dominate small ops,
    so each setting's ratio is reported; `speedup` is the first).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if model_dir is not None:
        from ..models import load_model, load_tokenizer

        model, tok = load_model(str(model_dir), device="cpu"), load_tokenizer(str(model_dir))
        source = str(model_dir)
    else:
        model, tok = build_mini_model(seed)
        source = "random mini-size Qwen2 (built in process)"
    texts = make_prompts(n_prompts, seed)
    lengths = [len(ids) for ids in tok(texts).input_ids]

    ours_fn = lambda: capture_activations(model, tok, texts, pooling="mean_all", batch_size=batch_size,  # noqa: E731
                                          progress=False, max_batch_tokens=max_batch_tokens)
    base_fn = lambda: baseline_capture(model, tok, texts)  # noqa: E731
    default_threads = torch.get_num_threads()
    runs = {}
    for label, n_threads in (("default", default_threads), ("1_thread", 1)):
        if label == "1_thread" and default_threads == 1:
            break  # already measured on 1 thread
        torch.set_num_threads(n_threads)
        try:
            baseline_capture(model, tok, texts[:4])  # warm-up: first-call allocations and kernel selection
            capture_activations(model, tok, texts[:4], pooling="mean_all", batch_size=4, progress=False)
            base_t, ours_t, ratios, base, ours = _paired_times(base_fn, ours_fn, repeats)
        finally:
            torch.set_num_threads(default_threads)
        runs[label] = {"threads": n_threads, "baseline_s": statistics.median(base_t), "ours_s": statistics.median(ours_t),
                       "speedup": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios),
                       "ratios": ratios, "max_abs_diff": float((base - ours).abs().max()), "shape": list(ours.shape)}
    cfg = model.config
    main = runs["default"]
    return {
        "model": source,
        "params": sum(p.numel() for p in model.parameters()),
        "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size,
        "n_prompts": n_prompts,
        "tokens_min": min(lengths),
        "tokens_max": max(lengths),
        "tokens_mean": sum(lengths) / len(lengths),
        "batch_size": batch_size,
        "max_batch_tokens": max_batch_tokens,
        "threads": default_threads,
        "repeats": repeats,
        # Other processes share the cores; the 1-minute load average tells how contended the run was.
        "load_avg_1m": os.getloadavg()[0],
        "baseline_s": main["baseline_s"],
        "ours_s": main["ours_s"],
        "speedup": main["speedup"],
        "speedup_min": main["speedup_min"],
        "speedup_max": main["speedup_max"],
        "max_abs_diff": max(r["max_abs_diff"] for r in runs.values()),
        "shape": main["shape"],
        "by_threads": runs,
    }


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Activation capture: per-prompt hooks vs batched single pass")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("model", result["model"]),
        ("params / layers / hidden", f"{result['params']:,} / {result['layers']} / {result['hidden']}"),
        ("prompts (tokens min/mean/max)",
         f"{result['n_prompts']} ({result['tokens_min']}/{result['tokens_mean']:.1f}/{result['tokens_max']})"),
        ("batch size / max tokens / repeats (medians shown)",
         f"{result['batch_size']} / {result['max_batch_tokens'] or '-'} / {result['repeats']}"),
        ("load average (1 min, after the run)", f"{result['load_avg_1m']:.2f}"),
    ]
    for run in result["by_threads"].values():
        rows += [
            (f"[{run['threads']} thread(s)] baseline: per-prompt hooks, full forward", f"{run['baseline_s']:.3f} s"),
            (f"[{run['threads']} thread(s)] ours: capture_activations", f"{run['ours_s']:.3f} s"),
            (f"[{run['threads']} thread(s)] speed-up, median (min-max)",
             f"{run['speedup']:.1f}x ({run['speedup_min']:.1f}-{run['speedup_max']:.1f})"),
        ]
    rows += [
        ("max |baseline - ours|", f"{result['max_abs_diff']:.2e}"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m repro.bench.capture", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="a save_pretrained model directory")
    parser.add_argument("--n-prompts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for the first measurement (default: torch's); a 1-thread one follows")
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="cap on padded tokens per batch")
    args = parser.parse_args(argv)
    result = run_capture_bench(args.model_dir, args.n_prompts, args.seed, batch_size=args.batch_size,
                               repeats=args.repeats, threads=args.threads, max_batch_tokens=args.max_batch_tokens)
    print_table(result)
    return result


if __name__ == "__main__":
    main()
