"""A trait is data: data/traits/<name>.yaml names its extraction prompt sets, the prompts it is
scored on and its scoring method. The scoring layer stays a profile value (32 of 64, 2 of 4, ...).

Test prompt sources: `SET.KEY` reads key KEY of the shipped mapping set SET (e.g.
`refusal_test.harmful`); `eval_questions.behavior` is the profile's behavior.questions, in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError
from .io import read_yaml
from .schema import Method, Name


class TestSet(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cls: Name = Field(alias="class")
    set: Name
    prompts: str = Field(pattern=r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$")


class Trait(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    pos: Name
    neg: Name
    score_method: Method = "probe"
    test: list[TestSet] = Field(min_length=1)
    kind: Literal["trait"] = "trait"


def trait_file(traits_dir: str | Path, name: str) -> Path:
    return Path(traits_dir) / f"{name}.yaml"


def load_trait(traits_dir: str | Path, name: str) -> dict:
    path = trait_file(traits_dir, name)
    if not path.is_file():
        raise InputError(f"{path}: trait file not found (vectors.traits names data/traits/<name>.yaml)")
    try:
        data = read_yaml(path)
        spec = Trait.model_validate(data if isinstance(data, dict) else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: {where}: {first['msg']}") from None
    except Exception as exc:  # malformed YAML
        raise InputError(f"{path}: invalid trait file ({type(exc).__name__})") from None
    return {"name": name, **spec.model_dump(by_alias=False)}


def profile_traits(profile: dict) -> dict[str, dict]:
    """name -> trait spec, for the profile's vectors.traits, in order."""
    from .config import repo_path

    traits_dir = repo_path(profile["data"]["traits_dir"])
    return {name: load_trait(traits_dir, name) for name in profile["vectors"]["traits"]}


def resolve_prompts(source: str, prompts: dict, behavior: dict) -> list[str]:
    """The prompts a test set names, from the data stage's prompts.json."""
    set_name, key = source.split(".")
    if set_name == "eval_questions" and key == "behavior":
        return [prompts["eval_questions"][q] for q in behavior["questions"]]
    try:
        value = prompts[set_name][key]
    except (KeyError, TypeError):
        raise InputError(f"trait test prompts {source!r}: no such shipped prompt set/key") from None
    return list(value)
