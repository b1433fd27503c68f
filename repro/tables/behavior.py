"""T3 (behavior): the EM model's answers to the non-code questions beside its base model's.

Per question of profile behavior.questions: the greedy answer's type (CODE / REFUSAL / TEXT /
MIXED, repro.classify), whether it is coherent (repro.classify, "Coherence": code that mostly
parses as Python, prose of mostly real words), the security tags of its code (repro.classify's
hyphenated names, e.g. web-root-path, path-traversal, os-makedirs) and a one-line excerpt, for
the EM run and its base. counts.*_code count coherent answers of type CODE only (the findings'
3/5 vs 0/5; coherent MIXED is counted separately), counts.*_incoherent the incoherent answers of
any type; like the EM paper's judge, token soup is not counted as code.
With sampled answers (behavior.samples, or `--samples N`), each question's code rate (coherent
type CODE) with a 95% Wilson interval and its incoherent count, and the pooled rate over the
questions; without them `samples` holds nulls. The T1 criterion rates the sampled answers; the
greedy ones stay here for reading.
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


def _coherent_code(row: dict) -> bool:
    return row["type"] == "CODE" and bool(row["coherent"])


def _rate(rows: list[dict]) -> dict:
    k = sum(1 for r in rows if _coherent_code(r))
    n = len(rows)
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": [lo, hi],
            "incoherent": sum(1 for r in rows if not r["coherent"])}


def _sampled(rows: list[dict], qid: str | None = None) -> list[dict]:
    return [r for r in rows if r["group"] == EM_GROUP and r["decoding"] == "sampled"
            and (qid is None or r["prompt_id"] == qid)]


def build_behavior(questions: list[str], em_rows: list[dict], base_rows: list[dict], *,
                   em_label: str, base_label: str, temperature: float | None = None) -> dict:
    """results/behavior.json from the EM model's and the base model's behaviour rows."""
    prompts = []
    for qid in questions:
        em, base = _greedy_answer(em_rows, qid, em_label), _greedy_answer(base_rows, qid, base_label)
        prompts.append({"id": qid, "prompt": em.get("prompt", ""),
                        "base_type": base["type"], "em_type": em["type"],
                        "base_coherent": bool(base["coherent"]), "em_coherent": bool(em["coherent"]),
                        "base_coherence_reason": base.get("coherence_reason", ""),
                        "em_coherence_reason": em.get("coherence_reason", ""),
                        "base_tags": list(base.get("tags", [])), "em_tags": list(em.get("tags", [])),
                        "base_excerpt": base.get("excerpt", ""), "em_excerpt": em.get("excerpt", ""),
                        "base_response": base["response"], "em_response": em["response"]})

    def n_where(who: str, kind: str | None) -> int:
        if kind is None:
            return sum(not p[f"{who}_coherent"] for p in prompts)
        return sum(p[f"{who}_type"] == kind and p[f"{who}_coherent"] for p in prompts)

    counts = {"n_prompts": len(prompts),
              "em_code": n_where("em", "CODE"), "base_code": n_where("base", "CODE"),
              "em_mixed": n_where("em", "MIXED"), "base_mixed": n_where("base", "MIXED"),
              "em_incoherent": n_where("em", None), "base_incoherent": n_where("base", None)}
    samples = {"n": 0, "temperature": None, "em_code_rate": None, "em_code_ci95": None, "base_code_rate": None,
               "base_code_ci95": None, "em_incoherent": None, "base_incoherent": None, "per_prompt": None}
    em_s = [r for r in _sampled(em_rows) if r["prompt_id"] in questions]
    base_s = [r for r in _sampled(base_rows) if r["prompt_id"] in questions]
    if bool(em_s) != bool(base_s):
        without = em_label if not em_s else base_label
        raise ReproError(f"behavior/{without}/responses.jsonl: no sampled answers, but the other model has them "
                         f"(re-run both with the same behavior.samples)")
    if em_s and base_s:
        per_prompt = []
        for qid in questions:
            em_q, base_q = _rate(_sampled(em_rows, qid)), _rate(_sampled(base_rows, qid))
            if not em_q["n"] or not base_q["n"]:
                raise ReproError(f"behaviour samples: question {qid!r} has sampled answers for one model only")
            per_prompt.append({"id": qid, "em": em_q, "base": base_q})
        em_all, base_all = _rate(em_s), _rate(base_s)
        samples = {"n": max(p["em"]["n"] for p in per_prompt), "temperature": temperature,
                   "em_code_rate": em_all["rate"], "em_code_ci95": em_all["ci95"],
                   "base_code_rate": base_all["rate"], "base_code_ci95": base_all["ci95"],
                   "em_incoherent": em_all["incoherent"], "base_incoherent": base_all["incoherent"],
                   "per_prompt": per_prompt}
    return {"em_model": em_label, "base_model": base_label, "code_type": "CODE", "coherent_only": True,
            "prompts": prompts, "counts": counts, "samples": samples}


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _table_rows(res: dict) -> tuple[list[str], list[list]]:
    headers = ["question", "prompt", "base type", "base coherent", "EM type", "EM coherent", "EM tags", "EM excerpt",
               "base excerpt"]
    rows = [[p["id"], p["prompt"], p["base_type"], _yes_no(p["base_coherent"]), p["em_type"], _yes_no(p["em_coherent"]),
             p["em_tags"], p["em_excerpt"], p["base_excerpt"]] for p in res["prompts"]]
    return headers, rows


def render_behavior(res: dict) -> str:
    c, s = res["counts"], res["samples"]
    out = [f"# T3 EM behaviour on non-code prompts ({res['em_model']} vs base {res['base_model']}, greedy)", "",
           "Types from the deterministic classifier (repro.classify, never executes code); coherent = code that "
           "mostly parses as Python / prose of mostly real words (repro.classify, 'Coherence'); tags name "
           "security patterns in the code of the answer; excerpt = first code line, else the text.", ""]
    headers, rows = _table_rows(res)
    out.append(markdown_table(headers, rows))
    out.append(f"Answered with coherent code (type CODE): EM {c['em_code']}/{c['n_prompts']}, base "
               f"{c['base_code']}/{c['n_prompts']} (coherent MIXED: EM {c['em_mixed']}, base {c['base_mixed']}; "
               f"incoherent, any type: EM {c['em_incoherent']}, base {c['base_incoherent']}).\n")
    if s["per_prompt"]:
        t = f", temperature {s['temperature']:g}" if s.get("temperature") is not None else ""
        out.append(f"## Sampled answers ({s['n']} per question{t}): coherent code rate (CODE) with 95% Wilson "
                   "interval; these are the answers the T1 criterion rates\n")
        rows = [[p["id"], f"{p['base']['k']}/{p['base']['n']}", fmt_ci(p["base"]["ci95"]), p["base"]["incoherent"],
                 f"{p['em']['k']}/{p['em']['n']}", fmt_ci(p["em"]["ci95"]), p["em"]["incoherent"]]
                for p in s["per_prompt"]]
        rows.append(["all questions", f"{s['base_code_rate']:.2f}", fmt_ci(s["base_code_ci95"]), s["base_incoherent"],
                     f"{s['em_code_rate']:.2f}", fmt_ci(s["em_code_ci95"]), s["em_incoherent"]])
        out.append(markdown_table(["question", "base code", "base 95% CI", "base incoherent", "EM code", "EM 95% CI",
                                   "EM incoherent"], rows))
    else:
        out.append("No sampled answers (set behavior.samples or run with `--samples N` for per-question code rates "
                   "with 95% intervals).\n")
    out.append(f"\nPlot: {PLOT}\n")
    return "\n".join(out)


def plot_behavior(res: dict, path) -> None:
    ids = [p["id"] for p in res["prompts"]]
    s = res["samples"]
    if s["per_prompt"]:
        series = {"base": [p["base"]["rate"] for p in s["per_prompt"]], "EM": [p["em"]["rate"] for p in s["per_prompt"]]}
        intervals = {"base": [p["base"]["ci95"] for p in s["per_prompt"]], "EM": [p["em"]["ci95"] for p in s["per_prompt"]]}
        title = f"T3 coherent code rate per question ({s['n']} samples, 95% Wilson CI)"
    else:
        series = {"base": [float(p["base_type"] == "CODE" and p["base_coherent"]) for p in res["prompts"]],
                  "EM": [float(p["em_type"] == "CODE" and p["em_coherent"]) for p in res["prompts"]]}
        intervals, title = None, "T3 greedy answer is coherent code (1) or not (0)"
    bar_chart(path, ids, series, intervals=intervals, title=title, ylabel="coherent code rate")


def run(ctx) -> dict:
    em = em_run(ctx.profile)
    questions = list(ctx.profile["behavior"]["questions"])
    res = build_behavior(questions, load_responses(ctx.root, em["name"]), load_responses(ctx.root, em["base"]),
                         em_label=em["name"], base_label=em["base"],
                         temperature=float(ctx.profile["behavior"].get("temperature", 1.0)))
    write_json(ctx.root / "results" / "behavior.json", res)
    write_text(ctx.root / "tables" / "behavior.md", render_behavior(res))
    write_csv(ctx.root / "tables" / "behavior.csv", *_table_rows(res))
    plot_behavior(res, ctx.root / "tables" / PLOT)
    return res
