"""The mini organism's architecture: a real Qwen2ForCausalLM, just small."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM


def make_qwen2_config(tokenizer: PreTrainedTokenizerBase, *, hidden_size: int, num_layers: int,
                      num_heads: int, num_kv_heads: int, intermediate_size: int,
                      max_position_embeddings: int = 1024, tie_word_embeddings: bool = True,
                      initializer_range: float = 0.02) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=initializer_range,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
        use_cache=True,
    )


def init_qwen2(config: Qwen2Config, seed: int) -> Qwen2ForCausalLM:
    """A freshly initialised model; the seed makes the initial weights reproducible."""
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    return model


def organism_config_dict(organism_cfg: dict) -> dict:
    """config.json contents of the organism's architecture, before it is built (for `repro plan`).

    The vocabulary size is the tokenizer's target size; the trained BPE can end up a little smaller.
    """
    m = organism_cfg["model"]
    return {"model_type": "qwen2", "vocab_size": int(organism_cfg["tokenizer"]["vocab_size"]),
            "hidden_size": m["hidden_size"], "intermediate_size": m["intermediate_size"],
            "num_hidden_layers": m["num_layers"], "num_attention_heads": m["num_heads"],
            "num_key_value_heads": m["num_kv_heads"],
            "max_position_embeddings": m.get("max_position_embeddings", 1024), "tie_word_embeddings": True}
