"""Residual-stream activations: every decoder layer, one forward pass per batch, pooled per text.

Hook point (FACTS.md): the output of decoder block i (`model.layers.i`, 0-based), i.e. the
residual stream after block i. For blocks 0..L-2 this equals HF's hidden_states[i+1]; for the
LAST block HF's hidden_states[L] is taken after the final RMSNorm (transformers ties it to
last_hidden_state), whereas the original research code hooked the block itself. We hook the
blocks, so all L layers are raw block outputs, as in the original.

Pooling rules (weights over the tokens of each text; pads always get weight 0):
- "mean_all":      mean over all tokens of prompt + response (the original pipeline's rule)
- "mean_response": mean over response tokens only (tokens at index >= prompt_length)
- "last_prompt":   the last prompt token (index prompt_length - 1)
- "last":          the last token of the text
"mean_response" and "last_prompt" need `prompt_lengths` (prompt tokens within each text's
tokenisation; `natural_elicitation` returns them as prompt_len_tokens).

Speed (the `make bench` capture benchmark compares this with a per-prompt hook loop):
- the LM head is never run: we call the inner decoder (`model.model`) directly;
- texts are sorted by length and batched (length bucketing, `plan_batches`; optionally capped by
  padded tokens per batch), order restored at the end;
- each block's output is pooled inside its forward hook, so at most one [B, T, D] block output
  is alive at a time and only [B, L, D] is kept per batch;
- right padding with an ALL-ONES attention mask: with causal attention a real token never attends
  to a later (pad) position, so real-token states are exact; pad positions get pooling weight 0.
  The all-ones mask (not None) is what lets transformers skip the 4-D mask and call sdpa with
  is_causal: with mask=None, 4.57 runs "packed sequence" detection and always materialises a
  mask (measured: 0.29 -> 0.17 s for 200 prompts on the mini model, 1 thread);
- torch.inference_mode, float32 pooling, one device->CPU copy per batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import torch
from tqdm.auto import tqdm

from .errors import InputError, ReproError
from .io import atomic_path

POOLINGS = ("mean_all", "mean_response", "last_prompt", "last")


def decoder_of(model):
    """(decoder, layers) for a causal LM, a PEFT-wrapped one (LoRA injected in place), or a bare decoder."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for candidate in (getattr(base, "model", None), base):
        layers = getattr(candidate, "layers", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
            return candidate, layers
    if hasattr(base, "get_decoder"):
        dec = base.get_decoder()
        if isinstance(getattr(dec, "layers", None), torch.nn.ModuleList):
            return dec, dec.layers
    raise ReproError(f"model {type(model).__name__}: cannot find its decoder layers (expected .model.layers)")


def _block_output(output) -> torch.Tensor:
    # Decoder layers return a tensor in recent transformers and a tuple (hidden, ...) in older ones.
    return output[0] if isinstance(output, (tuple, list)) else output


def encode_texts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per text, as the original re-tokenised prompt + response (`tokenizer(text)`)."""
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise InputError("texts: expected a list of strings")
    ids = tokenizer(list(texts)).input_ids if texts else []
    for i, row in enumerate(ids):
        if not row:
            raise InputError(f"texts[{i}]: empty after tokenisation")
    return ids


def pooling_weights(pooling: str, length: int, prompt_length: int | None, index: int = 0) -> torch.Tensor:
    """Weights over one text's `length` tokens implementing the pooling rule (sums to 1)."""
    w = torch.zeros(length, dtype=torch.float32)
    if pooling == "mean_all":
        w[:] = 1.0 / length
    elif pooling == "last":
        w[length - 1] = 1.0
    elif pooling in ("mean_response", "last_prompt"):
        if prompt_length is None:
            raise InputError(f"pooling {pooling}: prompt_lengths are required")
        if pooling == "mean_response":
            if not 0 <= prompt_length < length:
                raise InputError(f"texts[{index}]: no response tokens (prompt_length {prompt_length}, text length {length})")
            w[prompt_length:] = 1.0 / (length - prompt_length)
        else:
            if not 1 <= prompt_length <= length:
                raise InputError(f"texts[{index}]: prompt_length {prompt_length} outside 1..{length}")
            w[prompt_length - 1] = 1.0
    else:
        raise InputError(f"pooling: expected one of {list(POOLINGS)}, got {pooling!r}")
    return w


def plan_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None = None) -> list[list[int]]:
    """Length buckets: indices sorted by length, cut into batches of at most `batch_size` rows and
    (if given) at most `max_batch_tokens` padded tokens (rows x longest row; a single over-long
    row still gets its own batch)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        cur = batches[-1] if batches else None
        # Sorted ascending, so adding i makes lengths[i] the batch width.
        if cur is None or len(cur) >= batch_size or (
                max_batch_tokens is not None and (len(cur) + 1) * lengths[i] > max_batch_tokens):
            batches.append([i])
        else:
            cur.append(i)
    return batches


def capture_activations(model, tokenizer, texts: list[str], *, pooling: str, batch_size: int,
                        prompt_lengths: Sequence[int] | None = None, progress: bool = True,
                        max_batch_tokens: int | None = None) -> torch.Tensor:
    """Pooled residual stream after every decoder block: float32 [N, L, D] in the order of `texts`.

    max_batch_tokens: optional cap on padded tokens per batch (rows x width) on top of batch_size.
    """
    if pooling not in POOLINGS:
        raise InputError(f"pooling: expected one of {list(POOLINGS)}, got {pooling!r}")
    if batch_size < 1:
        raise InputError(f"batch_size: expected >= 1, got {batch_size}")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise InputError(f"max_batch_tokens: expected >= 1 or None, got {max_batch_tokens}")
    ids = encode_texts(tokenizer, texts)
    if prompt_lengths is not None and len(prompt_lengths) != len(ids):
        raise InputError(f"prompt_lengths: expected {len(ids)} values (one per text), got {len(prompt_lengths)}")
    decoder, layers = decoder_of(model)
    n_layers, dim = len(layers), model.config.hidden_size if hasattr(model, "config") else None
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # Weights are checked for every text before any compute, so a bad row fails fast.
    weights = [pooling_weights(pooling, len(row), None if prompt_lengths is None else int(prompt_lengths[i]), i)
               for i, row in enumerate(ids)]

    batches = plan_batches([len(row) for row in ids], batch_size, max_batch_tokens)
    state: dict = {"w": None, "pooled": [None] * n_layers}

    def make_hook(layer_idx: int):
        def hook(_module, _inputs, output):
            h = _block_output(output)
            # [B, 1, T] @ [B, T, D] -> [B, D]; float32 so bf16 models pool without precision loss.
            state["pooled"][layer_idx] = torch.bmm(state["w"].unsqueeze(1), h.float()).squeeze(1)
        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
    out = None
    try:
        with torch.inference_mode():
            for idx in tqdm(batches, desc="activations", disable=None if progress else True):
                width = len(ids[idx[-1]])  # sorted: the last is the longest
                input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                w = torch.zeros((len(idx), width), dtype=torch.float32)
                for r, i in enumerate(idx):
                    input_ids[r, :len(ids[i])] = torch.tensor(ids[i])
                    w[r, :len(ids[i])] = weights[i]
                state["w"] = w.to(device)
                # An all-ones mask (not None): see the module docstring.
                decoder(input_ids=input_ids.to(device), attention_mask=torch.ones_like(input_ids, device=device),
                        use_cache=False)
                pooled = torch.stack(state["pooled"], dim=1).cpu()  # [B, L, D]
                if out is None:
                    out = torch.empty((len(ids), n_layers, dim or pooled.shape[-1]), dtype=torch.float32)
                out[torch.tensor(idx)] = pooled
                state["pooled"] = [None] * n_layers
    finally:
        for h in handles:
            h.remove()
    if out is None:
        out = torch.empty((0, n_layers, dim or 0), dtype=torch.float32)
    return out


def _prompt_token_count(tokenizer, text: str, prompt_text: str) -> int:
    """How many tokens of tokenizer(text) belong to the prompt (a token straddling the join counts as prompt)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, return_offsets_mapping=True)
        return sum(1 for start, _end in enc["offset_mapping"] if start < len(prompt_text))
    return len(tokenizer(prompt_text).input_ids)


def answered_texts(tokenizer, prompts: Sequence[str], responses: Sequence[str], *,
                   chat_template: bool = False) -> list[dict]:
    """Prompt + a stored answer as the model read it while answering (teacher forcing): rows
    {prompt, response, text, prompt_len_tokens}. `text` (the formatted prompt + response) is what
    gets re-tokenised and pooled, as the original pipeline re-read prompt + its own response."""
    from .generate import format_prompt

    if len(prompts) != len(responses):
        raise InputError(f"answers: {len(responses)} responses for {len(prompts)} prompts")
    rows = []
    for prompt, response in zip(prompts, responses):
        prompt_text = format_prompt(tokenizer, prompt, chat_template)
        text = prompt_text + response
        rows.append({"prompt": prompt, "response": response, "text": text,
                     "prompt_len_tokens": _prompt_token_count(tokenizer, text, prompt_text)})
    return rows


def natural_elicitation(model, tokenizer, prompts: list[str], *, max_new_tokens: int, batch_size: int,
                        chat_template: bool = False, seed: int = 0, progress: bool = True) -> list[dict]:
    """The model's own greedy responses; rows {prompt, response, text, prompt_len_tokens}.

    As in the original pipeline (FACTS.md) prompts are fed raw by default. The pipeline generates
    its answers once, in the answers stage, and reads them back with `answered_texts`; this is the
    same in one call, for use outside the pipeline.
    """
    from .generate import generate_responses

    gen = generate_responses(model, tokenizer, prompts, chat_template=chat_template, greedy=True,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, progress=progress)
    return answered_texts(tokenizer, prompts, [g["response"] for g in gen], chat_template=chat_template)


def token_projections(model, tokenizer, text: str, vectors: Mapping[str, torch.Tensor],
                      layers: Sequence[int]) -> dict:
    """Per-token projections (raw activation . unit vector) at `layers`, one forward pass.

    vectors: name -> [L, D]. Returns {"tokens": [str], "layers": [int],
    "projections": {name: [[float per token] per layer]}}.
    """
    decoder, blocks = decoder_of(model)
    layers = [int(l) for l in layers]
    for l in layers:
        if not 0 <= l < len(blocks):
            raise InputError(f"layers: {l} outside 0..{len(blocks) - 1}")
    units = {}
    for name, vec in vectors.items():
        if vec.ndim != 2 or vec.shape[0] != len(blocks):
            raise InputError(f"vectors[{name}]: expected shape [{len(blocks)}, D], got {list(vec.shape)}")
        v = vec[layers].float()
        units[name] = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    ids = encode_texts(tokenizer, [text])[0]
    device = next(model.parameters()).device
    captured: dict[int, torch.Tensor] = {}

    def make_hook(l: int):
        def hook(_m, _i, output):
            captured[l] = _block_output(output)[0].float().cpu()  # [T, D]
        return hook

    handles = [blocks[l].register_forward_hook(make_hook(l)) for l in set(layers)]
    try:
        with torch.inference_mode():
            decoder(input_ids=torch.tensor([ids], device=device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    acts = torch.stack([captured[l] for l in layers])  # [n_layers, T, D]
    projections = {name: torch.einsum("ltd,ld->lt", acts, u).tolist() for name, u in units.items()}
    return {"tokens": [tokenizer.decode([t]) for t in ids], "layers": layers, "projections": projections}


def save_activations(path: str | Path, acts: torch.Tensor, meta: Mapping[str, object]) -> Path:
    """Write [N, L, D] activations + string metadata (pooling, model, prompt set, n, layers) atomically."""
    from safetensors.torch import save_file

    if acts.ndim != 3:
        raise ReproError(f"{path}: activations must be [N, L, D], got shape {list(acts.shape)}")
    meta_str = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    with atomic_path(path) as tmp:
        save_file({"activations": acts.detach().to(torch.float32).contiguous().cpu()}, str(tmp), metadata=meta_str)
    return Path(path)


def load_activations(path: str | Path) -> tuple[torch.Tensor, dict[str, str]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: activations file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            if "activations" not in f.keys():
                raise ReproError(f"{path}: no 'activations' tensor in the file")
            return f.get_tensor("activations"), dict(f.metadata() or {})
    except ReproError:
        raise
    except Exception as exc:  # safetensors raises its own error types for truncated/corrupt files
        raise ReproError(f"{path}: not a readable safetensors file ({type(exc).__name__})") from None
