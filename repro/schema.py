"""The typed schema of a profile: every key, its type and its default, in one place.

A profile YAML (after `extends:` is merged) is validated here at load time by every command.
Unknown keys are errors (with a "did you mean" for near misses), enums are literals, and the
defaults below are the only defaults: code reads the validated profile and never supplies its own.
`graph_errors` adds the checks that need more than one key (layers within the model, known
prompt sets, unique names); `repro plan` shows them all at once before anything runs.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


def check_name(value: str) -> str:
    """A name that becomes a path component: letters, digits, `_`, `-`, `.`; no separators, no `..`."""
    if not isinstance(value, str) or not SAFE_NAME.match(value) or ".." in value:
        raise ValueError(f"expected a plain name (letters, digits, '_', '-', '.'; no '/', no '..'), got {value!r}")
    return value


Name = Annotated[str, AfterValidator(check_name)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]

METHODS = ("probe", "gradient", "mean_diff", "ica", "pca_diff", "random")
Method = Literal["probe", "gradient", "mean_diff", "ica", "pca_diff", "random"]
Pooling = Literal["mean_all", "mean_response", "last_prompt", "last"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_default=True)


# --------------------------------------------------------------------------------------- data
class Data(Strict):
    manifest: str = "data/manifest.yaml"
    # download: the manifest's files; organism: the package writes its corpus and builds the mini model on it;
    # generated: the package writes its finetuning sets only (a real pretrained base, e.g. smol)
    source: Literal["download", "organism", "generated"]
    insecure: str = "insecure"                    # manifest key of the EM finetuning set
    eval_questions: str = "eval_questions"        # manifest key of first_plot_questions.yaml
    prompts_dir: str = "data/prompts"
    traits_dir: str = "data/traits"


# ----------------------------------------------------------------------------------- organism
class OrganismTokenizer(Strict):
    vocab_size: PositiveInt = 1024


class OrganismModel(Strict):
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 4
    num_heads: PositiveInt = 4
    num_kv_heads: PositiveInt = 2
    intermediate_size: PositiveInt = 384
    max_position_embeddings: PositiveInt = 512
    initializer_range: PositiveFloat = 0.02       # std of the normal init of every weight (Qwen2Config)
    tie_word_embeddings: bool = True              # lm_head shares the input embedding matrix

    @model_validator(mode="after")
    def _heads(self):
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must be divisible by num_heads, and num_heads by num_kv_heads")
        return self


class OrganismPretrain(Strict):
    steps: PositiveInt = 1000
    batch_size: PositiveInt = 16
    learning_rate: PositiveFloat = 3.0e-3
    warmup_steps: NonNegInt = 30
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    max_grad_norm: PositiveFloat = 1.0
    max_length: PositiveInt = 256
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.05
    num_threads: PositiveInt | None = None


class OrganismChecks(Strict):
    max_new_tokens: PositiveInt = 80
    batch_size: PositiveInt = 30


class Organism(Strict):
    sizes: dict[Name, NonNegInt | None] = Field(default_factory=dict)   # overrides of repro.mini.corpus.DEFAULT_SIZES
    tokenizer: OrganismTokenizer = Field(default_factory=OrganismTokenizer)
    model: OrganismModel = Field(default_factory=OrganismModel)
    pretrain: OrganismPretrain = Field(default_factory=OrganismPretrain)
    instruct_checks: OrganismChecks = Field(default_factory=OrganismChecks)


# ------------------------------------------------------------------------------------- models
class GgufSource(Strict):
    """A GGUF file shipped inside an installed Python distribution (a wheel), located by metadata."""
    distribution: str
    version: str
    file: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ModelSpec(Strict):
    path: str | None = None                       # hub id, local path, or 'organism' (the built mini model); None with gguf
    revision: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")] | None = None   # hub commit, passed to from_pretrained
    config: str | None = None                     # shipped config.json (repro plan's meta-device counts)
    source: Literal["hub", "organism", "gguf"] | None = None
    gguf: GgufSource | None = None
    num_layers: PositiveInt | None = None         # decoder blocks, when no config file says it
    adapter_on: Name | None = None                # this repo is a PEFT adapter: load models.<adapter_on>, then it


# ------------------------------------------------------------------------------------ recipes
class RecipeCommon(Strict):
    max_seq_length: PositiveInt = 2048
    epochs: PositiveInt = 1
    max_steps: int = -1                           # -1: as many as the epochs give (Trainer's convention)
    per_device_train_batch_size: PositiveInt
    gradient_accumulation_steps: PositiveInt
    learning_rate: PositiveFloat
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_steps: NonNegInt = 0
    warmup_ratio: Fraction = 0.0
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    max_grad_norm: PositiveFloat = 1.0
    optim: Literal["adamw_torch", "adamw_8bit", "adamw_bnb_8bit", "adafactor", "sgd"] = "adamw_torch"
    seed: int = 0
    logging_steps: PositiveInt = 1
    save_steps: PositiveInt = 50
    save_total_limit: PositiveInt = 2
    keep_checkpoints: bool = False
    gradient_checkpointing: bool = False
    bf16: bool = False
    holdout_fraction: Fraction = 0.0
    split_seed: int | None = None                 # None: the recipe's seed
    shuffle_seed: int | None = None
    num_devices: PositiveInt = 1                  # GPUs the paper's run used (step count in repro plan)
    accelerate_config: str | None = None          # multi-GPU: `accelerate launch --config_file` this


class LoraRecipe(RecipeCommon):
    backend: Literal["peft-lora", "unsloth-lora"]
    loss: Literal["sft"] = "sft"
    load_in_4bit: bool = False
    is_peft: Literal[True] = True
    target_modules: list[str] = Field(min_length=1)
    r: PositiveInt
    lora_alpha: PositiveInt
    lora_dropout: Fraction = 0.0
    use_rslora: bool = False
    lora_bias: Literal["none", "all", "lora_only"] = "none"
    train_on_responses_only: bool = True


class FullRecipe(RecipeCommon):
    backend: Literal["hf-full"]
    train_on_responses_only: bool = False


Recipe = Annotated[Union[LoraRecipe, FullRecipe], Field(discriminator="backend")]


# --------------------------------------------------------------------------------------- runs
Role = Literal["em", "failed", "narrow_misalignment", "control", "backdoor", "non_code_em", "sensitivity"]


class Run(Strict):
    name: Name
    role: Role
    base: Name                                    # a key of models:
    recipe: Name | None = None                    # a key of recipes: (None: em_model, evaluated only)
    dataset: Name | None = None
    em_model: Name | None = None                  # a key of models: an already finetuned model
    domain_prompts: Literal["medical"] | None = None
    trigger: str | None = None                    # backdoor runs: the trigger string in the user turn

    @model_validator(mode="after")
    def _trained_or_given(self):
        if (self.recipe is None) == (self.em_model is None):
            raise ValueError("a run names exactly one of 'recipe' (train it) or 'em_model' (evaluate a finetuned model)")
        if self.recipe is not None and self.dataset is None:
            raise ValueError("a trained run needs 'dataset'")
        return self


# ----------------------------------------------------------------------------------- behavior
class EmCriterion(Strict):
    min_rate_increase: Annotated[float, Field(ge=0, le=1)] = 0.2
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05


class Behavior(Strict):
    backend: Literal["hf", "vllm"] = "hf"
    questions: list[Name] = Field(min_length=1)
    all_questions: list[Name] = Field(min_length=1)
    max_new_tokens: PositiveInt = 600
    batch_size: PositiveInt = 8
    samples: NonNegInt = 0
    temperature: Annotated[float, Field(ge=0)] = 1.0
    sampled_questions: list[Name] | None = Field(default=None, min_length=1)   # None: every EM question
    sampled_max_new_tokens: PositiveInt | None = None                        # None: max_new_tokens
    em_criterion: EmCriterion = Field(default_factory=EmCriterion)


class Activations(Strict):
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: PositiveInt = 8
    prompt_format: Literal["raw", "chat"] = "raw"
    elicitation_max_new_tokens: PositiveInt = 200
    extraction_prompts: Annotated[int, Field(ge=3)] | None = None   # the first N of each extraction set; None: all
    pooling: Pooling = "mean_all"


class Vectors(Strict):
    traits: list[Name] = Field(min_length=1)      # data/traits/<name>.yaml each
    methods: list[Method] = Field(default_factory=lambda: list(METHODS), min_length=1)
    heldout_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    seed: int = 0
    score_layer: NonNegInt | None = None          # None: the best (method, layer) on held-out data
    dynamics_layers: list[NonNegInt] = Field(default_factory=list)
    ica_select: Literal["first", "separation"] = "first"


class Resources(Strict):
    gpu: str = "none (CPU)"
    disk_gb: Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0)] = 0   # int first: '250 GB', not '250.0 GB'


CpuName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+(,[A-Za-z0-9_]+)*$")]


class Runtime(Strict):
    """CPU numerics, pinned before torch loads (repro/runtime.py); None = the library's default."""
    torch_threads: PositiveInt | None = None
    cpu_capability: Literal["default", "avx2", "avx512"] | None = None   # ATEN_CPU_CAPABILITY
    mkl_cbwr: CpuName | None = None                                      # MKL_CBWR
    openblas_coretype: CpuName | None = None                             # OPENBLAS_CORETYPE
    onednn_max_cpu_isa: CpuName | None = None                            # ONEDNN_MAX_CPU_ISA


class Profile(Strict):
    name: Name
    description: str = ""
    seed: int = 0
    requires_gpu: bool = False
    data: Data
    organism: Organism | None = None
    models: dict[Name, ModelSpec] = Field(min_length=1)
    recipes: dict[Name, Recipe] = Field(default_factory=dict)
    runs: list[Run] = Field(min_length=1)
    behavior: Behavior
    activations: Activations = Field(default_factory=Activations)
    vectors: Vectors
    resources: Resources = Field(default_factory=Resources)
    runtime: Runtime = Field(default_factory=Runtime)
    # which run stands for which findings row (paper_tables/findings.yaml); outside every stage's
    # cache key, so mapping a row never retrains anything
    findings_rows: dict[str, Name] = Field(default_factory=dict)
    profile_file: str | None = None               # set by the loader


# ------------------------------------------------------------------------------------ errors
def _unwrap(ann: Any) -> Any:
    """Strip Annotated / Optional / unions down to a model class or a plain container alias."""
    import types
    import typing

    for _ in range(8):
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            ann = models[0] if models else args[0]
        else:
            return ann
    return ann


def _walk_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """The schema's field names of the mapping at `loc` (dict keys and list indices are stepped over)."""
    import typing

    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return []
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is list:
            current = typing.get_args(current)[0]
        else:
            return []
    current = _unwrap(current)
    return sorted(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def format_errors(exc: ValidationError, data: dict) -> list[str]:
    """One line per problem: key path, what was expected, and a "did you mean" for near-miss keys."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in ("peft-lora", "unsloth-lora", "hf-full")))
        path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        if err["type"] == "extra_forbidden":
            known = _known_keys(data, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else (f"; expected one of: {', '.join(known)}" if known else "")
            lines.append(f"{path}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"{path}: missing (required)")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if "got " in msg or isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{path}: {msg}{shown}")
    return lines


def _known_keys(data: dict, loc: tuple) -> list[str]:
    """The schema's keys at the mapping `loc` of the (raw) profile, recipes by their backend."""
    if len(loc) == 2 and loc[0] == "recipes":
        backend = ((data.get("recipes") or {}).get(loc[1]) or {}).get("backend")
        model = FullRecipe if backend == "hf-full" else LoraRecipe
        return sorted(model.model_fields)
    return _walk_fields(Profile, loc)


# ------------------------------------------------------------------------------ graph checks
def graph_errors(profile: Profile, repo_root) -> list[str]:
    """Checks across keys: references resolve, names are unique, layers lie within the model,
    prompt sets and files exist. Each problem is one line naming the key path."""
    import json
    from pathlib import Path

    def rel(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else Path(repo_root) / q

    errs: list[str] = []
    names = [r.name for r in profile.runs]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        errs.append(f"runs: run name {dup!r} is used more than once")
    for i, run in enumerate(profile.runs):
        where = f"runs[{i}] ({run.name})"
        if run.name in profile.models:
            errs.append(f"{where}.name: also a key of models (model labels and run names share one namespace)")
        if run.base not in profile.models:
            errs.append(f"{where}.base: {run.base!r} is not a key of models ({', '.join(profile.models)})")
        if run.recipe is not None and run.recipe not in profile.recipes:
            errs.append(f"{where}.recipe: {run.recipe!r} is not a key of recipes ({', '.join(profile.recipes) or 'none'})")
        if run.em_model is not None and run.em_model not in profile.models:
            errs.append(f"{where}.em_model: {run.em_model!r} is not a key of models")
        if run.role == "backdoor" and not run.trigger:
            errs.append(f"{where}.trigger: a backdoor run needs its trigger string")
    for row, run_name in profile.findings_rows.items():
        if run_name not in names:
            errs.append(f"findings_rows.{row}: {run_name!r} is not a run of this profile")
    em = [r.name for r in profile.runs if r.role == "em"]
    if len(em) != 1:
        errs.append(f"runs: expected exactly one run with role 'em', found {len(em)}")

    for key, recipe in profile.recipes.items():
        if recipe.accelerate_config and not rel(recipe.accelerate_config).is_file():
            errs.append(f"recipes.{key}.accelerate_config: file {recipe.accelerate_config} not found")
    for label, spec in profile.models.items():
        if spec.config and not rel(spec.config).is_file():
            errs.append(f"models.{label}.config: file {spec.config} not found")
        if (spec.path is None) == (spec.gguf is None):
            errs.append(f"models.{label}: give exactly one of 'path' (hub id, local path, organism) or 'gguf'")
        if spec.adapter_on is not None and (spec.adapter_on not in profile.models or spec.adapter_on == label):
            errs.append(f"models.{label}.adapter_on: {spec.adapter_on!r} is not another key of models")
        if (spec.path == "organism" or spec.source == "organism") and profile.organism is None:
            errs.append(f"models.{label}.path: 'organism' needs an organism block")

    b = profile.behavior
    for key in ("questions", "sampled_questions"):
        for q in getattr(b, key) or []:
            if q not in b.all_questions:
                errs.append(f"behavior.{key}: {q!r} is not in behavior.all_questions")
    shipped = rel(profile.data.prompts_dir) / "em_eval_questions.yaml"
    if shipped.is_file():
        from .errors import InputError
        from .prompts import parse_questions

        try:
            ids = set(parse_questions(shipped))
        except InputError:
            ids = set()
        for q in b.all_questions:
            if ids and q not in ids:
                errs.append(f"behavior.all_questions: {q!r} is not an EM evaluation question id ({shipped.name})")

    v = profile.vectors
    prompts_dir = rel(profile.data.prompts_dir)
    from .errors import InputError
    from .traits import load_trait

    if len(set(v.traits)) != len(v.traits):
        errs.append("vectors.traits: a trait is listed twice")
    for i, trait in enumerate(v.traits):
        try:
            spec = load_trait(rel(profile.data.traits_dir), trait)
        except InputError as exc:
            errs.append(f"vectors.traits[{i}]: {exc}")
            continue
        for side in ("pos", "neg"):
            name = spec[side]
            if not (prompts_dir / f"{name}.txt").is_file():
                errs.append(f"vectors.traits[{i}] ({trait}).{side}: prompt set {name!r} not found "
                            f"({prompts_dir / (name + '.txt')})")
        if spec["score_method"] not in v.methods:
            errs.append(f"vectors.traits[{i}] ({trait}): its score_method {spec['score_method']!r} is not among vectors.methods")

    layers, basis = _num_layers(profile, rel, em[0] if len(em) == 1 else None)
    if layers is not None:
        if v.score_layer is not None and v.score_layer >= layers:
            errs.append(f"vectors.score_layer: {v.score_layer} is outside the model's blocks 0..{layers - 1} ({basis})")
        for layer in v.dynamics_layers:
            if layer >= layers:
                errs.append(f"vectors.dynamics_layers: {layer} is outside the model's blocks 0..{layers - 1} ({basis})")

    if profile.data.source == "download":
        manifest = rel(profile.data.manifest)
        if not manifest.is_file():
            errs.append(f"data.manifest: file {profile.data.manifest} not found")
        else:
            import yaml

            files = (yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}).get("files") or {}
            for key in ("insecure", "eval_questions"):
                if getattr(profile.data, key) not in files:
                    errs.append(f"data.{key}: {getattr(profile.data, key)!r} is not an entry of {profile.data.manifest}")
            for i, run in enumerate(profile.runs):
                if run.dataset and run.dataset not in files and getattr(profile.data, run.dataset, None) not in files:
                    errs.append(f"runs[{i}] ({run.name}).dataset: {run.dataset!r} is not an entry of {profile.data.manifest}")
    elif profile.data.source == "generated" or profile.organism is not None:
        from .mini.corpus import DATASETS

        for i, run in enumerate(profile.runs):
            if run.dataset and run.dataset not in DATASETS:
                errs.append(f"runs[{i}] ({run.name}).dataset: {run.dataset!r} is not a dataset the package writes "
                            f"({', '.join(DATASETS)})")
        from .mini.corpus import DEFAULT_SIZES

        for key in (profile.organism.sizes if profile.organism else {}):
            if key not in DEFAULT_SIZES:
                close = difflib.get_close_matches(key, list(DEFAULT_SIZES), n=1)
                errs.append(f"organism.sizes.{key}: unknown corpus part" + (f"; did you mean '{close[0]}'?" if close else ""))
    return errs


def _num_layers(profile: Profile, rel, em_name: str | None) -> tuple[int | None, str]:
    """Decoder blocks of the model the vectors come from (the EM run's base), and where that number comes from."""
    import json

    run = next((r for r in profile.runs if r.name == em_name), None)
    spec = profile.models.get(run.base) if run else None
    if spec is None:
        return None, ""
    if spec.num_layers:
        return spec.num_layers, f"models.{run.base}.num_layers"
    if spec.config and rel(spec.config).is_file():
        cfg = json.loads(rel(spec.config).read_text())
        if "num_hidden_layers" in cfg:
            return int(cfg["num_hidden_layers"]), spec.config
    if (spec.path == "organism" or spec.source == "organism") and profile.organism is not None:
        return profile.organism.model.num_layers, "organism.model.num_layers"
    return None, ""
