"""Pin CPU numerics from a profile's `runtime:` block, before torch loads.

A CPU profile's results must be bitwise identical on any x86-64 machine with AVX2, Intel or AMD.
Each library picks its kernels from the CPU it finds, and the kernels decide the order floats
are summed in, so the bits: torch's own vectorised kernels (ATEN_CPU_CAPABILITY: AVX-512 ones
reduce in 16 lanes, AVX2 ones in 8), MKL's BLAS/LAPACK (MKL_CBWR), numpy/scipy's OpenBLAS
(OPENBLAS_CORETYPE) and oneDNN's JIT (ONEDNN_MAX_CPU_ISA); the thread counts split reductions.

Settings that hold on both vendors (mini.yaml sets them):
- cpu_capability avx2: ATen's AVX2 kernels are one compiled code path; they run only IEEE-exact
  instructions (add, mul, fma, div, sqrt: in libtorch_cpu.so every approximate rcp/rsqrt
  instruction sits inside MKL, none in ATen), so any CPU with AVX2+FMA gives the same bits.
  AVX-512 is missing on many AMD and client Intel parts, so it cannot be the common path.
- mkl_cbwr COMPATIBLE: Intel documents the AVX2 CNR branch for Intel CPUs only; on a non-Intel
  CPU MKL_CBWR=AVX2 falls back to AUTO (processor-dependent kernels), and MKL's AVX2 code does
  use approximate rcpps/rsqrtps, whose exact results the ISA leaves to each implementation. COMPATIBLE (SSE2 without
  rcpps/rsqrtps) is the branch that runs the same code on Intel and compatible CPUs (oneMKL
  Developer Guide: "Getting Started with Conditional Numerical Reproducibility", "Specifying Code
  Branches"). It is slower (SSE2 gemm: the bench, `python -m repro.bench.pin`, measures it).
  CNR also needs a fixed thread count with MKL_DYNAMIC=FALSE ("Reproducibility Conditions"),
  which torch_threads sets.
- openblas_coretype Haswell: numpy/scipy's OpenBLAS runs its AVX2 kernels, not the detected core's.
- onednn_max_cpu_isa AVX2: torch sends some elementwise ops to oneDNN's JIT (GELU, for one);
  capped at AVX2 they take the same code path on every AVX2 CPU.

The CLI sets these in os.environ as soon as a command has loaded its profile; nothing imports
torch before that. The variables are read when torch (or MKL, OpenMP, OpenBLAS) first runs, so
once a process has used torch under other settings (in-process use, e.g. a test calling the
Click command), they cannot change any more. We do not re-exec the process then (that would
replace the caller's process, a test runner's or a notebook's); `effective_runtime` reads back
what torch, MKL and OpenBLAS actually use, `pinned` is false with the mismatches listed, a
one-line warning says so, and runs/<profile>/runtime.json records it for the report.
A null key leaves torch's default (the paper profile, on GPU).
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import sys
from pathlib import Path

from .errors import InputError
from .io import read_json, write_json

KEYS = ("torch_threads", "cpu_capability", "mkl_cbwr", "openblas_coretype", "onednn_max_cpu_isa")
CAPABILITIES = ("default", "avx2", "avx512")
# The variables the pin sets, and those recorded because they change numerics when a caller sets them.
ENV_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_DYNAMIC", "MKL_DYNAMIC", "MKL_ENABLE_INSTRUCTIONS",
            "MKL_DEBUG_CPU_TYPE", "DNNL_MAX_CPU_ISA")
# mkl_cbwr_get(MKL_CBWR_BRANCH) return values (mkl_cbwr.h), for reading back the branch MKL runs.
MKL_BRANCHES = {0: "OFF", 1: "BRANCH_OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1",
                8: "SSE4_2", 9: "AVX", 10: "AVX2", 11: "AVX512_MIC", 12: "AVX512", 13: "AVX512_MIC_E1",
                14: "AVX512_E1", 15: "AVX512_E2", 16: "AVX512_E3", 17: "AVX512_E4", 18: "AVX2_E1", 19: "AVX512_E5"}
_WORD = re.compile(r"^[A-Za-z0-9_]+$")
_warned: set[str] = set()


def runtime_settings(profile: dict) -> dict:
    """The profile's runtime block, validated; every key present (None = torch's default)."""
    where = profile.get("profile_file", profile.get("name", "profile"))
    block = profile.get("runtime") or {}
    if not isinstance(block, dict):
        raise InputError(f"{where}: runtime: expected a mapping of {', '.join(KEYS)}")
    unknown = sorted(set(block) - set(KEYS))
    if unknown:
        raise InputError(f"{where}: runtime.{unknown[0]}: unknown key (expected one of {', '.join(KEYS)})")
    out = {k: block.get(k) for k in KEYS}
    threads = out["torch_threads"]
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"{where}: runtime.torch_threads: expected a positive integer or null, got {threads!r}")
    cap = out["cpu_capability"]
    if cap is not None and cap not in CAPABILITIES:
        raise InputError(f"{where}: runtime.cpu_capability: expected one of {', '.join(CAPABILITIES)} or null, got {cap!r}")
    for key in ("mkl_cbwr", "openblas_coretype", "onednn_max_cpu_isa"):
        value = out[key]
        if value is not None and not (isinstance(value, str) and all(_WORD.match(p) for p in value.split(","))):
            raise InputError(f"{where}: runtime.{key}: expected a name such as AVX2 (or null), got {value!r}")
    return out


def pinned_env(settings: dict) -> dict[str, str]:
    """Environment variables that realise the settings (only for keys that are not null)."""
    env: dict[str, str] = {}
    if settings["torch_threads"] is not None:
        n = str(settings["torch_threads"])
        # OpenMP (torch, MKL, scikit-learn's libgomp) and OpenBLAS thread pools, fixed, not adjusted at run time.
        env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, OMP_DYNAMIC="FALSE", MKL_DYNAMIC="FALSE")
    if settings["cpu_capability"] is not None:
        env["ATEN_CPU_CAPABILITY"] = settings["cpu_capability"]
    if settings["mkl_cbwr"] is not None:
        env["MKL_CBWR"] = settings["mkl_cbwr"]
    if settings["openblas_coretype"] is not None:
        env["OPENBLAS_CORETYPE"] = settings["openblas_coretype"]
    if settings["onednn_max_cpu_isa"] is not None:
        env["ONEDNN_MAX_CPU_ISA"] = settings["onednn_max_cpu_isa"]
    return env


def apply_runtime(profile: dict, environ=None) -> dict[str, str]:
    """Set the pinned variables (overriding the caller's); call before anything imports torch.

    Variables a caller set that would override the pin in a library that reads them first
    (MKL_ENABLE_INSTRUCTIONS, MKL_DEBUG_CPU_TYPE, DNNL_MAX_CPU_ISA) are removed when the
    corresponding setting is pinned.
    """
    environ = os.environ if environ is None else environ
    settings = runtime_settings(profile)
    env = pinned_env(settings)
    if settings["mkl_cbwr"] is not None:
        environ.pop("MKL_ENABLE_INSTRUCTIONS", None)
        environ.pop("MKL_DEBUG_CPU_TYPE", None)
    if settings["onednn_max_cpu_isa"] is not None:
        environ.pop("DNNL_MAX_CPU_ISA", None)
    environ.update(env)
    return env


def mkl_branch() -> str | None:
    """The CNR branch MKL runs (mkl_cbwr_get), read from torch's statically linked MKL; None if absent."""
    import torch

    lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        dll = ctypes.CDLL(str(lib))
        get = dll.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    code = get(1)  # MKL_CBWR_BRANCH: the branch alone, without the STRICT bit
    strict = ",STRICT" if get(-1) & 0x10000 else ""
    return MKL_BRANCHES.get(code, str(code)) + strict


def _mkl_version() -> str | None:
    import torch

    try:
        dll = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        buf = ctypes.create_string_buffer(256)
        dll.MKL_Get_Version_String(buf, 256)
        return buf.value.decode(errors="replace").strip()
    except (OSError, AttributeError):
        return None


def _blas_pools() -> list[dict]:
    """numpy/scipy/scikit-learn thread pools and OpenBLAS core types (threadpoolctl, a scikit-learn dependency)."""
    try:
        import numpy  # noqa: F401  (loads numpy's OpenBLAS so threadpoolctl sees it)
        import scipy.linalg  # noqa: F401
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"library": Path(i.get("filepath", "")).name, "api": i.get("internal_api"),
             "threads": i.get("num_threads"), "architecture": i.get("architecture")} for i in threadpool_info()]


# The CPU features that decide which kernels torch, MKL, OpenBLAS and oneDNN would pick unpinned: a run's
# record names them, so two machines' runs that disagree can be told apart by what their CPUs offer.
DISPATCH_FLAGS = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                  "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo() -> dict[str, str]:
    """The first CPU's fields of /proc/cpuinfo ({} when it cannot be read)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpu_model(info: dict[str, str]) -> str:
    return info.get("model name") or platform.processor() or platform.machine()


def _cpu_features(info: dict[str, str]) -> dict:
    """{'vendor', 'flags'}; flags None when they cannot be read (no /proc/cpuinfo, or no x86 flags line)."""
    flags = set(info["flags"].split()) if "flags" in info else None
    return {"vendor": info.get("vendor_id"),
            "flags": None if flags is None else [f for f in DISPATCH_FLAGS if f in flags]}


def _cpu_text(rt: dict) -> str:
    feats = rt.get("cpu_features")
    if not feats:
        return rt["cpu"]
    flags = "flags unknown" if feats["flags"] is None else (" ".join(feats["flags"]) or "no AVX")
    return f"{rt['cpu']} ({feats['vendor'] or 'vendor unknown'}: {flags})"


def effective_runtime(profile: dict) -> dict:
    """Apply the thread count and read back what torch, MKL and OpenBLAS actually use.

    `pinned` is true when every non-null setting is in effect; `mismatch` lists the others.
    """
    settings = runtime_settings(profile)
    import torch

    if settings["torch_threads"] is not None and torch.get_num_threads() != settings["torch_threads"]:
        torch.set_num_threads(settings["torch_threads"])
    capability = torch.backends.cpu.get_cpu_capability()
    branch = mkl_branch()
    pools = _blas_pools()
    info = _cpuinfo()
    mismatch = []
    if settings["cpu_capability"] is not None and capability.lower() != settings["cpu_capability"]:
        mismatch.append(f"cpu_capability: torch dispatches {capability}, profile asks {settings['cpu_capability']}")
    if settings["mkl_cbwr"] is not None and (branch or "").upper() != settings["mkl_cbwr"].upper():
        mismatch.append(f"mkl_cbwr: MKL runs branch {branch}, profile asks {settings['mkl_cbwr']}")
    if settings["torch_threads"] is not None:
        if torch.get_num_threads() != settings["torch_threads"]:
            mismatch.append(f"torch_threads: {torch.get_num_threads()}, profile asks {settings['torch_threads']}")
        for pool in pools:
            if pool["threads"] != settings["torch_threads"]:
                mismatch.append(f"torch_threads: {pool['library']} runs {pool['threads']} threads")
    if settings["openblas_coretype"] is not None:
        for pool in pools:
            if pool["api"] == "openblas" and (pool["architecture"] or "").lower() != settings["openblas_coretype"].lower():
                mismatch.append(f"openblas_coretype: {pool['library']} runs {pool['architecture']}")
    return {
        "settings": settings,
        "pinned": not mismatch,
        "mismatch": mismatch,
        "env": {k: os.environ.get(k) for k in ENV_VARS},
        "cpu_capability": capability,
        "mkl_branch": branch,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "blas": pools,
        "torch": torch.__version__,
        "mkl": _mkl_version(),
        "cpu": _cpu_model(info),
        "cpu_features": _cpu_features(info),
        "machine": platform.machine(),
    }


def record_path(root: Path) -> Path:
    return Path(root) / "runtime.json"


def enter_runtime(profile: dict, root: Path, stages: list[str], log=lambda s: print(s, file=sys.stderr)) -> dict:
    """Pin (if torch has not run yet), read back the effective settings, and record them in
    runs/<profile>/runtime.json against the stages about to run: a run directory whose stages
    ran under different settings shows every set (`by_stage` names each stage's set)."""
    apply_runtime(profile)
    eff = effective_runtime(profile)
    if not eff["pinned"]:
        msg = "; ".join(eff["mismatch"])
        if msg not in _warned:  # once per process: in-process callers may run many pipelines
            _warned.add(msg)
            log(f"warning: runtime pin not in effect ({msg}): this process used torch before the profile's "
                f"runtime settings were set; results may differ in the last bits from a pinned run (recorded in {record_path(root)})")
    if stages:
        write_runtime_record(root, eff, stages)
    return eff


def _record_key(eff: dict) -> dict:
    """The part of an effective record that may decide numerics (not pool paths): the settings in effect, and
    the CPU, so stages of one run directory that ran on two kinds of CPU show up as two runtimes."""
    return {k: eff[k] for k in ("settings", "pinned", "cpu_capability", "mkl_branch", "torch_threads", "torch", "mkl")} | {
        "blas": sorted((p["api"] or "", str(p["architecture"]), str(p["threads"])) for p in eff["blas"]),
        "cpu": eff.get("cpu"), "cpu_features": eff.get("cpu_features")}


def write_runtime_record(root: Path, eff: dict, stages: list[str]) -> Path:
    path = record_path(root)
    try:
        old = read_json(path) if path.exists() else {}
    except (ValueError, OSError):
        old = {}
    runtimes = list(old.get("runtimes", []))
    by_stage = dict(old.get("by_stage", {}))
    key = _record_key(eff)
    for i, rt in enumerate(runtimes):
        if _record_key(rt) == key:
            runtimes[i] = eff
            break
    else:
        runtimes.append(eff)
        i = len(runtimes) - 1
    for stage in stages:
        by_stage[stage] = i
    used = sorted(set(by_stage.values()))  # drop sets no stage ran under any more, renumbering
    remap = {old_i: new_i for new_i, old_i in enumerate(used)}
    return write_json(path, {"current": eff, "runtimes": [runtimes[j] for j in used],
                             "by_stage": {s: remap[j] for s, j in sorted(by_stage.items())}})


def report_lines(root: Path) -> list[str]:
    """REPORT.md section: the numerics settings each stage ran under."""
    path = record_path(root)
    if not path.exists():
        return []
    rec = read_json(path)
    runtimes, by_stage = rec.get("runtimes", []), rec.get("by_stage", {})
    lines = ["## CPU numerics (runtime pin)", "",
             "The profile's `runtime:` settings pin the kernel dispatch and thread counts before torch loads, so that "
             "a CPU run gives the same bits on any x86-64 machine with AVX2 (repro/runtime.py); what the stages "
             "actually ran under, read back from torch, MKL and OpenBLAS:", ""]
    if len(runtimes) > 1:
        lines += [f"**The stages ran under {len(runtimes)} different settings** (see runtime.json `by_stage`): "
                  "the results are not those of one pinned run.", ""]
    lines += ["| setting | " + " | ".join(f"set {i}" for i in range(len(runtimes))) + " |",
              "|---|" + "---|" * len(runtimes)]

    def row(name, fn):
        lines.append(f"| {name} | " + " | ".join(str(fn(rt, i)) for i, rt in enumerate(runtimes)) + " |")

    row("profile asks", lambda rt, _: ", ".join(f"{k} {v}" for k, v in rt["settings"].items() if v is not None)
        or "nothing (torch defaults)")
    row("pinned", lambda rt, _: ("yes" if any(v is not None for v in rt["settings"].values()) else "-")
        if rt["pinned"] else "NO: " + "; ".join(rt["mismatch"]))
    row("torch dispatch (get_cpu_capability)", lambda rt, _: rt["cpu_capability"])
    row("MKL CNR branch", lambda rt, _: rt["mkl_branch"])
    row("threads (torch / BLAS pools)", lambda rt, _: f"{rt['torch_threads']} / " + ", ".join(
        f"{p['api']} {p['threads']}" + (f" {p['architecture']}" if p.get("architecture") else "") for p in rt["blas"]))
    row("env", lambda rt, _: ", ".join(f"{k}={v}" for k, v in rt["env"].items() if v is not None) or "-")
    row("torch / MKL", lambda rt, _: f"{rt['torch']} / {(rt['mkl'] or 'no MKL').split(' for ')[0]}")
    row("CPU", lambda rt, _: _cpu_text(rt))
    row("stages run", lambda rt, i: sum(1 for j in by_stage.values() if j == i))
    return lines + [""]
