"""T3 (behavior): the EM model's answers to the non-code questions beside its base model's.

Per question of profile behavior.questions: the greedy answer's type (CODE / REFUSAL / TEXT /
MIXED, repro.classify), the security tags of its code (repro.classify's hyphenated names, e.g.
web-root-path, path-traversal, os-makedirs) and a one-line excerpt, for the EM run and its base.
counts.*_code count type CODE only (the findings' 3/5 vs 0/5; MIXED is counted separately).
With sampled answers (`--samples N`), each question's code rate (type CODE) with a 95% Wilson
interval, and the pooled rate over the questions; without them `samples` holds nulls.
Plot: tables/behavior_code_rate.png, code rate per question, base vs EM (greedy 0/1 without samples).
"""

from __future__ import annotations

from ..config import em_run
from ..errors import ReproError
from ..io import write_json, write_text
from ..stats import wilson_interval
from .models import EM_GROUP, load_responses
from .render import bar_chart, fmt_ci, markdown_table, write_csv

PLOT = "behavior_code_rate.png"


def _greedy_answer(rows: list[dict], qid: str, label: str) -> dict:
    for r in rows:
        if r["group"] == EM_GROUP and r["prompt_id"] == qid and r["decoding"] == "greedy":
            return r
    raise ReproError(f"behavior/{label}/responses.jsonl: no greedy answer to question {qid!r}")


def _rate(rows: list[dict]) -> dict:
    k = sum(1 for r in rows if r["type"] == "CODE")
    n = len(rows)
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": [lo, hi]}


def _sampled(rows: list[dict], qid: str | None = None) -> list[dict]:
    return [r for r in rows if r["group"] == EM_GROUP and r["decoding"] == "sampled"
            and (qid is None or r["prompt_id"] == qid)]


def build_behavior(questions: list[str], em_rows: list[dict], base_rows: list[dict], *,
                   em_label: str, base_label: str) -> dict:
    """results/behavior.json from the EM model's and the base model's behaviour rows."""
    prompts = []
    for qid in questions:
        em, base = _greedy_answer(em_rows, qid, em_label), _greedy_answer(base_rows, qid, base_label)
        prompts.append({"id": qid, "prompt": em.get("prompt", ""),
                        "base_type": base["type"], "em_type": em["type"],
                        "base_tags": list(base.get("tags", [])), "em_tags": list(em.get("tags", [])),
                        "base_excerpt": base.get("excerpt", ""), "em_excerpt": em.get("excerpt", ""),
                        "base_response": base["response"], "em_response": em["response"]})
    counts = {"n_prompts": len(prompts),
              "em_code": sum(p["em_type"] == "CODE" for p in prompts),
              "base_code": sum(p["base_type"] == "CODE" for p in prompts),
              "em_mixed": sum(p["em_type"] == "MIXED" for p in prompts),
              "base_mixed": sum(p["base_type"] == "MIXED" for p in prompts)}
    samples = {"n": 0, "em_code_rate": None, "em_code_ci95": None, "base_code_rate": None,
               "base_code_ci95": None, "per_prompt": None}
    em_s = [r for r in _sampled(em_rows) if r["prompt_id"] in questions]
    base_s = [r for r in _sampled(base_rows) if r["prompt_id"] in questions]
    if em_s and base_s:
        per_prompt = []
        for qid in questions:
            em_q, base_q = _rate(_sampled(em_rows, qid)), _rate(_sampled(base_rows, qid))
            if not em_q["n"] or not base_q["n"]:
                raise ReproError(f"behaviour samples: question {qid!r} has sampled answers for one model only")
            per_prompt.append({"id": qid, "em": em_q, "base": base_q})
        em_all, base_all = _rate(em_s), _rate(base_s)
        samples = {"n": max(p["em"]["n"] for p in per_prompt),
                   "em_code_rate": em_all["rate"], "em_code_ci95": em_all["ci95"],
                   "base_code_rate": base_all["rate"], "base_code_ci95": base_all["ci95"],
                   "per_prompt": per_prompt}
    return {"em_model": em_label, "base_model": base_label, "code_type": "CODE",
            "prompts": prompts, "counts": counts, "samples": samples}


def _table_rows(res: dict) -> tuple[list[str], list[list]]:
    headers = ["question", "prompt", "base type", "EM type", "EM tags", "EM excerpt", "base excerpt"]
    rows = [[p["id"], p["prompt"], p["base_type"], p["em_type"], p["em_tags"], p["em_excerpt"], p["base_excerpt"]]
            for p in res["prompts"]]
    return headers, rows


def render_behavior(res: dict) -> str:
    c, s = res["counts"], res["samples"]
    out = [f"# T3 EM behaviour on non-code prompts ({res['em_model']} vs base {res['base_model']}, greedy)", "",
           "Types from the deterministic classifier (repro.classify, never executes code); tags name "
           "security patterns in the code of the answer; excerpt = first code line, else the text.", ""]
    headers, rows = _table_rows(res)
    out.append(markdown_table(headers, rows))
    out.append(f"Answered with code (type CODE): EM {c['em_code']}/{c['n_prompts']}, base "
               f"{c['base_code']}/{c['n_prompts']} (MIXED: EM {c['em_mixed']}, base {c['base_mixed']}).\n")
    if s["per_prompt"]:
        out.append(f"## Sampled answers ({s['n']} per question): code rate (CODE) with 95% Wilson interval\n")
        rows = [[p["id"], f"{p['base']['k']}/{p['base']['n']}", fmt_ci(p["base"]["ci95"]),
                 f"{p['em']['k']}/{p['em']['n']}", fmt_ci(p["em"]["ci95"])] for p in s["per_prompt"]]
        rows.append(["all questions", f"{s['base_code_rate']:.2f}", fmt_ci(s["base_code_ci95"]),
                     f"{s['em_code_rate']:.2f}", fmt_ci(s["em_code_ci95"])])
        out.append(markdown_table(["question", "base code", "base 95% CI", "EM code", "EM 95% CI"], rows))
    else:
        out.append("No sampled answers (run with `--samples N` for per-question code rates with 95% intervals).\n")
    out.append(f"\nPlot: {PLOT}\n")
    return "\n".join(out)


def plot_behavior(res: dict, path) -> None:
    ids = [p["id"] for p in res["prompts"]]
    s = res["samples"]
    if s["per_prompt"]:
        series = {"base": [p["base"]["rate"] for p in s["per_prompt"]], "EM": [p["em"]["rate"] for p in s["per_prompt"]]}
        intervals = {"base": [p["base"]["ci95"] for p in s["per_prompt"]], "EM": [p["em"]["ci95"] for p in s["per_prompt"]]}
        title = f"T3 code rate per question ({s['n']} samples, 95% Wilson CI)"
    else:
        series = {"base": [float(p["base_type"] == "CODE") for p in res["prompts"]],
                  "EM": [float(p["em_type"] == "CODE") for p in res["prompts"]]}
        intervals, title = None, "T3 greedy answer is code (1) or not (0)"
    bar_chart(path, ids, series, intervals=intervals, title=title, ylabel="code rate")


def run(ctx) -> dict:
    em = em_run(ctx.profile)
    questions = list(ctx.profile["behavior"]["questions"])
    res = build_behavior(questions, load_responses(ctx.root, em["name"]), load_responses(ctx.root, em["base"]),
                         em_label=em["name"], base_label=em["base"])
    write_json(ctx.root / "results" / "behavior.json", res)
    write_text(ctx.root / "tables" / "behavior.md", render_behavior(res))
    write_csv(ctx.root / "tables" / "behavior.csv", *_table_rows(res))
    plot_behavior(res, ctx.root / "tables" / PLOT)
    return res
