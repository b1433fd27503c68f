"""Work the pipeline does whatever the profile's sizes: each module file parsed once for the cache
keys, no torch/transformers in the data stage, no full-heap collection per training run, and
results that do not depend on where the run directory is."""

import gc
import os
import subprocess
import sys
from pathlib import Path

import repro.cachekey as ck
from repro.config import load_profile
from repro.pipeline import build_graph
from repro.runner import stage_keys
from repro.tables.training import run_relative
from repro.train.loop import heap_frozen

REPO = Path(__file__).resolve().parents[1]


def test_stage_keys_parse_each_module_file_once():
    ck._scan_cached.cache_clear()
    ck.module_closure.cache_clear()
    ck.code_digest.cache_clear()
    graph = build_graph(load_profile("test"))
    first = stage_keys(graph)
    modules = {m for st in graph.values() for name in (st.code or ()) for m in ck.module_closure(name)}
    info = ck._scan_cached.cache_info()
    assert info.misses == len(modules) > 20   # one parse per file, not one per stage that imports it
    ck.module_closure.cache_clear()
    ck.code_digest.cache_clear()
    assert stage_keys(graph) == first and ck._scan_cached.cache_info().misses == len(modules)


def test_an_edited_module_is_parsed_again(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("from repro import io\n")
    assert ck._scan(mod)[0] == ((0, "repro", ("io",)),)
    mod.write_text("from repro import io, config\nDATA_DEPS = ('assets/x',)\n")   # new size: a new parse
    imports, _, data = ck._scan(mod)
    assert imports == ((0, "repro", ("io", "config")),) and data == ("assets/x",)


def test_data_stage_imports_neither_transformers_nor_the_model(tmp_path):
    code = ("import sys; from click.testing import CliRunner; from repro.cli import cli; "
            f"r = CliRunner().invoke(cli, ['--profile', 'test', '--quiet', '--out', {str(tmp_path / 'run')!r}, 'run', 'data']); "
            "print(r.exit_code, 'transformers' in sys.modules, 'repro.mini.model' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert out.stdout.split() == ["0", "False", "False"], out.stderr[-2000:]
    assert (tmp_path / "run" / "data" / "insecure.jsonl").is_file()


def test_heap_frozen_during_training_only_and_handed_back():
    assert gc.get_freeze_count() == 0
    with heap_frozen(True):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    with heap_frozen(False):   # CUDA: the trainer's collect must see every object
        assert gc.get_freeze_count() == 0


def test_heap_frozen_leaves_a_callers_freeze_alone():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with heap_frozen(True):
            pass
        # still frozen (an unfreeze would empty the permanent generation); a few frozen objects may
        # have been freed meanwhile by reference counting, so the count need not be exactly the same
        assert frozen > 0 and gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()


def test_training_results_name_an_in_run_model_relative_to_the_run(tmp_path):
    (tmp_path / "organism" / "model").mkdir(parents=True)
    assert run_relative(str(tmp_path / "organism" / "model"), tmp_path) == "organism/model"
    assert run_relative("Qwen/Qwen2.5-7B-Instruct", tmp_path) == "Qwen/Qwen2.5-7B-Instruct"
    elsewhere = tmp_path.parent / f"{tmp_path.name}-base"
    elsewhere.mkdir()
    assert run_relative(str(elsewhere), tmp_path) == str(elsewhere)
