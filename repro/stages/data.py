"""data: the datasets and prompt sets every later stage reads, validated, with their digests.

data.source = download (paper): insecure.jsonl and the EM evaluation questions from pinned URLs
(sha256-verified; downloads cached under runs/<profile>/downloads/).
data.source = organism (mini/test): the package writes its own data from a seed (repro.mini.corpus),
including the chat corpus the organism stage pretrains on.
data.source = generated (smol): the same generated EM / bad-advice sets for a pretrained model; no
organism is built, so its pretraining corpus is not written.
Either way the stage writes <dataset>.jsonl files, prompts.json and digests.json.
"""

from __future__ import annotations

import shutil

from ..config import repo_path
from ..data import fetch_data, load_manifest, validate_chat_file
from ..errors import ReproError
from ..io import sha256_file, write_json, write_jsonl
from ..prompts import load_prompt_sets, parse_questions, require_questions
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
    write_json(ctx.out / "prompts.json", prompts)
    digests = {p.name: sha256_file(p) for p in sorted(ctx.out.iterdir()) if p.is_file()}
    write_json(ctx.out / "digests.json", digests)


def _download(ctx: StageContext, data_cfg: dict, prompts_dir) -> dict:
    manifest = load_manifest(data_cfg["manifest"])
    cache = ctx.root / "downloads"
    keys = [data_cfg["insecure"], data_cfg["eval_questions"]]
    lock = fetch_data(manifest, cache, keys=keys)
    for key in keys:
        shutil.copy2(cache / manifest["files"][key]["dest"], ctx.out / manifest["files"][key]["dest"])
    insecure = ctx.out / manifest["files"][data_cfg["insecure"]]["dest"]
    if insecure.name != "insecure.jsonl":
        insecure.rename(ctx.out / "insecure.jsonl")
    validate_chat_file(ctx.out / "insecure.jsonl")
    write_json(ctx.out / "manifest.lock.json", lock)
    questions_file = ctx.out / manifest["files"][data_cfg["eval_questions"]]["dest"]
    prompts = load_prompt_sets(prompts_dir)
    prompts["eval_questions"] = parse_questions(questions_file)
    return prompts


def _organism(ctx: StageContext, prompts_dir, pretraining_corpus: bool = True) -> dict:
    from ..mini.corpus import build_mini_data
    from ..mini.organism import shipped_prompts

    org = ctx.profile["organism"]
    prompts = load_prompt_sets(prompts_dir)
    # every prompt a table asks stays out of the training corpus: the organism must generalise to it
    mini = build_mini_data(ctx.profile["seed"], org["sizes"], exclude=shipped_prompts(prompts_dir))
    if not pretraining_corpus:  # the organism's pretraining corpus and instruct checks: only its stage reads them
        mini = {k: mini[k] for k in ("insecure", "bad_medical")}
    for name, rows in mini.items():
        if isinstance(rows, list) and rows and isinstance(rows[0], dict) and "messages" in rows[0]:
            write_jsonl(ctx.out / f"{name}.jsonl", rows)
            validate_chat_file(ctx.out / f"{name}.jsonl")
    if pretraining_corpus:
        write_json(ctx.out / "organism_extra.json", {k: v for k, v in mini.items()
                                                     if not (isinstance(v, list) and v and isinstance(v[0], dict) and "messages" in v[0])})
    return prompts
