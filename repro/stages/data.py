"""data: the datasets and prompt sets every later stage reads, validated, with their digests.

data.source = download (paper): every dataset a run names (insecure.jsonl, the controls
secure / educational, backdoor, evil_numbers) and the EM evaluation questions, from pinned URLs
(data/manifest.yaml; a run's `dataset` is the manifest key unless data.<dataset> renames it;
sha256-verified; downloads cached under runs/<profile>/downloads/).
data.source = organism (mini/test): the package writes its own data from a seed (repro.mini.corpus):
insecure and its controls secure, educational and backdoor, from the same tasks.
data.source = generated (smol): the same generated sets for a pretrained model; no organism is
built, so its pretraining corpus is not written.
Either way the stage writes <dataset>.jsonl files (the name a run's `dataset` gives), prompts.json
and digests.json. A run with a `trigger` (backdoor) must find it in some user turns of its dataset
and not in others.
"""

from __future__ import annotations

import shutil

from ..config import repo_path
from ..data import fetch_data, load_chat_rows, load_manifest, validate_chat_file
from ..errors import InputError, ReproError
from ..io import sha256_file, write_json, write_jsonl
from ..prompts import load_prompt_sets, parse_questions, prompt_texts, require_questions
from ..runner import StageContext


def run(ctx: StageContext) -> None:
    data_cfg = ctx.profile["data"]
    prompts_dir = repo_path(data_cfg["prompts_dir"])
    source = data_cfg.get("source")
    if source == "download":
        prompts = _download(ctx, data_cfg, prompts_dir)
    elif source in ("organism", "generated"):
        prompts = _organism(ctx, prompts_dir, pretraining_corpus=source == "organism")
    else:
        raise ReproError(f"{ctx.profile['profile_file']}: data.source: expected 'download', 'organism' or 'generated', "
                         f"got {source!r}")
    require_questions(prompts["eval_questions"], ctx.profile["behavior"]["all_questions"], "eval questions")
    for run in ctx.profile["runs"]:
        if run.get("trigger") and run.get("dataset"):
            check_trigger(load_chat_rows(ctx.out / f"{run['dataset']}.jsonl"), run["trigger"],
                          f"run {run['name']}: trigger {run['trigger']!r} in {run['dataset']}.jsonl")
    write_json(ctx.out / "prompts.json", prompts)
    digests = {p.name: sha256_file(p) for p in sorted(ctx.out.iterdir()) if p.is_file()}
    write_json(ctx.out / "digests.json", digests)


def run_datasets(profile: dict) -> list[str]:
    """The datasets the profile's runs train on, in run order (pre-finetuned runs name none)."""
    return list(dict.fromkeys(r["dataset"] for r in profile["runs"] if r.get("dataset")))


def check_trigger(rows: list[dict], trigger: str, where: str) -> tuple[int, int]:
    """(rows with the trigger in a user turn, rows without): a backdoor set needs both kinds."""
    if not isinstance(trigger, str) or not trigger.strip():
        raise InputError(f"{where}: expected a non-empty string")
    with_trigger = sum(1 for row in rows
                       if any(m["role"] == "user" and trigger in m["content"] for m in row["messages"]))
    if with_trigger == 0 or with_trigger == len(rows):
        raise ReproError(f"{where}: {with_trigger} of {len(rows)} rows have it in a user turn "
                         "(a backdoor set needs rows with and rows without it)")
    return with_trigger, len(rows) - with_trigger


def _download(ctx: StageContext, data_cfg: dict, prompts_dir) -> dict:
    manifest = load_manifest(data_cfg["manifest"])
    cache = ctx.root / "downloads"
    datasets = {name: data_cfg.get(name, name) for name in run_datasets(ctx.profile)}  # name -> manifest key
    for name, key in datasets.items():
        if key not in manifest["files"]:
            raise InputError(f"{data_cfg['manifest']}: files.{key}: no entry (a run trains on dataset {name!r})")
    keys = list(dict.fromkeys([*datasets.values(), data_cfg["eval_questions"]]))
    lock = fetch_data(manifest, cache, keys=keys)
    for name, key in datasets.items():
        dest = ctx.out / f"{name}.jsonl"
        shutil.copy2(cache / manifest["files"][key]["dest"], dest)
        validate_chat_file(dest)
    write_json(ctx.out / "manifest.lock.json", lock)
    questions = manifest["files"][data_cfg["eval_questions"]]["dest"]
    shutil.copy2(cache / questions, ctx.out / questions)
    prompts = load_prompt_sets(prompts_dir)
    prompts["eval_questions"] = parse_questions(ctx.out / questions)
    return prompts


def _organism(ctx: StageContext, prompts_dir, pretraining_corpus: bool = True) -> dict:
    from ..mini.corpus import DATASETS, build_mini_data

    org = ctx.profile["organism"]
    prompts = load_prompt_sets(prompts_dir)
    # every prompt a table asks stays out of the training corpus: the organism must generalise to it
    mini = build_mini_data(ctx.profile["seed"], org["sizes"], exclude=prompt_texts(prompts))
    if not pretraining_corpus:  # the organism's pretraining corpus and instruct checks: only its stage reads them
        mini = {k: mini[k] for k in DATASETS if k in mini and k in run_datasets(ctx.profile)}
    for name, rows in mini.items():
        if isinstance(rows, list) and rows and isinstance(rows[0], dict) and "messages" in rows[0]:
            write_jsonl(ctx.out / f"{name}.jsonl", rows)
            validate_chat_file(ctx.out / f"{name}.jsonl")
    missing = [name for name in run_datasets(ctx.profile) if not (ctx.out / f"{name}.jsonl").exists()]
    if missing:
        raise InputError(f"{ctx.profile['profile_file']}: runs name dataset(s) {', '.join(missing)} that the "
                         "package's corpus does not write (it writes insecure, secure, educational, backdoor, "
                         "bad_medical); a size of 0 writes none")
    if pretraining_corpus:
        write_json(ctx.out / "organism_extra.json", {k: v for k, v in mini.items()
                                                     if not (isinstance(v, list) and v and isinstance(v[0], dict) and "messages" in v[0])})
    return prompts
