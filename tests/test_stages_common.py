"""Where a model label's weights are: base models, pre-finetuned models, --em-model, trained runs."""

import json

import pytest

from repro.config import load_profile
from repro.errors import ReproError
from repro.runner import StageContext
from repro.stages.common import model_ref


def _ctx(tmp_path, profile="paper", options=None):
    return StageContext(profile=load_profile(profile), root=tmp_path, out=tmp_path, options=options or {})


def test_base_and_pre_finetuned_models(tmp_path):
    ctx = _ctx(tmp_path)
    assert model_ref(ctx, "qwen32b_coder") == {"label": "qwen32b_coder", "path": "unsloth/Qwen2.5-Coder-32B-Instruct",
                                               "adapter": None}
    bad = model_ref(ctx, "bad_medical_advice")  # run with em_model: a published adapter on its pinned base
    assert bad["path"].startswith("unsloth/Qwen2.5-7B-Instruct@")
    assert bad["adapter"].startswith("ModelOrganismsForEM/Qwen2.5-7B-Instruct_bad-medical-advice@")


def test_em_model_flag_replaces_the_em_run_only(tmp_path):
    ctx = _ctx(tmp_path, options={"em_model": "/some/em/model"})
    assert model_ref(ctx, "em_32b_coder")["path"] == "/some/em/model"
    with pytest.raises(ReproError, match="not trained yet"):
        model_ref(ctx, "failed_7b_coder")


def test_trained_runs_lora_and_full(tmp_path):
    ctx = _ctx(tmp_path, profile="mini")
    lora = tmp_path / "train" / "em_mini"
    lora.mkdir(parents=True)
    (lora / "summary.json").write_text(json.dumps({"artifact": "adapter"}))
    ref = model_ref(ctx, "em_mini")
    assert ref["adapter"] == str(lora) and ref["path"] == str(tmp_path / "organism" / "model")
    full = tmp_path / "train" / "failed_mini_full"
    full.mkdir(parents=True)
    (full / "summary.json").write_text(json.dumps({"artifact": "model"}))
    assert model_ref(ctx, "failed_mini_full") == {"label": "failed_mini_full", "path": str(full), "adapter": None}


def test_a_published_adapter_loads_on_its_pinned_base(tmp_path):
    from repro.config import load_profile
    from repro.runner import StageContext
    from repro.stages.common import model_ref

    profile = load_profile("paper")
    ref = model_ref(StageContext(profile=profile, root=tmp_path, out=tmp_path), "bad_medical_advice")
    assert ref["path"] == "unsloth/Qwen2.5-7B-Instruct@a75c9dc945567a9b6f568b8503a0307731607bee"
    assert ref["adapter"] == ("ModelOrganismsForEM/Qwen2.5-7B-Instruct_bad-medical-advice"
                              "@0052099b56ebbd76e983b69ac433f2a0160bd4ef")
    em = model_ref(StageContext(profile=profile, root=tmp_path, out=tmp_path, options={"em_model": "org/em"}),
                   "em_32b_coder")
    assert em == {"label": "em_32b_coder", "path": "org/em", "adapter": None}
