"""Benchmark and check of the CPU runtime pin (repro/runtime.py).

Two parts, each in fresh subprocesses (the pin only acts before torch first runs):
- bits: a seeded matmul + softmax + attention + linear backward script, its outputs hashed, under
  several dispatch settings of the caller (ATEN_CPU_CAPABILITY, MKL_CBWR), unpinned and pinned
  to the profile's runtime block. Unpinned, the digests follow the caller's dispatch; pinned,
  they must all be one.
- speed: a mini-organism-sized Qwen2 (random weights), training steps (forward, backward, AdamW)
  and a batched forward, pinned vs unpinned (unpinned keeps the profile's torch thread count, so
  the ratio is the cost of the dispatch pin alone). The parent prints pinned / unpinned.

    python -m repro.bench.pin [--profile mini] [--steps 20] [--repeats 3] [--skip-bits]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

from ..config import REPO_ROOT, load_profile
from ..runtime import ENV_VARS, apply_runtime, runtime_settings

# Caller settings a user might have (or another machine would pick by itself).
CALLER_ENVS = [{}, {"ATEN_CPU_CAPABILITY": "default"}, {"ATEN_CPU_CAPABILITY": "avx2"},
               {"ATEN_CPU_CAPABILITY": "avx512"}, {"MKL_CBWR": "AUTO"}, {"MKL_CBWR": "AVX2"},
               {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}]


def _digest_workload() -> dict:
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 96, 128, generator=g)
    w = torch.randn(128, 384, generator=g) / 128 ** 0.5
    h = x @ w                                                   # MKL sgemm
    q, k, v = (t.reshape(8, 96, 4, 32).transpose(1, 2) for t in h.split(128, dim=-1))
    scores = (q @ k.transpose(-1, -2) / 32 ** 0.5).softmax(-1)  # ATen softmax (vectorised exp, sums)
    manual = scores @ v
    sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # ATen's CPU flash attention
    lin = torch.nn.Linear(128, 128)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(128, 128, generator=g) / 128 ** 0.5)
        lin.bias.zero_()
    out = F.layer_norm(lin(sdpa.transpose(1, 2).reshape(8, 96, 128)), (128,))
    loss = F.gelu(out).pow(2).mean()
    loss.backward()                                             # gemm backward, reductions
    digests = {}
    for name, t in (("matmul", h), ("softmax", scores), ("attention", manual), ("sdpa", sdpa),
                    ("layer_norm", out), ("grad", lin.weight.grad)):
        digests[name] = hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()[:12]
    digests["all"] = hashlib.sha256("".join(digests.values()).encode()).hexdigest()[:12]
    return digests


def _speed_workload(profile: dict, steps: int) -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    m = profile["organism"]["model"]
    vocab = int(profile["organism"]["tokenizer"]["vocab_size"])
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=m["hidden_size"], intermediate_size=m["intermediate_size"],
                      num_hidden_layers=m["num_layers"], num_attention_heads=m["num_heads"],
                      num_key_value_heads=m["num_kv_heads"], max_position_embeddings=m["max_position_embeddings"],
                      tie_word_embeddings=True, torch_dtype="float32")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    pre = profile["organism"]["pretrain"]
    batch, length = int(pre["batch_size"]), min(int(pre["max_length"]), 128)
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, vocab, (steps, batch, length), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    start, cpu = time.perf_counter(), time.process_time()
    for ids in data:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    model.eval()
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for ids in data[: max(1, steps // 2)]:
            logits = model(input_ids=ids).logits
    forward_s, forward_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    # CPU seconds beside wall seconds: on a shared machine the wall clock also counts the neighbours.
    return {"train_s": train_s, "forward_s": forward_s, "train_cpu_s": train_cpu_s, "forward_cpu_s": forward_cpu_s,
            "final_loss": float(loss),
            "logits_digest": hashlib.sha256(logits.numpy().tobytes()).hexdigest()[:12]}


def child(argv: list[str]) -> None:
    """Subprocess entry: [digest|speed] PROFILE pinned|unpinned [steps]."""
    kind, profile_name, mode = argv[:3]
    profile = load_profile(profile_name)
    if mode == "pinned":
        apply_runtime(profile)  # before torch is imported, as the CLI does
    import torch

    from ..runtime import effective_runtime, mkl_branch

    threads = runtime_settings(profile)["torch_threads"]
    if mode == "pinned":
        eff = effective_runtime(profile)
        info = {"pinned": eff["pinned"], "mismatch": eff["mismatch"]}
    else:
        if threads:  # what the runner did before the pin: the thread count only
            torch.set_num_threads(threads)
        info = {}
    info.update(capability=torch.backends.cpu.get_cpu_capability(), mkl_branch=mkl_branch(), threads=torch.get_num_threads())
    result = _digest_workload() if kind == "digest" else _speed_workload(profile, int(argv[3]))
    print(json.dumps({**info, **result}))


def _run_child(args: list[str], caller_env: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(caller_env)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "repro.bench.pin", "--child", *args], env=env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {args} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_bits(profile: str) -> dict:
    rows = []
    for caller in CALLER_ENVS:
        for mode in ("unpinned", "pinned"):
            r = _run_child(["digest", profile, mode], caller)
            rows.append({"caller": caller, "mode": mode, **r})
    distinct = {m: sorted({r["all"] for r in rows if r["mode"] == m}) for m in ("unpinned", "pinned")}
    return {"rows": rows, "distinct": distinct}


def run_speed(profile: str, steps: int, repeats: int) -> dict:
    runs = {"unpinned": [], "pinned": []}
    for _ in range(repeats):  # alternate, so a busy neighbour slows both alike
        for mode in ("unpinned", "pinned"):
            runs[mode].append(_run_child(["speed", profile, mode, str(steps)], {}))
    keys = ("train_s", "forward_s", "train_cpu_s", "forward_cpu_s")
    med = {m: {k: statistics.median(r[k] for r in rs) for k in keys} for m, rs in runs.items()}
    return {"steps": steps, "repeats": repeats, "runs": runs, "median": med,
            **{f"ratio_{k}": med["pinned"][k] / med["unpinned"][k] for k in keys}}


def render_bits(bits: dict) -> None:
    print(f"{'caller env':42s} {'mode':9s} {'dispatch':8s} {'MKL':11s} {'matmul':12s} {'softmax':12s} {'sdpa':12s} {'all':12s}")
    for r in bits["rows"]:
        caller = " ".join(f"{k}={v}" for k, v in r["caller"].items()) or "(none)"
        print(f"{caller:42s} {r['mode']:9s} {r['capability']:8s} {str(r['mkl_branch']):11s} {r['matmul']:12s} "
              f"{r['softmax']:12s} {r['sdpa']:12s} {r['all']:12s}")
    for mode, ds in bits["distinct"].items():
        print(f"{mode}: {len(ds)} distinct digest(s) over {len(CALLER_ENVS)} caller settings")


def render_speed(speed: dict) -> None:
    for mode, med in speed["median"].items():
        print(f"{mode:9s} train {speed['steps']} steps {med['train_s']:7.2f} s wall {med['train_cpu_s']:7.2f} s CPU   "
              f"forward {med['forward_s']:6.2f} s wall {med['forward_cpu_s']:6.2f} s CPU (median of {speed['repeats']})")
    print(f"pinned / unpinned: training {speed['ratio_train_s']:.2f}x wall, {speed['ratio_train_cpu_s']:.2f}x CPU; "
          f"forward {speed['ratio_forward_s']:.2f}x wall, {speed['ratio_forward_cpu_s']:.2f}x CPU")


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return {}
    parser = argparse.ArgumentParser(prog="python -m repro.bench.pin", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-bits", action="store_true")
    args = parser.parse_args(argv)
    out = {}
    if not args.skip_bits:
        out["bits"] = run_bits(args.profile)
        render_bits(out["bits"])
    out["speed"] = run_speed(args.profile, args.steps, args.repeats)
    render_speed(out["speed"])
    return out


if __name__ == "__main__":
    main()
