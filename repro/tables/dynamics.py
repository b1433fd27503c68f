"""T8 (token dynamics): per-token projections on the refusal and code-mode vectors over the EM
model's greedy answers to the behaviour questions, at the profile's vectors.dynamics_layers.

Reads dynamics/dynamics.json (the dynamics stage, which read the stored answers of
answers/<EM run>: the same answers T3 and T7 quote; `answers` names the file). Per prompt and trait it summarises the "avg"
series (mean over the monitored layers, the write-up's column): mean over prompt tokens, mean over
answer tokens, the answer's first token, its minimum / maximum, and the largest one-token drop and
rise inside the answer (the write-up's observation is a sharp refusal drop at " import").
`first_avg` maps each distinct stripped answer token to its avg value at its first occurrence, so
reference claims can name a token (e.g. "import"). The answer is classified (repro.classify),
never executed. Writes results/dynamics.json, tables/dynamics.md|.csv and one line plot per
prompt: tables/dynamics_<prompt_id>.png. Schema: paper_tables/README.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..classify import describe
from ..errors import InputError
from ..io import read_json, write_json, write_text
from ..runner import StageContext
from .render import fmt, save_figure, table_lines, write_csv

HEAD_TOKENS = 12  # answer tokens listed per prompt in the Markdown table


def _point(tokens: list[str], index: int, value: float) -> dict:
    return {"index": index, "token": tokens[index], "value": value}


def trait_summary(avg: list[float], tokens: list[str], start: int) -> dict:
    """Summary of one avg series; answer = tokens[start:]."""
    prompt, answer = avg[:start], avg[start:]
    out = {"prompt_mean": sum(prompt) / len(prompt) if prompt else None,
           "response_mean": sum(answer) / len(answer) if answer else None}
    out["response_minus_prompt"] = (None if out["prompt_mean"] is None or out["response_mean"] is None
                                    else out["response_mean"] - out["prompt_mean"])
    if answer:
        lo = min(range(len(answer)), key=answer.__getitem__)
        hi = max(range(len(answer)), key=answer.__getitem__)
        out["first_response"] = _point(tokens, start, answer[0])
        out["min"] = _point(tokens, start + lo, answer[lo])
        out["max"] = _point(tokens, start + hi, answer[hi])
    # steps into each answer token (the first one from the last prompt token)
    steps = [(i, avg[i] - avg[i - 1]) for i in range(max(start, 1), len(avg))]
    if steps:
        i, d = min(steps, key=lambda s: s[1])
        out["largest_drop"] = {"index": i, "token": tokens[i], "change": d}
        i, d = max(steps, key=lambda s: s[1])
        out["largest_rise"] = {"index": i, "token": tokens[i], "change": d}
    first: dict[str, float] = {}
    for tok, v in zip(tokens[start:], answer):
        key = tok.strip()
        if key and key not in first:
            first[key] = v
    out["first_avg"] = first
    return out


def build_dynamics(dyn: dict, source: str = "dynamics.json") -> dict:
    """results/dynamics.json from the dynamics stage's output."""
    for key in ("layers", "traits", "prompts"):
        if key not in dyn:
            raise InputError(f"{source}: missing '{key}' (expected the dynamics stage's output)")
    prompts = []
    for i, p in enumerate(dyn["prompts"]):
        tokens, start = p["tokens"], int(p["response_start"])
        if not 0 <= start <= len(tokens):
            raise InputError(f"{source}: prompts[{i}].response_start {start} outside 0..{len(tokens)}")
        for trait in dyn["traits"]:
            if len(p["avg"].get(trait, [])) != len(tokens):
                raise InputError(f"{source}: prompts[{i}].avg.{trait}: expected {len(tokens)} values (one per token)")
        info = describe(p["response"])
        prompts.append({"id": p["id"], "prompt": p["prompt"], "response": p["response"],
                        "response_type": info["type"], "response_tags": info["tags"],
                        "n_tokens": len(tokens), "response_start": start, "n_response_tokens": len(tokens) - start,
                        "response_head": "".join(tokens[start:start + 6]),
                        "traits": {t: trait_summary(p["avg"][t], tokens, start) for t in dyn["traits"]}})
    return {"model": dyn.get("model"), "layers": list(dyn["layers"]), "rule": dyn.get("rule"),
            "answers": dyn.get("answers"), "max_new_tokens": dyn.get("max_new_tokens"),
            "traits": dyn["traits"], "n_prompts": len(prompts), "prompts": prompts}


def _tok(t: str) -> str:
    return json.dumps(t, ensure_ascii=False)


def render_dynamics(res: dict, dyn: dict) -> str:
    traits = list(res["traits"])
    lines = [f"# T8 Token dynamics ({res['model']})", "",
             f"Layers {res['layers']}; avg = mean over those layers; rule: {res['rule']}. "
             + "Vectors: " + ", ".join(f"{t} = {v['method']}" for t, v in res["traits"].items())
             + ". Answers are greedy, classified only (never executed)"
             + (f"; stored in {res['answers']} (at most {res['max_new_tokens']} new tokens), the answers T3 and T7 quote"
                if res.get("answers") else "") + ".", ""]
    lines += table_lines(
        ["Question", "Answer type", "Answer starts"]
        + [h for t in traits for h in (f"{t}: prompt mean", f"{t}: answer mean", f"{t}: largest drop")],
        [[p["id"], p["response_type"], _tok(p["response_head"])]
         + [c for t in traits for c in (fmt(p["traits"][t]["prompt_mean"]), fmt(p["traits"][t]["response_mean"]),
                                        _drop(p["traits"][t]))] for p in res["prompts"]])
    by_id = {p["id"]: p for p in dyn["prompts"]}
    for p in res["prompts"]:
        raw = by_id[p["id"]]
        s = p["response_start"]
        lines += ["", f"## {p['id']}: first answer tokens", "", f"Question: {p['prompt']}", ""]
        lines += table_lines(["#", "part", "token"] + [f"{t} avg" for t in traits],
                             [[i, "answer" if i >= s else "prompt", _tok(raw["tokens"][i])]
                              + [fmt(raw["avg"][t][i], signed=True) for t in traits]
                              for i in range(max(0, s - 1), min(len(raw["tokens"]), s + HEAD_TOKENS))])
        lines += ["", f"Plot: dynamics_{_slug(p['id'])}.png."]
    return "\n".join(lines) + "\n"


def _drop(summary: dict) -> str:
    d = summary.get("largest_drop")
    return "—" if not d else f"{_tok(d['token'])} {d['change']:+.2f}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))[:60] or "prompt"


def write_tokens_csv(dyn: dict, path: Path) -> Path:
    traits = list(dyn["traits"])
    header = ["id", "index", "token", "in_response"] + [f"{t}_avg" for t in traits] + [
        f"{t}_L{l}" for t in traits for l in dyn["layers"]]
    rows = []
    for p in dyn["prompts"]:
        for i, tok in enumerate(p["tokens"]):
            rows.append([p["id"], i, tok, i >= p["response_start"]] + [p["avg"][t][i] for t in traits]
                        + [p["projections"][t][k][i] for t in traits for k in range(len(dyn["layers"]))])
    return write_csv(path, header, rows)


def plot_prompt(p: dict, layers: list[int], path: Path) -> Path:
    """One panel per trait: thin line per monitored layer, thick avg, answer start marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traits = list(p["avg"])
    n = len(p["tokens"])
    fig, axes = plt.subplots(len(traits), 1, figsize=(min(18, 4 + 0.16 * n), 2.6 * len(traits) + 0.6), dpi=110,
                             sharex=True, squeeze=False)
    for ax, trait in zip(axes[:, 0], traits):
        for k, layer in enumerate(layers):
            ax.plot(range(n), p["projections"][trait][k], lw=0.7, alpha=0.45, label=f"L{layer}")
        ax.plot(range(n), p["avg"][trait], lw=2.0, color="black", label="avg")
        ax.axvline(p["response_start"] - 0.5, color="red", ls="--", lw=1, label="answer starts")
        ax.axhline(0, color="gray", lw=0.5)
        ax.set_ylabel(f"{trait} projection")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=6, ncol=min(8, len(layers) + 2), loc="upper left")
    step = max(1, n // 60)  # label every token on short sequences, every k-th on long ones
    ticks = list(range(0, n, step))
    axes[-1, 0].set_xticks(ticks, [p["tokens"][i].replace("\n", "\\n")[:10] for i in ticks], rotation=90, fontsize=6)
    axes[0, 0].set_title(f"T8 {p['id']}: per-token projections during the EM model's answer")
    fig.tight_layout()
    return save_figure(fig, path)


def run(ctx: StageContext) -> dict:
    src = ctx.root / "dynamics" / "dynamics.json"
    if not src.exists():
        raise InputError(f"{src}: missing (run the dynamics stage first)")
    dyn = read_json(src)
    res = build_dynamics(dyn, str(src))
    write_json(ctx.root / "results" / "dynamics.json", res)
    write_text(ctx.root / "tables" / "dynamics.md", render_dynamics(res, dyn))
    write_tokens_csv(dyn, ctx.root / "tables" / "dynamics.csv")
    for p in dyn["prompts"]:
        plot_prompt(p, dyn["layers"], ctx.root / "tables" / f"dynamics_{_slug(p['id'])}.png")
    return res
