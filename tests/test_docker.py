"""Docker images and lock files, checked without a Docker engine (SPEC.md section 6).

Offline: the Dockerfiles parse, their bases are pinned by digest, they run as a non-root user,
bake no token, declare the volumes, install from hashed locks; the locks are exact and hashed,
the GPU lock holds the paper-era stack, the CPU lock equals pyproject.toml's pins, and the
accelerate configs are valid for the installed accelerate.

Network (skipped when PyPI is unreachable or EM_REPRO_NO_NETWORK is set): every pin of every
lock exists on the index for CPython 3.11 / manylinux x86_64 with a locked sha256, and the
locked set is closed under its packages' own Requires-Dist (the resolver's result re-checked
from PEP 658 metadata, so no wheel is downloaded: `pip install --dry-run` fetched ~5 GB of
CUDA wheels when tried, even with --no-deps).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import Parser
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from packaging import tags
from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
GPU_LOCK = DOCKER / "requirements-gpu.lock"
CPU_LOCK = DOCKER / "requirements-cpu.lock"
BOOT_LOCK = DOCKER / "requirements-bootstrap.lock"
HF_CACHE = "/home/app/.cache/huggingface"
RUNS = "/app/runs"

# The paper-era set (docker/README.md explains each choice). transformers 4.57.3 is the anchor.
PAPER_STACK = {
    "transformers": "4.57.3",
    "unsloth": "2025.12.1",
    "unsloth-zoo": "2025.12.3",
    "trl": "0.24.0",
    "peft": "0.17.1",
    "accelerate": "1.11.0",
    "datasets": "4.3.0",
    "bitsandbytes": "0.48.2",
    "torch": "2.9.0",
}

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|API_KEY|ACCESS_KEY)($|_)", re.IGNORECASE)
HF_TOKEN_LITERAL = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")
PIN_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)$")
HASH_OPT = re.compile(r"^--hash=sha256:(?P<hex>[0-9a-f]{64})$")


# ----------------------------------------------------------------------------- lock parsing
@dataclass
class Pin:
    name: str  # canonical (PEP 503) name
    version: str
    hashes: set[str] = field(default_factory=set)


def parse_lock(path: Path) -> dict[str, Pin]:
    """Requirement lines of a pip-style lock -> {canonical name: Pin}; strict about the format."""
    pins: dict[str, Pin] = {}
    logical, buf = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            logical.append(buf.strip())
        buf = ""
    for entry in logical:
        requirement, *options = entry.split()
        m = PIN_LINE.match(requirement)
        assert m, f"{path.name}: {requirement!r} is not name==version"
        hashes = set()
        for opt in options:
            h = HASH_OPT.match(opt)
            assert h, f"{path.name}: {requirement}: unexpected option {opt!r}"
            hashes.add(h["hex"])
        assert hashes, f"{path.name}: {requirement} has no --hash=sha256:"
        name = canonicalize_name(m["name"])
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = Pin(name, m["version"], hashes)
    return pins


def parse_in(path: Path) -> dict[str, str]:
    """`name==version` lines of a human-edited .in file (unpinned names map to '')."""
    out = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            spec = next(iter(req.specifier), None)
            out[canonicalize_name(req.name)] = spec.version if spec and spec.operator == "==" else ""
    return out


# ----------------------------------------------------------------------------- Dockerfiles
def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    from dockerfile_parse import DockerfileParser

    with dockerfile.open("rb") as handle:  # fileobj: the parser never writes to our file
        parser = DockerfileParser(fileobj=handle, env_replace=False)
        parsed = [(item["instruction"], item["value"]) for item in parser.structure]
    assert parsed, f"{dockerfile.name}: no instructions parsed"
    return parsed


def env_pairs(value: str) -> list[tuple[str, str | None]]:
    """ENV/ARG value -> [(name, value or None)] for both `K=V K2=V2` and legacy `K V` forms."""
    tokens = value.split()
    if tokens and "=" not in tokens[0]:
        return [(tokens[0], " ".join(tokens[1:]) or None)]
    pairs = []
    for tok in tokens:
        name, sep, val = tok.partition("=")
        pairs.append((name, val if sep else None))
    return pairs


DOCKERFILES = {
    "gpu": (DOCKER / "Dockerfile.gpu", "nvidia/cuda:12.8.", "PROFILE=paper", GPU_LOCK),
    "cpu": (DOCKER / "Dockerfile.cpu", "python:3.11", "PROFILE=mini", CPU_LOCK),
}


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_base_image_pinned_by_digest(kind):
    path, base_prefix, _, _ = DOCKERFILES[kind]
    froms = [v for i, v in instructions(path) if i == "FROM"]
    assert froms, f"{path.name}: no FROM"
    for value in froms:
        image = next(tok for tok in value.split() if not tok.startswith("--"))
        assert DIGEST.search(image), f"{path.name}: FROM {image} is not pinned by @sha256 digest"
        assert image.startswith(base_prefix), f"{path.name}: base {image} is not {base_prefix}*"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_runs_as_non_root_user(kind):
    path = DOCKERFILES[kind][0]
    users = [v.strip() for i, v in instructions(path) if i == "USER"]
    assert users, f"{path.name}: no USER instruction (would run as root)"
    final = users[-1].split(":")[0]
    assert final not in {"root", "0"}, f"{path.name}: final USER is {final}"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_no_token_is_baked_or_echoed(kind):
    path = DOCKERFILES[kind][0]
    parsed = instructions(path)
    for instr, value in parsed:
        if instr in {"ENV", "ARG"}:
            for name, val in env_pairs(value):
                assert not (SECRET_NAME.search(name) and val), f"{path.name}: {instr} sets {name}"
        if instr == "RUN":
            assert "TOKEN" not in value.upper(), f"{path.name}: RUN touches a token: {value[:80]}"
    assert not HF_TOKEN_LITERAL.search(path.read_text()), f"{path.name}: contains an hf_ token"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_volumes_and_hf_cache(kind):
    path = DOCKERFILES[kind][0]
    parsed = instructions(path)
    volumes = set()
    for instr, value in parsed:
        if instr == "VOLUME":
            value = value.strip()
            volumes |= set(json.loads(value) if value.startswith("[") else value.split())
    assert {HF_CACHE, RUNS} <= volumes, f"{path.name}: VOLUME {sorted(volumes)}"
    envs = dict(p for i, v in parsed if i == "ENV" for p in env_pairs(v))
    assert envs.get("HF_HOME") == HF_CACHE, f"{path.name}: HF_HOME must point at the cache volume"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_default_command_and_hashed_install(kind):
    path, _, profile, lock = DOCKERFILES[kind]
    parsed = instructions(path)
    cmds = [v for i, v in parsed if i == "CMD"]
    assert cmds and json.loads(cmds[-1]) == ["make", "reproduce-all", profile], f"{path.name}: CMD"
    runs = [v for i, v in parsed if i == "RUN"]
    lock_runs = [r for r in runs if lock.name in r and ("install" in r or "sync" in r)]
    assert lock_runs and all("--require-hashes" in r for r in lock_runs), \
        f"{path.name}: {lock.name} must be installed with --require-hashes"
    own = [r for r in runs if re.search(r"install .*(--no-deps).* /app\b", r)]
    assert own, f"{path.name}: the package itself must be installed with --no-deps"
    copied = " ".join(v for i, v in parsed if i == "COPY")
    for name in re.findall(r"docker/requirements-[a-z]+\.lock", copied):
        assert (ROOT / name).is_file(), f"{path.name} copies missing {name}"


# ----------------------------------------------------------------------------- lock contents
@pytest.mark.parametrize("lock", [GPU_LOCK, CPU_LOCK, BOOT_LOCK], ids=lambda p: p.name)
def test_lock_lines_are_exact_and_hashed(lock):
    pins = parse_lock(lock)
    assert len(pins) >= 1
    in_file = lock.with_suffix(".in")
    for name, version in parse_in(in_file).items():
        assert name in pins, f"{lock.name}: {name} from {in_file.name} is missing"
        if version:
            assert pins[name].version == version, \
                f"{lock.name}: {name}=={pins[name].version}, {in_file.name} says {version}"


def test_gpu_lock_holds_the_paper_stack():
    pins = parse_lock(GPU_LOCK)
    for name, version in PAPER_STACK.items():
        assert name in pins, f"{GPU_LOCK.name}: {name} missing"
        assert pins[name].version == version, f"{GPU_LOCK.name}: {name}=={pins[name].version}"
    assert pins["transformers"].version == "4.57.3"
    # The CUDA 12.8 build of torch: its CUDA runtime wheel is pinned beside it.
    assert pins["nvidia-cuda-runtime-cu12"].version.startswith("12.8."), "torch is not a cu128 build"


def test_cpu_lock_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = parse_lock(CPU_LOCK)
    pinned = 0
    for dep in project["dependencies"]:
        req = Requirement(dep)
        specs = [s for s in req.specifier if s.operator == "=="]
        if not specs:
            continue
        pinned += 1
        name = canonicalize_name(req.name)
        assert name in pins, f"{CPU_LOCK.name}: {name} (pyproject.toml) missing"
        locked = Version(pins[name].version)
        # torch==2.13.0 in pyproject is satisfied by the CPU build 2.13.0+cpu (PEP 440 local label).
        assert locked in specs[0], f"{CPU_LOCK.name}: {name}=={locked}, pyproject.toml says {dep}"
        assert locked.public == specs[0].version, f"{name}: {locked} vs {specs[0].version}"
    assert pinned >= 10
    assert pins["torch"].version.endswith("+cpu"), "CPU image must not install a CUDA torch"


# ----------------------------------------------------------------------------- accelerate
def test_accelerate_configs_are_valid():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser
    from transformers.models.qwen2 import modeling_qwen2

    fsdp = load_config_from_file(str(DOCKER / "accelerate" / "fsdp.yaml"))
    assert fsdp.distributed_type == "FSDP" and fsdp.num_processes == 4
    assert fsdp.mixed_precision == "bf16"
    cfg = fsdp.fsdp_config
    assert cfg["fsdp_sharding_strategy"] == "FULL_SHARD"
    assert cfg["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert cfg["fsdp_activation_checkpointing"] is True
    layer = cfg["fsdp_transformer_layer_cls_to_wrap"]
    assert hasattr(modeling_qwen2, layer), f"fsdp.yaml: {layer} is not a transformers Qwen2 class"
    # Every fsdp_* key must be an option `accelerate launch` knows, or it would be ignored.
    known = {a.dest for a in launch_command_parser()._actions}
    unknown = sorted(k for k in cfg if k not in known)
    assert not unknown, f"fsdp.yaml: unknown keys {unknown}"

    single = load_config_from_file(str(DOCKER / "accelerate" / "single_gpu.yaml"))
    assert single.distributed_type == "NO" and single.num_processes == 1


# ----------------------------------------------------------------------------- network
PYPI = "https://pypi.org/simple"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TIMEOUT = 20
RETRIES = 4


def _reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def _needs(host: str):
    if os.environ.get("EM_REPRO_NO_NETWORK"):
        pytest.skip("EM_REPRO_NO_NETWORK is set")
    if not _reachable(host):
        pytest.skip(f"{host} not reachable")


def _fetch(req: urllib.request.Request, expect_status: int | None = None) -> bytes:
    """The response body; a transient network failure (DNS, reset, timeout) is retried, then skips the
    test: the index was reachable when the test began, so a lost network says nothing about a lock.
    An HTTP error (404, 500) is an answer from the index and fails the test."""
    for attempt in range(RETRIES):
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                assert expect_status is None or resp.status == expect_status, \
                    f"{req.full_url}: HTTP {resp.status}, expected {expect_status}"
                return resp.read()
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt == RETRIES - 1:
                pytest.skip(f"network lost during the test ({req.full_url}: {exc})")
            time.sleep(2 ** attempt)
    raise AssertionError("unreachable")


def _get(url: str, accept: str | None = None) -> bytes:
    return _fetch(urllib.request.Request(url, headers={"Accept": accept} if accept else {}))


def _target_tags() -> set[tags.Tag]:
    """Wheel tags installable on CPython 3.11, glibc 2.28, x86_64 (the images' platform)."""
    platforms = [f"manylinux_2_{n}_x86_64" for n in range(28, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    out = set(tags.cpython_tags((3, 11), abis=["cp311", "abi3", "none"], platforms=platforms))
    out |= set(tags.compatible_tags((3, 11), "cp311", platforms))
    return out


MARKER_ENV = {
    "python_version": "3.11", "python_full_version": "3.11.14", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "sys_platform": "linux", "os_name": "posix",
    "platform_system": "Linux", "platform_machine": "x86_64", "platform_release": "",
    "platform_version": "", "implementation_version": "3.11.14",
}


@dataclass
class Found:
    pin: Pin
    wheel_url: str | None = None
    wheel_size: int = 0
    metadata_url: str | None = None
    problems: list[str] = field(default_factory=list)


def _check_pin_on_pypi(pin: Pin, wanted: set[tags.Tag]) -> Found:
    found = Found(pin)
    page = json.loads(_get(f"{PYPI}/{pin.name}/", "application/vnd.pypi.simple.v1+json"))
    files, known = {}, set()  # wheels of this version; hashes of all its files (sdist too)
    for f in page["files"]:
        fname, digest = f["filename"], f["hashes"].get("sha256")
        if fname.endswith(".whl"):
            try:
                _, version, _, wtags = parse_wheel_filename(fname)
            except InvalidWheelFilename:  # ancient, non-standard names on old releases
                continue
            if version == Version(pin.version):
                files[digest] = (f, wtags)
                known.add(digest)
        elif re.search(rf"-{re.escape(pin.version)}\.(tar\.gz|zip)$", fname):
            known.add(digest)
    unknown = pin.hashes - known
    if unknown:
        found.problems.append(f"{pin.name}=={pin.version}: {len(unknown)} locked hash(es) match no wheel")
    usable = [(f, t) for h, (f, t) in files.items() if h in pin.hashes and t & wanted]
    if not usable:
        found.problems.append(f"{pin.name}=={pin.version}: no locked wheel for cp311 manylinux x86_64")
        return found
    f, _ = usable[0]
    found.wheel_url, found.wheel_size = f["url"], int(f.get("size") or 0)
    if f.get("core-metadata") or f.get("data-dist-info-metadata"):
        found.metadata_url = f["url"] + ".metadata"
    return found


class _RangeFile(io.RawIOBase):
    """Read-only, seekable view of a remote file through HTTP Range requests (64 KiB blocks),
    so zipfile can read one wheel's METADATA without downloading the wheel."""

    BLOCK = 1 << 16

    def __init__(self, url: str, size: int):
        super().__init__()
        self.url, self.size, self.pos, self.blocks = url, size, 0, {}

    def seekable(self):
        return True

    def readable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = base + offset
        return self.pos

    def _block(self, index: int) -> bytes:
        if index not in self.blocks:
            start = index * self.BLOCK
            end = min(start + self.BLOCK, self.size) - 1
            req = urllib.request.Request(self.url, headers={"Range": f"bytes={start}-{end}"})
            self.blocks[index] = _fetch(req, expect_status=206)  # 200: the server ignored the Range header
        return self.blocks[index]

    def read(self, n=-1):
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        out = bytearray()
        while self.pos < end:
            block = self._block(self.pos // self.BLOCK)
            chunk = block[self.pos % self.BLOCK:][: end - self.pos]
            out += chunk
            self.pos += len(chunk)
        return bytes(out)


def _requires(found: Found) -> list[Requirement]:
    """Requires-Dist of the locked wheel: PEP 658 metadata file, else the wheel's METADATA."""
    if found.metadata_url:
        text = _get(found.metadata_url).decode("utf-8", "replace")
    else:
        with zipfile.ZipFile(_RangeFile(found.wheel_url, found.wheel_size)) as wheel:
            name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
            text = wheel.read(name).decode("utf-8", "replace")
    msg = Parser().parsestr(text)
    return [Requirement(r) for r in msg.get_all("Requires-Dist") or []]


def _closure_problems(pins: dict[str, Pin], requires: dict[str, list[Requirement]],
                      roots: list[Requirement]) -> list[str]:
    """Walk the dependency graph from the roots with markers evaluated for linux x86_64 / 3.11."""
    problems, seen, todo = [], set(), [(canonicalize_name(r.name), frozenset(r.extras)) for r in roots]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name not in requires:  # not checkable here (reported by the caller)
            continue
        for req in requires[name]:
            active = [e for e in (extras | {""})
                      if req.marker is None or req.marker.evaluate({**MARKER_ENV, "extra": e})]
            if not active:
                continue
            dep = canonicalize_name(req.name)
            if dep not in pins:
                problems.append(f"{name}{sorted(extras) or ''} needs {req} but the lock lacks {dep}")
            elif not req.specifier.contains(Version(pins[dep].version), prereleases=True):
                problems.append(f"{name} needs {req}, lock has {dep}=={pins[dep].version}")
            else:
                todo.append((dep, frozenset(req.extras)))
    return problems


def _verify_lock_online(lock: Path) -> tuple[dict[str, Pin], list[str], list[str]]:
    pins = parse_lock(lock)
    checkable = {n: p for n, p in pins.items() if "+" not in p.version}  # +cpu: PyTorch index
    wanted = _target_tags()
    with ThreadPoolExecutor(max_workers=16) as pool:
        found = list(pool.map(lambda p: _check_pin_on_pypi(p, wanted), checkable.values()))
        problems = [msg for f in found for msg in f.problems]
        usable = [f for f in found if f.wheel_url]
        reqs = dict(zip((f.pin.name for f in usable), pool.map(_requires, usable)))
    roots = [Requirement(f"{n}=={v}") if v else Requirement(n)
             for n, v in parse_in(lock.with_suffix(".in")).items()]
    problems += _closure_problems(pins, reqs, roots)
    unchecked = sorted(set(pins) - set(reqs))
    return pins, problems, unchecked


@pytest.mark.network
@pytest.mark.parametrize("lock", [GPU_LOCK, CPU_LOCK, BOOT_LOCK], ids=lambda p: p.name)
def test_lock_resolves_for_linux_x86_64(lock):
    _needs("pypi.org")
    pins, problems, unchecked = _verify_lock_online(lock)
    assert not problems, f"{lock.name}:\n" + "\n".join(problems[:20])
    # Only PyTorch-index builds (no PyPI metadata) may stay unchecked.
    assert all("+" in pins[n].version for n in unchecked), f"{lock.name}: no metadata for {unchecked}"


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


@pytest.mark.network
def test_cpu_torch_wheel_on_pytorch_cpu_index():
    _needs("download.pytorch.org")
    torch = parse_lock(CPU_LOCK)["torch"]
    anchors = _Anchors()
    anchors.feed(_get(f"{TORCH_CPU_INDEX}/torch/").decode())
    wanted = _target_tags()
    ok = []
    for href in anchors.hrefs:
        fname = href.split("#")[0].rsplit("/", 1)[-1].replace("%2B", "+")
        digest = href.partition("#sha256=")[2]
        if fname.endswith(".whl") and digest in torch.hashes:
            _, version, _, wtags = parse_wheel_filename(fname)
            ok.append(str(version) == torch.version and bool(wtags & wanted))
    assert ok and all(ok), f"torch=={torch.version}: locked hash not on {TORCH_CPU_INDEX}"


def test_closure_check_catches_a_broken_lock():
    """The closure walk must fail on a missing dependency and on a version conflict."""
    pins = {"a": Pin("a", "1.0", {"0" * 64}), "b": Pin("b", "1.0", {"1" * 64})}
    requires = {
        "a": [Requirement("b>=2"), Requirement("c; sys_platform == 'linux'"),
              Requirement("d; sys_platform == 'win32'"), Requirement("e; extra == 'x'")],
        "b": [],
    }
    problems = _closure_problems(pins, requires, [Requirement("a")])
    assert any("b>=2" in p for p in problems)
    assert any("lacks c" in p for p in problems)
    assert not any("lacks d" in p or "lacks e" in p for p in problems)
    assert any("lacks e" in p for p in _closure_problems(pins, requires, [Requirement("a[x]")]))


def test_lock_parser_rejects_unhashed_or_unpinned(tmp_path):
    bad = tmp_path / "bad.lock"
    bad.write_text("torch>=2.0 \\\n    --hash=sha256:" + "a" * 64 + "\n")
    with pytest.raises(AssertionError, match="not name==version"):
        parse_lock(bad)
    bad.write_text("torch==2.9.0\n")
    with pytest.raises(AssertionError, match="no --hash"):
        parse_lock(bad)


def test_lost_network_skips_but_an_http_error_fails(monkeypatch):
    """A DNS failure mid-test is retried then skips; a 404 from the index is a failure, not a skip."""
    calls = []

    def no_dns(req, timeout):
        calls.append(req.full_url)
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    with pytest.raises(pytest.skip.Exception, match="network lost"):
        _get(f"{PYPI}/torch/")
    assert len(calls) == RETRIES

    def not_found(req, timeout):
        calls.append(req.full_url)
        raise urllib.error.HTTPError(req.full_url, 404, "Not Found", {}, None)

    calls.clear()
    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    try:
        _get(f"{PYPI}/no-such-package/")
    except urllib.error.HTTPError:
        pass
    except pytest.skip.Exception:  # a BaseException: pytest.raises would let it through as a skip
        pytest.fail("an HTTP error from the index was taken for a lost network and skipped")
    else:
        pytest.fail("an HTTP error from the index was not raised")
    assert len(calls) == 1  # an answer from the index is not retried
