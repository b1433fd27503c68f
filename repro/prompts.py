"""The shipped prompt sets (data/prompts/, our own text) and the EM evaluation questions.

Both profiles use the same sets; `load_prompt_sets` returns them as one JSON-able mapping:
  refusal_harmful, refusal_benign, codemode_code, codemode_prose   lists of 100 prompts
  refusal_test        {"harmful": [5], "benign": [5]}
  medical_eval        {"medical": [...], "nonmedical": [...]}
  eval_questions      {question_id: text}
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .io import read_yaml

LIST_SETS = ("refusal_harmful", "refusal_benign", "codemode_code", "codemode_prose")


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise InputError(f"{path}: prompt set missing (expected one prompt per line)")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    prompts = [ln for ln in lines if ln and not ln.startswith("#")]
    if not prompts:
        raise InputError(f"{path}: no prompts (expected one prompt per line)")
    return prompts


def _read_mapping(path: Path, keys: tuple[str, ...]) -> dict:
    if not path.exists():
        raise InputError(f"{path}: prompt set missing")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with keys {', '.join(keys)}")
    out = {}
    for key in keys:
        value = data.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise InputError(f"{path}: field '{key}': expected a non-empty list of prompt strings")
        out[key] = value
    return out


def parse_questions(path: Path) -> dict[str, str]:
    """Question id -> text. Accepts our shipped {id: text} mapping / [{id, text}] list, and the EM
    repository's first_plot_questions.yaml ([{id, paraphrases: [text, ...], ...}])."""
    if not path.exists():
        raise InputError(f"{path}: evaluation questions missing")
    data = read_yaml(path)
    if isinstance(data, dict) and "questions" in data:
        data = data["questions"]
    if isinstance(data, dict):
        return {str(k): (v["text"] if isinstance(v, dict) else v) for k, v in data.items()}
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of questions or a mapping id -> text")
    out = {}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "id" not in entry:
            raise InputError(f"{path}: entry {i}: expected a mapping with an 'id'")
        text = entry.get("text") or (entry.get("paraphrases") or [None])[0]
        if not isinstance(text, str):
            raise InputError(f"{path}: entry {entry['id']}: expected 'text' or 'paraphrases' with a string")
        out[str(entry["id"])] = text
    return out


def load_prompt_sets(prompts_dir: Path, questions_file: Path | None = None) -> dict:
    prompts_dir = Path(prompts_dir)
    sets: dict = {name: _read_lines(prompts_dir / f"{name}.txt") for name in LIST_SETS}
    sets["refusal_test"] = _read_mapping(prompts_dir / "refusal_test.yaml", ("harmful", "benign"))
    sets["medical_eval"] = _read_mapping(prompts_dir / "medical_eval.yaml", ("medical", "nonmedical"))
    sets["eval_questions"] = parse_questions(questions_file or prompts_dir / "em_eval_questions.yaml")
    return sets


def require_questions(questions: dict[str, str], ids: list[str], source: str) -> None:
    missing = [q for q in ids if q not in questions]
    if missing:
        raise InputError(f"{source}: evaluation question id(s) {', '.join(missing)} not found")


def prompt_texts(sets: dict) -> list[str]:
    """Every prompt text of load_prompt_sets' mapping (lists, grouped lists, question texts)."""
    out: list[str] = []
    for value in sets.values():
        groups = value.values() if isinstance(value, dict) else [value]
        for group in groups:
            out += [group] if isinstance(group, str) else list(group)
    return out


def shipped_prompts(prompts_dir) -> list[str]:
    """Every prompt of the shipped sets (data/prompts): pass as `exclude` to build_organism so the
    mini model has to generalise to them instead of having seen them."""
    return prompt_texts(load_prompt_sets(Path(prompts_dir)))
