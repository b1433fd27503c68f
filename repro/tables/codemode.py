"""T7 (code-mode vector): the non-code evaluation questions projected on the code-mode vector
(code answers minus prose answers, extracted from the base model), base vs EM model.

The question this table tests (issue 9): the refusal vector barely moves under EM (T4); does a
code-vs-prose direction show the EM model's mode confusion instead? The shift is expressed as a
share of the vector's own scale: the code/prose gap = mean projection of held-out code-answer
prompts minus held-out prose-answer prompts (base model). A share of 1 means an EM answer moved as
far as the whole distance from prose to code.

Reads score/code_mode/scores.json (+ answers/<model>/behavior.jsonl for the greedy EM answers
that were scored, the same rows T3 and T8 quote, classified with repro.classify, never executed;
+ data/prompts.json for question ids;
+ score/refusal/scores.json, if present, for the T4 comparison). Writes results/codemode.json,
tables/codemode.md|.csv and tables/codemode_shift.png. Schema: paper_tables/README.md.

Verdict rule (stated before any run): the hypothesis is "supported" when the mean shift is
positive (towards code), at least SUPPORT_SHARE of the code/prose gap, and larger than the refusal
vector's largest |shift share| (when T4 results exist); "not supported" otherwise.

Controls (issue 16): each control run, and the backdoor run without and with its trigger, is
projected the same way against the same base rows; results/codemode.json `controls` gives each
one's mean shift and its share of the code/prose gap (repro.tables.refusal.build_controls), and
T7 shows them beside the EM run's.
"""

from __future__ import annotations

from pathlib import Path

from ..classify import describe
from ..config import em_run
from ..errors import InputError
from ..io import read_json, write_json, write_text
from ..runner import StageContext
from ..stages.answers import INDEX, em_answers
from .refusal import build_controls, build_refusal, control_lines, share
from .render import fmt, save_figure, table_lines, write_csv

SUPPORT_SHARE = 0.05  # the T4 claims call |shift| < 5% of the gap "small"


def build_codemode(scores: dict, *, ids: dict[str, str] | None = None, answers: dict | None = None,
                   refusal: dict | None = None, source: str = "scores.json") -> dict:
    """results/codemode.json. ids: question text -> id; answers: {"base"|"em": {question text: answer}};
    refusal: results/refusal.json (for the comparison), or None."""
    for key in ("method", "layer", "rows", "heldout_gap"):
        if key not in scores:
            raise InputError(f"{source}: missing '{key}' (expected the score/code_mode stage's output)")
    hg = scores["heldout_gap"]
    gap = float(hg["gap"])
    rows = scores["rows"]
    if not rows:
        raise InputError(f"{source}: rows is empty (expected one row per behaviour question)")
    ids, answers = ids or {}, answers or {}
    prompts = []
    for r in rows:
        base, em = float(r["base"]), float(r["em"])
        item = {"id": ids.get(r["prompt"], r["prompt"]), "prompt": r["prompt"], "base": base, "em": em,
                "diff": em - base, "shift_share": share(em - base, gap)}
        for role in ("base", "em"):
            text = answers.get(role, {}).get(r["prompt"])
            item[f"{role}_type"] = describe(text)["type"] if text is not None else None
            item[f"{role}_response"] = text
        prompts.append(item)
    n = len(prompts)
    mean_base = sum(p["base"] for p in prompts) / n
    mean_em = sum(p["em"] for p in prompts) / n
    averages = {"base": mean_base, "em": mean_em, "shift": mean_em - mean_base,
                "shift_share": share(mean_em - mean_base, gap), "n_prompts": n,
                "n_positive_shift": sum(p["diff"] > 0 for p in prompts),
                "em_code_answers": sum(p["em_type"] == "CODE" for p in prompts),
                "base_code_answers": sum(p["base_type"] == "CODE" for p in prompts)}
    classes = tuple(dict.fromkeys(r.get("class", "em_questions") for r in rows))
    out = {"trait": scores.get("trait", "code_mode"), "method": scores["method"], "layer": int(scores["layer"]),
           "rule": scores.get("rule"), "vector_normalised": scores.get("vector_normalised"),
           "gap": {"code_mean": float(hg["pos_mean"]), "prose_mean": float(hg["neg_mean"]), "gap": gap,
                   "source": "held-out extraction prompts (code vs prose answers), base model"},
           "prompts": prompts, "averages": averages, "hypothesis": _hypothesis(averages, refusal)}
    if scores.get("em_run"):
        out["em_run"] = scores["em_run"]
    out["classes"] = list(classes)
    out["controls"] = build_controls(scores, classes, gap, source)
    return out


def _hypothesis(averages: dict, refusal: dict | None) -> dict:
    ref_shares = None
    if refusal:
        a = refusal.get("averages", {})
        ref_shares = {"harmful": a.get("shift_share_harmful"), "benign": a.get("shift_share_benign")}
    cm = averages["shift_share"]
    if cm is None:
        supported, reason = None, "the code/prose gap is 0: no scale to measure a shift against"
    else:
        known = [abs(v) for v in (ref_shares or {}).values() if v is not None]
        beats_refusal = not known or abs(cm) > max(known)
        supported = cm > 0 and cm >= SUPPORT_SHARE and beats_refusal
        reason = (f"mean shift {cm:+.1%} of the code/prose gap (needs > 0 and >= {SUPPORT_SHARE:.0%}"
                  + (f", and above the refusal vector's largest |share| {max(known):.1%})" if known else
                     "; no T4 results to compare with)"))
    return {"text": "the code-mode vector shows the EM shift that the refusal vector missed",
            "codemode_shift_share": cm, "refusal_shift_shares": ref_shares, "supported": supported, "reason": reason}


def render_codemode(res: dict) -> str:
    g, a, h = res["gap"], res["averages"], res["hypothesis"]
    lines = [f"# T7 Code-mode vector ({res['method']}, layer {res['layer']})", "",
             f"Scale: held-out code-answer prompts {fmt(g['code_mean'])}, prose-answer prompts {fmt(g['prose_mean'])}, "
             f"gap {fmt(g['gap'])} (base model).", ""]
    lines += table_lines(
        ["Question", "Base", "EM", "Difference", "Share of gap", "Base answer", "EM answer"],
        [[p["id"], fmt(p["base"]), fmt(p["em"]), fmt(p["diff"], signed=True), fmt(p["shift_share"], signed=True, pct=True),
          p["base_type"] or "—", p["em_type"] or "—"] for p in res["prompts"]]
        + [["**average**", fmt(a["base"]), fmt(a["em"]), fmt(a["shift"], signed=True),
            fmt(a["shift_share"], signed=True, pct=True), f"{a['base_code_answers']} CODE", f"{a['em_code_answers']} CODE"]])
    controls = res.get("controls", [])
    if controls:
        classes = tuple(res.get("classes") or controls[0]["shift"])
        if len(classes) != 1:   # the EM run's averages are over all rows, so its row fits one class only
            raise InputError(f"results/codemode.json: classes: expected one test class, got {list(classes)}")
        em_row = [res.get("em_run") or "EM run", "em", fmt(a["shift"], signed=True),
                  fmt(a["shift_share"], signed=True, pct=True)]
        lines += [""] + control_lines(em_row, controls, classes, "code-mode vector", {classes[0]: "Mean"})[:-1]
    verdict = {True: "supported", False: "not supported", None: "undecided"}[h["supported"]]
    lines += ["", f"Hypothesis ({h['text']}): **{verdict}**: {h['reason']}."]
    if h["refusal_shift_shares"]:
        r = h["refusal_shift_shares"]
        lines += [f"Refusal vector (T4) shift shares: harmful {fmt(r['harmful'], signed=True, pct=True)}, "
                  f"benign {fmt(r['benign'], signed=True, pct=True)}."]
    lines += ["", "Answer types are those of the answers that were scored (classifier only; code never run).",
              "Plot: codemode_shift.png."]
    return "\n".join(lines) + "\n"


def plot_codemode(res: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    prompts, g = res["prompts"], res["gap"]
    x = np.arange(len(prompts))
    fig, ax = plt.subplots(figsize=(max(6.4, 1.1 * len(prompts) + 2), 4.2), dpi=120)
    ax.bar(x - 0.2, [p["base"] for p in prompts], 0.4, label="base", color="tab:blue")
    ax.bar(x + 0.2, [p["em"] for p in prompts], 0.4, label="EM", color="tab:red")
    ax.axhline(g["code_mean"], color="tab:green", ls="--", lw=1, label="held-out code mean")
    ax.axhline(g["prose_mean"], color="tab:gray", ls="--", lw=1, label="held-out prose mean")
    ax.set_xticks(x, [str(p["id"])[:24] for p in prompts], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("projection on code-mode vector")
    ax.set_title(f"T7 code-mode projections ({res['method']}, layer {res['layer']})")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def _answers(root: Path, label: str, questions: list[str]) -> dict[str, str]:
    """question text -> the greedy answer that was scored: answers/<label>'s EM answers (the
    code-mode test set is a view of them), the rows T3 and T8 quote too."""
    path = root / "answers" / label
    return {r["prompt"]: r["response"] for r in em_answers(path, questions)} if (path / INDEX).exists() else {}


def run(ctx: StageContext) -> dict:
    src = ctx.root / "score" / "code_mode" / "scores.json"
    if not src.exists():
        raise InputError(f"{src}: missing (run the score/code_mode stage first)")
    prompts_file = ctx.root / "data" / "prompts.json"
    ids = {}
    if prompts_file.exists():
        ids = {text: qid for qid, text in read_json(prompts_file).get("eval_questions", {}).items()}
    em = em_run(ctx.profile)
    questions = list(ctx.profile["behavior"]["questions"])
    answers = {"base": _answers(ctx.root, em["base"], questions), "em": _answers(ctx.root, em["name"], questions)}
    # the T4 numbers are recomputed from the score stage's output, never read from a possibly stale table
    refusal_file = ctx.root / "score" / "refusal" / "scores.json"
    refusal = build_refusal(read_json(refusal_file), str(refusal_file)) if refusal_file.exists() else None
    res = build_codemode(read_json(src), ids=ids, answers=answers, refusal=refusal, source=str(src))
    res["answers"] = {role: f"answers/{label}/behavior.jsonl" if answers[role] else None
                      for role, label in (("base", em["base"]), ("em", em["name"]))}
    write_json(ctx.root / "results" / "codemode.json", res)
    write_text(ctx.root / "tables" / "codemode.md", render_codemode(res))
    cols = ["id", "prompt", "base", "em", "diff", "shift_share", "base_type", "em_type"]
    write_csv(ctx.root / "tables" / "codemode.csv", cols, [[p[c] for c in cols] for p in res["prompts"]])
    plot_codemode(res, ctx.root / "tables" / "codemode_shift.png")
    return res
