"""The stage runner: caching by config key, --force, atomic stage directories, records, GPU check."""

import json

import pytest

from repro.errors import ReproError
from repro.runner import Stage, closure, is_fresh, record_path, run_pipeline, stage_keys


def _graph(calls, fail=None, fp="a"):
    def make(name):
        def action(ctx):
            calls.append(name)
            (ctx.out / "out.txt").write_text(name)
            if name == fail:
                raise RuntimeError("boom")
        return action

    return {
        "a": Stage("a", make("a"), fingerprint=fp),
        "b": Stage("b", make("b"), deps=("a",), fingerprint=1),
        "c": Stage("c", make("c"), deps=("b",), fingerprint=1, cached=False),
    }


def _run(graph, root, **kw):
    return run_pipeline(graph, ["c"], profile={"name": "t"}, root=root, log=lambda s: None, **kw)


def test_rerun_skips_cached_stages_and_render_stage_always_runs(tmp_path):
    calls = []
    _run(_graph(calls), tmp_path)
    assert calls == ["a", "b", "c"]
    calls.clear()
    _run(_graph(calls), tmp_path)
    assert calls == ["c"]
    rec = json.loads(record_path(tmp_path, "a").read_text())
    assert rec["wall_seconds"] >= 0 and rec["peak_rss_mb"] > 0


def test_config_change_invalidates_stage_and_downstream(tmp_path):
    calls = []
    _run(_graph(calls), tmp_path)
    calls.clear()
    _run(_graph(calls, fp="changed"), tmp_path)
    assert calls == ["a", "b", "c"]


def test_force_redoes_everything(tmp_path):
    calls = []
    _run(_graph(calls), tmp_path)
    calls.clear()
    _run(_graph(calls), tmp_path, force=True)
    assert calls == ["a", "b", "c"]


def test_failed_stage_leaves_no_partial_directory_and_keeps_previous(tmp_path):
    calls = []
    _run(_graph(calls), tmp_path)
    with pytest.raises(ReproError, match="stage b failed: RuntimeError: boom"):
        _run(_graph(calls, fail="b", fp="new"), tmp_path)
    assert not any(p.name.startswith(".b") for p in tmp_path.iterdir())
    assert (tmp_path / "b" / "out.txt").read_text() == "b"  # the previous finished result is untouched
    assert (tmp_path / "logs" / "b.traceback.txt").exists()


def test_corrupted_record_means_redo(tmp_path):
    calls = []
    g = _graph(calls)
    _run(g, tmp_path)
    record_path(tmp_path, "a").write_text("{not json")
    assert not is_fresh(tmp_path, g["a"], stage_keys(g)["a"])
    calls.clear()
    _run(g, tmp_path)
    assert calls[0] == "a"


def test_closure_order_unknown_and_cycle():
    g = _graph([])
    assert closure(g, ["c"]) == ["a", "b", "c"]
    with pytest.raises(ReproError, match="unknown stage"):
        closure(g, ["zzz"])
    cyc = {"x": Stage("x", lambda c: None, deps=("y",)), "y": Stage("y", lambda c: None, deps=("x",))}
    with pytest.raises(ReproError, match="cycle"):
        closure(cyc, ["x"])


def test_gpu_profile_without_gpu_is_one_line_error(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    g = {"m": Stage("m", lambda c: None, needs_model=True)}
    with pytest.raises(ReproError, match="needs a CUDA GPU") as err:
        run_pipeline(g, ["m"], profile={"name": "paper", "requires_gpu": True}, root=tmp_path, log=lambda s: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "m").exists()


def test_resumable_stage_keeps_checkpoints_of_a_killed_attempt(tmp_path):
    attempts = []

    def action(ctx):
        attempts.append(sorted(p.name for p in ctx.out.iterdir()))
        (ctx.out / "checkpoint").write_text("step 2")
        if len(attempts) == 1:
            raise KeyboardInterrupt  # a kill mid-training

    g = {"t": Stage("t", action, fingerprint=1, resumable=True)}
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(g, ["t"], profile={"name": "x"}, root=tmp_path, log=lambda s: None)
    assert not (tmp_path / "t").exists()
    run_pipeline(g, ["t"], profile={"name": "x"}, root=tmp_path, log=lambda s: None)
    assert "checkpoint" in attempts[1]          # the second attempt saw the first one's checkpoint
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["checkpoint"]
    # a different config must not resume from the other key's checkpoints
    stale = tmp_path / ".t.partial-0123456789abcdef"
    stale.mkdir()
    (stale / "checkpoint").write_text("old")
    g2 = {"t": Stage("t", action, fingerprint=2, resumable=True)}
    run_pipeline(g2, ["t"], profile={"name": "x"}, root=tmp_path, log=lambda s: None)
    assert attempts[2] == [] and not stale.exists()


def test_force_discards_a_killed_attempts_checkpoints(tmp_path):
    attempts = []

    def action(ctx):
        attempts.append(sorted(p.name for p in ctx.out.iterdir()))
        (ctx.out / "checkpoint").write_text("broken")
        if len(attempts) == 1:
            raise KeyboardInterrupt

    g = {"t": Stage("t", action, fingerprint=1, resumable=True)}
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(g, ["t"], profile={"name": "x"}, root=tmp_path, log=lambda s: None)
    run_pipeline(g, ["t"], profile={"name": "x"}, root=tmp_path, log=lambda s: None, force=True)
    assert attempts[1] == []          # --force starts afresh, whatever a killed attempt left


def test_runner_never_touches_paths_outside_the_run_directory(tmp_path):
    from repro.runner import inside

    root = tmp_path / "run"
    victim = tmp_path / "VICTIM"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    g = {"../VICTIM": Stage("../VICTIM", lambda ctx: (ctx.out / "x").write_text("x"))}
    with pytest.raises(ReproError, match="outside the run directory"):
        run_pipeline(g, ["../VICTIM"], profile={"name": "x"}, root=root, log=lambda s: None)
    assert (victim / "keep.txt").read_text() == "precious"
    with pytest.raises(ReproError, match="outside the run directory"):
        inside(root, root)


@pytest.mark.parametrize("content", ["[]", "null", "{broken", '"a string"'])
def test_a_record_that_is_not_a_record_means_redo(tmp_path, content):
    calls = []
    _run(_graph(calls), tmp_path)
    record_path(tmp_path, "a").write_text(content)
    calls.clear()
    _run(_graph(calls), tmp_path)
    assert calls == ["a", "b", "c"] or calls[0] == "a"


def test_one_writer_per_run_directory(tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    from repro.lock import lock_path

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from repro.lock import run_dir_lock
        with run_dir_lock({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ReproError, match=rf"in use by process {holder.pid} \(lock"):
            _run(_graph([]), tmp_path)
        # a rank process started by the holder works under the holder's lock
        env = {**os.environ, "REPRO_PARENT_LOCK": str(lock_path(tmp_path).resolve())}
        res = subprocess.run([sys.executable, "-c", f"from repro.lock import run_dir_lock\n"
                              f"with run_dir_lock({str(tmp_path)!r}): print('ok')"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.stdout.strip() == "ok", res.stderr
    finally:
        holder.kill()
        holder.wait()
    _run(_graph([]), tmp_path)  # free again once the holder is gone


def test_code_and_input_files_are_part_of_the_key(tmp_path):
    data = tmp_path / "prompts.txt"
    data.write_text("one")
    g = {"a": Stage("a", lambda ctx: None, fingerprint=1, inputs=(str(data),), code=("repro.classify",))}
    k1 = stage_keys(g)["a"]
    data.write_text("two")
    assert stage_keys(g)["a"] != k1
    g2 = {"a": Stage("a", lambda ctx: None, fingerprint=1, inputs=(str(data),), code=("repro.advice",))}
    assert stage_keys(g2)["a"] != stage_keys(g)["a"]


def test_code_closure_follows_imports_and_declared_dynamic_ones():
    from repro.cachekey import module_closure

    behavior = module_closure("repro.stages.behavior")
    assert "repro.classify" in behavior and "repro.generate" in behavior
    assert "repro.train.peft_lora" in module_closure("repro.stages.train")   # imported via importlib, declared
    assert "repro.classify" not in module_closure("repro.report")


@pytest.mark.parametrize("damage", ["truncate", "delete", "flip"])
def test_corrupted_cached_artifact_is_detected_and_redone(tmp_path, damage):
    calls = []
    g = _graph(calls)
    _run(g, tmp_path)
    target = tmp_path / "a" / "out.txt"
    if damage == "truncate":
        target.write_text("")
    elif damage == "delete":
        target.unlink()
    else:
        target.write_text("x")  # same size as "a", different content
    assert not is_fresh(tmp_path, g["a"], stage_keys(g)["a"])
    calls.clear()
    _run(g, tmp_path)
    assert calls[0] == "a" and target.read_text() == "a"


def test_unexpected_failure_in_an_unwritable_run_dir_is_still_one_line(tmp_path):
    def action(ctx):
        (ctx.root / "logs").write_text("a file where the log directory should be")   # the handler cannot log
        raise RuntimeError("boom\nsecond line")

    g = {"s": Stage("s", action, fingerprint=1)}
    with pytest.raises(ReproError) as err:
        run_pipeline(g, ["s"], profile={"name": "x"}, root=tmp_path, log=lambda s: None)
    assert "\n" not in str(err.value)
    assert "stage s failed: RuntimeError: boom" in str(err.value) and "traceback not saved" in str(err.value)
