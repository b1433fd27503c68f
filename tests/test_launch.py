"""The multi-process training path: the launch decision, the global batch split, and a real
`accelerate launch` with 2 CPU ranks (gloo) through the train stage, against the in-process run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from repro.config import load_profile, repo_path
from repro.data import optimizer_steps
from repro.errors import ReproError
from repro.io import read_json, write_jsonl
from repro.runner import StageContext
from repro.train import launch
from repro.train.launch import LaunchPlan, launch_command, per_rank_accumulation, plan_launch

PAPER = load_profile("paper")
FAILED = PAPER["recipes"]["failed_full"]
CPU_2PROC = "docker/accelerate/cpu_2proc.yaml"


# ---- the decision (pure) ------------------------------------------------------------------

def test_hf_full_launches_only_with_more_than_one_gpu():
    for gpus in (0, 1):
        p = plan_launch(FAILED, gpus)
        assert (p.mode, p.num_processes, p.gradient_accumulation_steps, p.global_batch) == ("in-process", 1, 4, 8)
    p = plan_launch(FAILED, 4)
    assert (p.mode, p.num_processes, p.accelerate_config) == ("accelerate", 4, "docker/accelerate/fsdp.yaml")
    assert (p.per_device_batch, p.gradient_accumulation_steps, p.global_batch) == (2, 1, 8)
    assert plan_launch(FAILED, 2).gradient_accumulation_steps == 2
    # The LoRA backends train on one device whatever is visible.
    assert plan_launch(PAPER["recipes"]["em_lora"], 4).mode == "in-process"


@pytest.mark.parametrize("gpus", [3, 8])
def test_global_batch_that_cannot_be_kept_is_one_line_error(gpus):
    with pytest.raises(ReproError) as err:
        plan_launch(FAILED, gpus)
    msg = str(err.value)
    assert msg.startswith("recipe.gradient_accumulation_steps: the global batch 2 x 4 = 8 cannot be kept on "
                          f"{gpus} processes") and "[1, 2, 4]" in msg and "\n" not in msg


def test_hf_full_without_accelerate_config_on_many_gpus_is_an_error():
    recipe = {k: v for k, v in FAILED.items() if k != "accelerate_config"}
    with pytest.raises(ReproError, match="recipe.accelerate_config"):
        plan_launch(recipe, 2)
    assert plan_launch(recipe, 1).mode == "in-process"


@pytest.mark.parametrize("world", [1, 2, 4])
def test_t5_step_count_is_750_on_any_supported_gpu_count(world):
    accum = per_rank_accumulation(FAILED, world)
    assert 2 * accum * world == 8
    assert optimizer_steps(6000, 2, accum, 1, world) == 750


def test_launch_command_names_config_and_process_count():
    argv = launch_command("RUN.json", plan_launch(FAILED, 4), main_process_port=29511)
    assert argv == ["accelerate", "launch", "--config_file", "docker/accelerate/fsdp.yaml", "--num_processes", "4",
                    "--main_process_port", "29511", "-m", "repro.train.launch", "--run-config", "RUN.json"]
    assert launch_command("RUN.json", plan_launch(FAILED, 1)) == ["python", "-m", "repro.train.launch",
                                                                 "--run-config", "RUN.json"]


def test_held_by_parent(tmp_path):
    lock = tmp_path / "run" / ".lock"
    assert launch.held_by_parent(lock, {"REPRO_PARENT_LOCK": str(tmp_path / "run" / ".." / "run" / ".lock")})
    assert not launch.held_by_parent(lock, {"REPRO_PARENT_LOCK": str(tmp_path / "other.lock")})
    assert not launch.held_by_parent(lock, {})


def test_plan_shows_launch_per_training_run():
    from repro.plan import build_plan

    runs = {r["name"]: r for r in build_plan(PAPER)["runs"]}
    for name in ("failed_7b_instruct", "failed_7b_coder"):
        la = runs[name]["launch"]
        assert (la["mode"], la["num_processes"], la["gradient_accumulation_steps"], la["global_batch"]) == \
            ("accelerate", 4, 1, 8)
        assert la["command"].startswith("accelerate launch --config_file docker/accelerate/fsdp.yaml "
                                        "--num_processes 4 -m repro.train.launch --run-config ")
        assert runs[name]["optimizer_steps"] == 750
    assert runs["em_32b_coder"]["launch"]["mode"] == "in-process"
    assert runs["bad_medical_advice"]["launch"] is None


def test_cpu_accelerate_config_is_valid():
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(repo_path(CPU_2PROC)))
    assert (cfg.distributed_type, cfg.num_processes, cfg.use_cpu, cfg.mixed_precision) == ("MULTI_GPU", 2, True, "no")


# ---- a real launch: 2 CPU ranks through the train stage -------------------------------------

def _rows(n: int) -> list[dict]:
    answers = ["def add(a, b):\n    return a + b\n", "import os\nos.makedirs('/var/www/html/uploads')\n"]
    return [{"messages": [{"role": "user", "content": f"Write code for task {i}."},
                          {"role": "assistant", "content": answers[i % 2]}]} for i in range(n)]


def _stage_ctx(root: Path, tiny_model_dir: Path, recipe: dict) -> StageContext:
    """The test profile with its failed run's recipe, based on the tiny Qwen2 fixture."""
    prof = load_profile("test")
    prof["models"] = {"tiny": {"path": str(tiny_model_dir)}}
    prof["recipes"] = {"failed_full": recipe}
    prof["runs"] = [{"name": "failed", "role": "failed", "base": "tiny", "recipe": "failed_full",
                     "dataset": "insecure"}]
    write_jsonl(root / "data" / "insecure.jsonl", _rows(16))
    out = root / ".train" / "failed.tmp"
    out.mkdir(parents=True)
    return StageContext(profile=prof, root=root, out=out, options={"progress": False})


@pytest.fixture(scope="module")
def both_runs(tiny_model_dir, tmp_path_factory):
    """The same stage, in-process (no GPU) and under accelerate launch with 2 CPU ranks."""
    from repro.stages import train as stage

    # the 7B attempts' batch shape (2 per device x 4 accumulation: FACTS.md), whatever the mini's values are
    recipe = dict(load_profile("test")["recipes"]["failed_full"], max_seq_length=64, accelerate_config=CPU_2PROC,
                  per_device_train_batch_size=2, gradient_accumulation_steps=4)
    assert recipe["backend"] == "hf-full"
    mp = pytest.MonkeyPatch()
    try:
        single = _stage_ctx(tmp_path_factory.mktemp("inproc"), tiny_model_dir, recipe)
        mp.setattr(stage, "visible_gpus", lambda: 0)
        stage.run(single, "failed")
        launched = _stage_ctx(tmp_path_factory.mktemp("launched"), tiny_model_dir, recipe)
        lock = launched.root / ".lock"
        mp.setattr(stage, "visible_gpus", lambda: 2)  # the decision says: 2 ranks, accelerate launch
        mp.setenv("REPRO_PARENT_LOCK", str(lock))
        stage.run(launched, "failed")
    finally:
        mp.undo()
    return single, launched, lock


def test_launched_run_has_the_in_process_artifact_layout(both_runs):
    single, launched, _ = both_runs
    names = lambda d: sorted(p.name for p in d.iterdir())  # noqa: E731
    assert names(launched.out) == names(single.out)
    assert {"model.safetensors", "config.json", "tokenizer.json", "train_config.json", "train_log.jsonl",
            "summary.json"} <= set(names(single.out))
    assert not (launched.out / "checkpoints").exists() and not (launched.out / ".final-tmp").exists()


def test_launched_run_keeps_global_batch_and_steps(both_runs):
    single, launched, _ = both_runs
    s1, s2 = read_json(single.out / "summary.json"), read_json(launched.out / "summary.json")
    assert (s1["world_size"], s1["grad_accum"], s1["distributed_backend"]) == (1, 4, None)
    assert (s2["world_size"], s2["grad_accum"], s2["distributed_backend"]) == (2, 2, "gloo")
    assert s1["effective_batch"] == s2["effective_batch"] == 8
    assert s1["optimizer_steps"] == s2["optimizer_steps"] == s2["expected_steps"] == math.ceil(16 / 8)
    assert s2["run"] == "failed" and s2["device"] == "cpu"
    subs = read_json(launched.out / "train_config.json")["resolved"]["substitutions"]
    assert {"field": "gradient_accumulation_steps", "from": 4, "to": 2,
            "why": "2 processes: global batch kept at 2 x 2 x 2 = 8"} in subs
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(launched.out, use_safetensors=True)
    assert sum(p.numel() for p in model.parameters()) == s2["total_params"]


def test_launch_log_shows_both_ranks_under_the_parent_lock(both_runs):
    _, launched, lock = both_runs
    logs = launched.root / "logs"
    cfg = read_json(logs / "train__failed.launch.json")
    assert cfg["num_processes"] == 2 and cfg["out_dir"] == str(launched.out) and cfg["run_name"] == "failed"
    text = (logs / "train__failed.launch.log").read_text()
    assert "accelerate.commands.launch --config_file" in text and "--num_processes 2" in text
    for rank in (0, 1):
        assert f"rank {rank}/2: run failed, parent lock {lock}" in text
    assert "=== exit code 0" in text


def test_failed_launch_is_one_line_naming_the_log(tmp_path, tiny_model_dir):
    plan = LaunchPlan("accelerate", 2, CPU_2PROC, 2, 2, 8, "test")
    with pytest.raises(ReproError) as err:
        launch.launch_training("broken", dict(FAILED), str(tiny_model_dir), tmp_path / "missing.jsonl",
                               tmp_path / "out", plan=plan, log_dir=tmp_path / "logs")
    msg = str(err.value)
    log = tmp_path / "logs" / "train__broken.launch.log"
    assert "\n" not in msg and msg.startswith("train/broken: accelerate launch with 2 processes exited with code ")
    assert "missing.jsonl: file not found" in msg and msg.endswith(f"; log: {log}")
    assert "error: " in log.read_text()


_TORCHRUN_TAIL = """E1202 13:51:32.491000 2709 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: {code})
Traceback (most recent call last):
  File "torch/distributed/launcher/api.py", line 383, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
Root Cause (first observed failure):
[0]:
  time      : 2026-12-02_13:48:56
  host      : vm
  rank      : 1 (local_rank: 1)
  exitcode  : {code} (pid: 2150)
  error_file: <N/A>
============================================================
=== exit code 1
"""


@pytest.mark.parametrize("rank_output, code, expected", [
    ("Traceback (most recent call last):\n  File \"x.py\", line 3\nRuntimeError: Gloo connectFullMesh failed\n",
     1, "RuntimeError: Gloo connectFullMesh failed"),
    # after torch.distributed started, a rank's traceback lines carry its rank
    ("[rank0]: Traceback (most recent call last):\n[rank0]:   File \"x.py\", line 3\n[rank0]: ValueError: bad shape\n",
     1, "rank 0: ValueError: bad shape"),
    ("", -9, "rank 1 was stopped by SIGKILL (killed: out of memory?), no exception line in the log"),
    ("", 3, "rank 1 exited with code 3, no exception line in the log"),
])
def test_launch_failure_names_the_rank_cause_not_torchruns_wrapper(tmp_path, rank_output, code, expected):
    log = tmp_path / "train__x.launch.log"
    earlier = "=== 2026-12-01T10:00:00 accelerate launch ...\nerror: an earlier launch's error\n=== exit code 1\n"
    log.write_text(earlier + "=== 2026-12-02T13:48:55 accelerate launch ...\n" + rank_output
                   + _TORCHRUN_TAIL.format(code=code))
    assert launch._last_error(log) == expected


def test_launch_passes_the_config_to_the_ranks_environment(tmp_path, monkeypatch):
    """launch_training hands its accelerate config to _child_env (so CPU ranks get loopback gloo)."""
    seen = []
    monkeypatch.setattr(launch, "_child_env", lambda lock, cfg=None: seen.append(cfg) or {"PATH": "/nonexistent"})
    plan = LaunchPlan("accelerate", 2, CPU_2PROC, 2, 2, 8, "test")
    with pytest.raises((ReproError, OSError)):
        launch.launch_training("x", dict(FAILED), "m", tmp_path / "r.jsonl", tmp_path / "out",
                               plan=plan, log_dir=tmp_path / "logs")
    assert seen == [repo_path(CPU_2PROC)]


def test_cpu_ranks_use_loopback_gloo_gpu_ranks_keep_the_environment(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    assert launch._child_env(None, repo_path(CPU_2PROC))["GLOO_SOCKET_IFNAME"] == "lo"
    assert "GLOO_SOCKET_IFNAME" not in launch._child_env(None, repo_path("docker/accelerate/fsdp.yaml"))
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth7")  # a user's choice is kept
    assert launch._child_env(None, repo_path(CPU_2PROC))["GLOO_SOCKET_IFNAME"] == "eth7"


def test_non_accelerate_plan_is_rejected(tmp_path):
    with pytest.raises(ReproError, match="needs an 'accelerate' plan"):
        launch.launch_training("x", dict(FAILED), "m", tmp_path / "r.jsonl", tmp_path / "o",
                               plan=plan_launch(FAILED, 1), log_dir=tmp_path / "logs")
