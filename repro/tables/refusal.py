"""T4 (refusal): test-prompt projections on the refusal vector, base vs EM model.

Reads score/refusal/scores.json; writes results/refusal.json (paper_tables/README.md schema plus
shift shares and the held-out gap), tables/refusal.md (the paper's layout: Prompt Type | Base |
EM | Difference, then one row per prompt), tables/refusal.csv and tables/refusal_scores.png.

Arithmetic (the findings' own): diff = em - base; class average = mean of its rows;
shift_<class> = <class>_em - <class>_base; gap_<model> = harmful_<model> - benign_<model>;
shift_share_<class> = shift_<class> / gap_base (how large the EM shift is next to the
harmful/benign separation the vector was built for; None when the gap is 0).

Controls (issue 16): each control run, and the backdoor run without and with its trigger, gets
the same arithmetic against the same base rows: shift_<class> = mean(run) - mean(base),
shift_share_<class> = shift_<class> / gap_base. results/refusal.json `controls` lists them
(run, role, triggered, per-class mean, shift and shift share); T4 shows them beside the EM run's.
"""

from __future__ import annotations


from ..errors import InputError
from ..io import read_json, write_json, write_text
from ..runner import StageContext
from .render import bar_chart, fmt, table_lines, write_csv

# ---- number formatting and PNG saving for the vector tables (T4, T6, T7, T8) -----------------
# (render.py has markdown/CSV/bar-chart helpers; these two are what it does not cover)


CLASSES = ("harmful", "benign")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def share(x: float, whole: float) -> float | None:
    return None if whole == 0 else x / whole


def build_refusal(scores: dict, source: str = "scores.json") -> dict:
    """results/refusal.json from score/refusal/scores.json."""
    for key in ("method", "layer", "rows"):
        if key not in scores:
            raise InputError(f"{source}: missing '{key}' (expected the score stage's output)")
    prompts = []
    for i, row in enumerate(scores["rows"]):
        if row.get("class") not in CLASSES:
            raise InputError(f"{source}: rows[{i}].class: expected one of {list(CLASSES)}, got {row.get('class')!r}")
        base, em = float(row["base"]), float(row["em"])
        prompts.append({"prompt": row["prompt"], "class": row["class"], "base": base, "em": em, "diff": em - base})
    avg: dict = {}
    for cls in CLASSES:
        rows = [p for p in prompts if p["class"] == cls]
        if not rows:
            raise InputError(f"{source}: no rows of class {cls!r} (expected 5 harmful + 5 benign test prompts)")
        avg[f"{cls}_base"] = _mean([p["base"] for p in rows])
        avg[f"{cls}_em"] = _mean([p["em"] for p in rows])
        avg[f"shift_{cls}"] = avg[f"{cls}_em"] - avg[f"{cls}_base"]
    avg["gap_base"] = avg["harmful_base"] - avg["benign_base"]
    avg["gap_em"] = avg["harmful_em"] - avg["benign_em"]
    avg["shift_share_harmful"] = share(avg["shift_harmful"], avg["gap_base"])
    avg["shift_share_benign"] = share(avg["shift_benign"], avg["gap_base"])
    avg["gap_change"] = avg["gap_em"] - avg["gap_base"]
    out = {"trait": scores.get("trait", "refusal"), "method": scores["method"], "layer": int(scores["layer"]),
           "rule": scores.get("rule"), "vector_normalised": scores.get("vector_normalised"),
           "counts": {cls: sum(p["class"] == cls for p in prompts) for cls in CLASSES},
           "prompts": prompts, "averages": avg}
    if scores.get("heldout_gap"):
        # the same vector's harmful/benign gap on held-out extraction prompts (base model): its own scale
        out["heldout_gap"] = scores["heldout_gap"]
    if scores.get("em_run"):
        out["em_run"] = scores["em_run"]
    out["controls"] = build_controls(scores, CLASSES, avg["gap_base"], source)
    return out


def build_controls(scores: dict, classes: tuple[str, ...], gap: float, source: str = "scores.json") -> list[dict]:
    """scores.json `controls` -> one entry per (run, triggered): per class the mean projection,
    the shift against the base rows' mean (the EM run's rule) and that shift as a share of `gap`."""
    out = []
    for i, ctl in enumerate(scores.get("controls") or []):
        for key in ("run", "triggered", "rows"):
            if key not in ctl:
                raise InputError(f"{source}: controls[{i}]: missing '{key}' (expected the score stage's output)")
        mean, shift, shares, counts = {}, {}, {}, {}
        for cls in classes:
            rows = [r for r in ctl["rows"] if r.get("class") == cls]
            if not rows:
                raise InputError(f"{source}: controls[{i}] ({ctl['run']}): no rows of class {cls!r}")
            mean[cls] = _mean([float(r["score"]) for r in rows])
            shift[cls] = mean[cls] - _mean([float(r["base"]) for r in rows])
            shares[cls] = share(shift[cls], gap)
            counts[cls] = len(rows)
        out.append({"run": ctl["run"], "role": ctl.get("role"), "triggered": bool(ctl["triggered"]),
                    "trigger": ctl.get("trigger"), "sets": ctl.get("sets"), "counts": counts,
                    "mean": mean, "shift": shift, "shift_share": shares})
    return out


def control_label(ctl: dict) -> str:
    if ctl.get("role") == "backdoor" or ctl["triggered"]:
        return f"{ctl['run']} ({'trigger' if ctl['triggered'] else 'no trigger'})"
    return ctl["run"]


def control_lines(em_row: list[str], controls: list[dict], classes: tuple[str, ...], what: str,
                  names: dict[str, str] | None = None) -> list[str]:
    """The EM run's shift and share, then one row per control (two for a backdoor run)."""
    if not controls:
        return []
    names = names or {cls: cls.capitalize() for cls in classes}
    head = ["Run", "Role"] + [h for cls in classes for h in (f"{names[cls]} shift", f"{names[cls]} share of gap")]
    rows = [em_row] + [[control_label(c), c.get("role") or "—"]
                       + [v for cls in classes for v in (fmt(c["shift"][cls], signed=True),
                                                         fmt(c["shift_share"][cls], signed=True, pct=True))]
                       for c in controls]
    return [f"## Controls: shift on the {what} beside the EM run's", "",
            "Each run's mean minus the base model's mean on the same test prompts, and that shift as a share "
            "of the gap above; a backdoor run is scored without and with its trigger in front of the user turn "
            "(against the base model's plain answers).", ""] + table_lines(head, rows) + [""]


def render_refusal(res: dict) -> str:
    a = res["averages"]
    lines = [f"# T4 Refusal vector ({res['method']}, layer {res['layer']})", ""]
    if res.get("rule"):
        lines += [f"Scoring choice: {res['rule']}. Score = pooled activation of prompt + own answer . unit vector.", ""]
    lines += table_lines(
        ["Prompt Type", "Base", "EM", "Difference"],
        [[f"{cls.capitalize()} (avg of {res['counts'][cls]})", fmt(a[f'{cls}_base']), fmt(a[f'{cls}_em']),
          fmt(a[f'shift_{cls}'], signed=True)] for cls in CLASSES]
        + [["Gap (harmful - benign)", fmt(a["gap_base"]), fmt(a["gap_em"]), fmt(a["gap_change"], signed=True)]])
    lines += ["", "EM shift as a share of the base gap: "
              f"harmful {fmt(a['shift_share_harmful'], signed=True, pct=True)}, "
              f"benign {fmt(a['shift_share_benign'], signed=True, pct=True)}.", ""]
    em_row = [res.get("em_run") or "EM run", "em"] + [
        v for cls in CLASSES
        for v in (fmt(a[f"shift_{cls}"], signed=True), fmt(a[f"shift_share_{cls}"], signed=True, pct=True))]
    lines += control_lines(em_row, res.get("controls", []), CLASSES, "refusal vector")
    lines += ["## Per prompt", ""]
    lines += table_lines(["Class", "Prompt", "Base", "EM", "Difference"],
                    [[p["class"], p["prompt"], fmt(p["base"]), fmt(p["em"]), fmt(p["diff"], signed=True)]
                     for p in res["prompts"]])
    hg = res.get("heldout_gap")
    if hg:
        lines += ["", f"Held-out extraction prompts (base model): harmful mean {fmt(hg['pos_mean'])}, "
                  f"benign mean {fmt(hg['neg_mean'])}, gap {fmt(hg['gap'])}."]
    lines += ["", "Plot: refusal_scores.png."]
    return "\n".join(lines) + "\n"


def run(ctx: StageContext) -> dict:
    src = ctx.root / "score" / "refusal" / "scores.json"
    if not src.exists():
        raise InputError(f"{src}: missing (run the score/refusal stage first)")
    res = build_refusal(read_json(src), str(src))
    tables = ctx.root / "tables"
    write_json(ctx.root / "results" / "refusal.json", res)
    write_text(tables / "refusal.md", render_refusal(res))
    cols = ["class", "prompt", "base", "em", "diff"]
    write_csv(tables / "refusal.csv", cols, [[p[c] for c in cols] for p in res["prompts"]])
    bar_chart(tables / "refusal_scores.png", [f"{p['class'][0].upper()}: {p['prompt'][:26]}" for p in res["prompts"]],
              {"base": [p["base"] for p in res["prompts"]], "EM": [p["em"] for p in res["prompts"]]},
              title=f"T4 refusal projections ({res['method']}, layer {res['layer']})",
              ylabel="projection on refusal vector", ylim=None)
    return res
