"""`make bench`: every speed claim of the package, each as a ratio against a baseline run in the
same process, plus the cost of the CPU runtime pin (pinned vs unpinned subprocesses) and the last
mini reproduce-all's wall time and peak memory per stage.

    python -m repro.bench [--quick] [--out runs/bench]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import REPO_ROOT
from ..io import read_json, write_json


def _stage_timings(profile: str) -> list[dict]:
    stages = REPO_ROOT / "runs" / profile / "stages"
    return sorted((read_json(p) for p in stages.glob("*.json")), key=lambda r: r.get("finished", "")) if stages.is_dir() else []


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m repro.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="extraction at 16 layers instead of the paper's 64")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench")
    args = parser.parse_args(argv)

    from rich.console import Console

    from .capture import print_table, run_capture_bench
    from .extraction import render, run_extraction_bench
    from .pin import render_bits, render_speed, run_bits, run_speed

    console = Console()
    console.rule("activation capture: all layers, batched single pass vs per-prompt per-layer hooks")
    capture = run_capture_bench()
    print_table(capture)
    # The same on a real model when the smol profile has converted one (make reproduce-all PROFILE=smol).
    smol_dir = REPO_ROOT / "runs" / "smol" / "convert" / "smol_base" / "model"
    capture_smol = None
    if (smol_dir / "config.json").is_file():
        console.rule("activation capture on SmolLM2-135M-Instruct (runs/smol's converted model), same prompts")
        capture_smol = run_capture_bench(str(smol_dir), n_prompts=100 if args.quick else 200)
        print_table(capture_smol)
    else:
        console.print(f"(no converted smol model in {smol_dir}: capture on the real model skipped)")
    console.rule("extraction: 6 methods x all layers, batched vs per-layer scikit-learn loop (paper dims)")
    extraction = run_extraction_bench(layers=16 if args.quick else 64)
    render(extraction)
    console.rule("runtime pin: kernel digests under the caller's dispatch settings, unpinned vs pinned (subprocesses)")
    pin_bits = run_bits("mini")
    render_bits(pin_bits)
    console.rule("runtime pin: mini-sized training steps and forward passes, pinned vs unpinned (subprocesses)")
    pin_speed = run_speed("mini", steps=8 if args.quick else 20, repeats=3)
    render_speed(pin_speed)
    timings = _stage_timings("mini")
    if timings:
        console.rule("last mini run: wall time and peak RSS per stage (runs/mini/stages)")
        for r in timings:
            console.print(f"{r['stage']:32s} {r['wall_seconds']:8.1f} s {r['peak_rss_mb']:8.0f} MB")
        console.print(f"{'total':32s} {sum(r['wall_seconds'] for r in timings):8.1f} s")
    result = {"capture": capture, "capture_smol": capture_smol, "extraction": extraction, "pin": {"bits": pin_bits, "speed": pin_speed},
              "mini_stages": timings}
    write_json(args.out / "bench.json", result)
    console.print(f"written: {args.out / 'bench.json'}")
    return result


if __name__ == "__main__":
    main()
