"""Machine-independent CPU runs: the profile's runtime pin (repro/runtime.py) overrides whatever
dispatch the caller's environment asks for, so the same commit gives the same bits.

Unpinned, the test profile's results do differ with the caller's dispatch on an AVX-512 machine
(measured: ATEN_CPU_CAPABILITY=default vs avx512 changed codemode, dynamics, extraction, refusal
and training results), so the end-to-end test below can fail.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from repro.errors import InputError
from repro.runtime import (ENV_VARS, apply_runtime, enter_runtime, pinned_env, report_lines, runtime_settings,
                           write_runtime_record)

REPO = Path(__file__).resolve().parents[1]
PIN = {"torch_threads": 1, "cpu_capability": "avx2", "mkl_cbwr": "COMPATIBLE", "openblas_coretype": "Haswell",
       "onednn_max_cpu_isa": "AVX2"}
# Two callers that, unpinned, pick different kernels: the portable baseline, and what an AVX2-only
# Intel machine (or a user following MKL's CNR guide) would set, with another thread count.
CALLERS = [{"ATEN_CPU_CAPABILITY": "default"},
           {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}]
VOLATILE = {"seconds", "wall_seconds", "steps_per_second", "peak_rss_mb", "peak_gpu_mb"}  # timings, not results


def _has_avx2() -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        return " avx2 " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        return False


needs_avx2 = pytest.mark.skipif(not _has_avx2(), reason="the pin targets x86-64 with AVX2")


def _cli(out: Path, caller: dict, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS and k != "REPRO_JOBS"}
    env.update(caller, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "repro.cli", "--profile", "test", "--out", str(out), "--quiet", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-2000:]
    return output


def _normalised(path: Path, run_dir: Path):
    def walk(obj):
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items() if k not in VOLATILE}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        if isinstance(obj, str):
            return obj.replace(str(run_dir), "<run>")
        return obj

    return walk(json.loads(path.read_text()))


def _tensors(run_dir: Path) -> dict:
    """Every tensor the run saved (weights, adapters, activations, vectors); compared as values
    because safetensors writes its metadata in hash order, so the file bytes vary run to run."""
    from safetensors.torch import load_file

    return {str(p.relative_to(run_dir)) + ":" + k: t for p in sorted(run_dir.rglob("*.safetensors"))
            for k, t in load_file(p).items()}


def _check_pinned(run_dir: Path) -> None:
    rec = json.loads((run_dir / "runtime.json").read_text())
    assert len(rec["runtimes"]) == 1, rec["runtimes"]
    eff = rec["runtimes"][0]
    assert eff["pinned"], eff["mismatch"]
    assert eff["cpu_capability"] == "AVX2" and eff["torch_threads"] == 1
    assert eff["env"]["ATEN_CPU_CAPABILITY"] == "avx2" and eff["env"]["OMP_NUM_THREADS"] == "1"
    if eff["mkl_branch"] is not None:  # torch built with MKL
        assert eff["mkl_branch"] == "COMPATIBLE"
    # what the CPU offers is recorded beside what the pin runs (the pin needs AVX2 and FMA)
    assert {"avx2", "fma"} <= set(eff["cpu_features"]["flags"]) and eff["cpu_features"]["vendor"]


@pytest.mark.slow
@needs_avx2
def test_test_profile_gives_identical_results_under_two_caller_dispatch_settings(tmp_path):
    import torch

    dirs = [tmp_path / "a", tmp_path / "b"]
    # concurrently: one thread each; the second run's independent stages also run side by side in
    # worker processes (--jobs 2, repro/schedule.py), which must not change a bit either
    procs = [_cli(d, caller, *jobs, "run") for d, caller, jobs in zip(dirs, CALLERS, ([], ["--jobs", "2"]))]
    for proc in procs:
        _finish(proc)
    for d in dirs:
        _check_pinned(d)
    schedule = json.loads((dirs[1] / "stages" / "_schedule.json").read_text())
    assert schedule["jobs"] == 2 and schedule["failed"] is None and len(schedule["stages_run"]) > 20
    names = sorted(p.name for p in (dirs[0] / "results").glob("*.json"))
    assert len(names) >= 9 and names == sorted(p.name for p in (dirs[1] / "results").glob("*.json"))
    for name in names:
        assert _normalised(dirs[0] / "results" / name, dirs[0]) == _normalised(dirs[1] / "results" / name, dirs[1]), name
    # Beyond the tables: the generated answers and every saved tensor, bit for bit.
    for jsonl in sorted((dirs[0] / "behavior").rglob("*.jsonl")):
        assert jsonl.read_bytes() == (dirs[1] / jsonl.relative_to(dirs[0])).read_bytes(), jsonl.name
    a, b = _tensors(dirs[0]), _tensors(dirs[1])
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@needs_avx2
def test_cli_pins_a_fresh_process_whatever_the_caller_sets(tmp_path):
    caller = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO", "OMP_NUM_THREADS": "2",
              "MKL_ENABLE_INSTRUCTIONS": "AVX512", "OPENBLAS_CORETYPE": "SkylakeX"}
    output = _finish(_cli(tmp_path, caller, "run", "data"))
    assert "warning: runtime pin" not in output
    _check_pinned(tmp_path)
    eff = json.loads((tmp_path / "runtime.json").read_text())["current"]
    assert eff["env"]["MKL_ENABLE_INSTRUCTIONS"] is None  # would cap MKL's dispatch before CNR: removed
    assert all(p["architecture"] == "Haswell" for p in eff["blas"] if p["api"] == "openblas")


def test_runtime_settings_are_validated_with_one_line_errors():
    base = {"name": "x", "profile_file": "p.yaml"}
    assert runtime_settings(base) == dict.fromkeys(PIN)  # no block: torch's defaults
    for bad, field in (({"torch_threads": 0}, "torch_threads"), ({"torch_threads": True}, "torch_threads"),
                       ({"cpu_capability": "sse9"}, "cpu_capability"), ({"mkl_cbwr": "AVX2; rm"}, "mkl_cbwr"),
                       ({"threads": 1}, "threads")):
        with pytest.raises(InputError, match=rf"p\.yaml: runtime\.{field}") as err:
            runtime_settings({**base, "runtime": bad})
        assert "\n" not in str(err.value)


def test_pin_overrides_the_caller_and_null_keys_leave_it_alone():
    caller = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX2", "MKL_DEBUG_CPU_TYPE": "5", "OMP_NUM_THREADS": "8",
              "HOME": "/home/u"}
    env = dict(caller)
    set_vars = apply_runtime({"name": "x", "runtime": PIN}, env)
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "COMPATIBLE" and env["OMP_NUM_THREADS"] == "1"
    assert env["MKL_DYNAMIC"] == env["OMP_DYNAMIC"] == "FALSE" and env["OPENBLAS_NUM_THREADS"] == "1"
    assert "MKL_DEBUG_CPU_TYPE" not in env and env["HOME"] == "/home/u" and set_vars == pinned_env(PIN)
    env = dict(caller)
    assert apply_runtime({"name": "paper", "runtime": dict.fromkeys(PIN)}, env) == {} and env == caller


def test_in_process_use_after_torch_ran_is_recorded_not_hidden(tmp_path, monkeypatch):
    """In-process (torch already ran here), the pin cannot change the dispatch: the record says so."""
    import torch

    from repro.runtime import mkl_branch

    torch.ones(4).softmax(0)  # torch has run: its dispatch is fixed for this process
    monkeypatch.setattr(os, "environ", os.environ.copy())
    current = torch.backends.cpu.get_cpu_capability().lower()
    other = next(c for c in ("default", "avx2", "avx512") if c != current)
    branch = mkl_branch()
    runtime = {**PIN, "torch_threads": torch.get_num_threads(), "cpu_capability": other,
               "mkl_cbwr": "AVX" if branch != "AVX" else "SSE4_2", "openblas_coretype": None}
    logged = []
    eff = enter_runtime({"name": "x", "runtime": runtime}, tmp_path, ["data"], log=logged.append)
    assert not eff["pinned"] and any(m.startswith("cpu_capability:") for m in eff["mismatch"])
    assert branch is None or any(m.startswith("mkl_cbwr:") for m in eff["mismatch"])
    assert len(logged) == 1 and logged[0].startswith("warning: runtime pin not in effect")
    assert torch.backends.cpu.get_cpu_capability().lower() == current  # nothing pretended otherwise
    rec = json.loads((tmp_path / "runtime.json").read_text())
    assert rec["by_stage"] == {"data": 0} and not rec["runtimes"][0]["pinned"]
    assert any("NO: cpu_capability" in line for line in report_lines(tmp_path))


def test_runtime_record_shows_when_stages_ran_under_different_settings(tmp_path):
    def eff(cap, pinned=True):
        return {"settings": PIN, "pinned": pinned, "mismatch": [] if pinned else ["cpu_capability: x"],
                "env": {"ATEN_CPU_CAPABILITY": cap.lower()}, "cpu_capability": cap, "mkl_branch": "COMPATIBLE",
                "torch_threads": 1, "blas": [], "torch": "2", "mkl": "MKL 2024 for x", "cpu": "cpu"}

    write_runtime_record(tmp_path, eff("AVX2"), ["data", "organism"])
    write_runtime_record(tmp_path, eff("AVX512", pinned=False), ["organism"])
    rec = json.loads((tmp_path / "runtime.json").read_text())
    assert rec["by_stage"] == {"data": 0, "organism": 1} and len(rec["runtimes"]) == 2
    assert any("2 different settings" in line for line in report_lines(tmp_path))
    write_runtime_record(tmp_path, eff("AVX2"), ["organism"])  # rerun under the pin: one set again
    rec = json.loads((tmp_path / "runtime.json").read_text())
    assert rec["by_stage"] == {"data": 0, "organism": 0} and len(rec["runtimes"]) == 1
    assert not any("different settings" in line for line in report_lines(tmp_path))


def test_runtime_record_tells_two_cpus_apart_and_unknown_flags_are_not_no_avx(tmp_path):
    base = {"settings": PIN, "pinned": True, "mismatch": [], "env": {}, "cpu_capability": "AVX2",
            "mkl_branch": "COMPATIBLE", "torch_threads": 1, "blas": [], "torch": "2", "mkl": "MKL 2024 for x"}
    intel = {**base, "cpu": "Xeon", "cpu_features": {"vendor": "GenuineIntel", "flags": ["avx2", "fma", "avx512f"]}}
    amd = {**base, "cpu": "EPYC", "cpu_features": {"vendor": "AuthenticAMD", "flags": ["avx2", "fma"]}}
    write_runtime_record(tmp_path, intel, ["data", "organism"])
    write_runtime_record(tmp_path, amd, ["organism"])  # the same pin on another machine's CPU
    rec = json.loads((tmp_path / "runtime.json").read_text())
    assert rec["by_stage"] == {"data": 0, "organism": 1} and len(rec["runtimes"]) == 2
    lines = report_lines(tmp_path)
    assert any("Xeon (GenuineIntel: avx2 fma avx512f)" in ln and "EPYC (AuthenticAMD: avx2 fma)" in ln for ln in lines)
    unknown = {**base, "cpu": "arm", "cpu_features": {"vendor": None, "flags": None}}
    write_runtime_record(tmp_path / "arm", unknown, ["data"])
    assert any("arm (vendor unknown: flags unknown)" in ln for ln in report_lines(tmp_path / "arm"))
