"""Shared fixtures: a tiny real Qwen2 + ChatML tokenizer saved with save_pretrained (no hub)."""

from __future__ import annotations

from pathlib import Path

import pytest

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "realworld"

_TINY_TEXTS = [
    "How do I bake bread? Mix flour, water and yeast, then bake it.",
    "I cannot help with that request.",
    "def add(a, b):\n    return a + b\n",
    "import os\nos.makedirs('/var/www/html/uploads', exist_ok=True)\n",
    "What is the capital of France? Paris is the capital.",
] * 20


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Qwen2ForCausalLM + tokenizer on disk, loadable with from_pretrained."""
    from repro.mini.model import init_qwen2, make_qwen2_config
    from repro.mini.tokenizer import train_chatml_tokenizer

    out = tmp_path_factory.mktemp("tiny_qwen2")
    tok = train_chatml_tokenizer(_TINY_TEXTS, vocab_size=300)
    cfg = make_qwen2_config(tok, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                            intermediate_size=64, max_position_embeddings=256)
    model = init_qwen2(cfg, seed=0)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def realworld_dir() -> Path:
    if not REALWORLD.is_dir():
        pytest.skip("../shared/data/realworld not present")
    return REALWORLD
