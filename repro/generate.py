"""Response generation for the behaviour stage (and natural elicitation).

Backends
- "hf" (default): transformers `generate`, batched with LEFT padding.
- "vllm" (optional, GPU): same output rows; imported lazily, LoRA adapters via LoRARequest.

Decoding is always stated explicitly, never inherited: Qwen2.5-Instruct's generation_config
samples by default (temperature 0.7, top_p 0.8, top_k 20, repetition_penalty 1.05; FACTS.md),
so we build a fresh GenerationConfig and pass `use_model_defaults=False` (otherwise transformers
>= 4.50 silently replaces values equal to the library defaults, e.g. temperature=1.0, with the
model's own).

Seeding of sampled generation: `generate` takes no torch.Generator, so prompt i is generated on
its own (its samples batched through num_return_sequences, chunks of `batch_size`) right after
`torch.manual_seed(seed + i)`. Prompt i's samples therefore depend only on (seed, i, batch_size,
model), not on the other prompts or their order.

Output rows: {"prompt", "sample", "response", "n_tokens", "finish_reason"}; n_tokens counts the
generated tokens before the stop token; finish_reason is "stop" (a stop token was produced) or
"length" (max_new_tokens reached).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from tqdm.auto import tqdm

from .errors import ReproError

BACKENDS = ("hf", "vllm")


def format_prompt(tokenizer, prompt: str, chat_template: bool = True) -> str:
    """The text the model sees: ChatML user turn + assistant header, or the raw prompt."""
    if not chat_template:
        return prompt
    if getattr(tokenizer, "chat_template", None) is None:
        raise ReproError("tokenizer: chat_template=True but the tokenizer has no chat template")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def stop_token_ids(model, tokenizer) -> list[int]:
    """eos (<|im_end|> for Qwen chat models) plus any other eos ids the model's config lists."""
    ids: list[int] = []
    candidates = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    candidates += cfg_eos if isinstance(cfg_eos, (list, tuple)) else [cfg_eos]
    for tid in candidates:
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    if not ids:
        raise ReproError("tokenizer: no eos token id; cannot tell where a response ends")
    return ids


@contextlib.contextmanager
def _padding_side(tokenizer, side: str) -> Iterator[None]:
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = old


def _generation_config(*, greedy: bool, temperature: float, top_p: float, max_new_tokens: int,
                       stop_ids: list[int], pad_id: int, num_return_sequences: int, repetition_penalty: float):
    from transformers import GenerationConfig

    common = dict(max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=pad_id,
                  num_return_sequences=num_return_sequences, repetition_penalty=repetition_penalty)
    if greedy:
        return GenerationConfig(do_sample=False, temperature=None, top_p=None, top_k=None, **common)
    # top_k None disables the top-k warper (GenerationConfig's own default would be 50).
    return GenerationConfig(do_sample=True, temperature=temperature, top_p=top_p, top_k=None, **common)


def _decode_rows(tokenizer, new_ids: torch.Tensor, stop_ids: list[int], prompts: Sequence[str],
                 samples: Sequence[int]) -> list[dict]:
    rows = []
    stop = set(stop_ids)
    for seq, prompt, sample in zip(new_ids.tolist(), prompts, samples):
        cut = next((j for j, t in enumerate(seq) if t in stop), None)
        content = seq if cut is None else seq[:cut]
        rows.append({
            "prompt": prompt,
            "sample": sample,
            "response": tokenizer.decode(content, skip_special_tokens=True),
            "n_tokens": len(content),
            "finish_reason": "length" if cut is None else "stop",
        })
    return rows


def _check_args(prompts, greedy: bool, samples: int, max_new_tokens: int, batch_size: int) -> None:
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        raise ReproError("prompts: expected a list of strings")
    if samples < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ReproError(f"generation: samples, max_new_tokens and batch_size must be >= 1 "
                         f"(got {samples}, {max_new_tokens}, {batch_size})")
    if greedy and samples != 1:
        raise ReproError(f"samples: greedy decoding gives one response per prompt, got samples={samples}")


def generate_responses(model, tokenizer, prompts: list[str], *, chat_template: bool = True, greedy: bool = True,
                       samples: int = 1, temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int,
                       batch_size: int, seed: int, repetition_penalty: float = 1.0,
                       progress: bool = True) -> list[dict]:
    """Generate responses with HF `generate`; rows in prompt order (then sample order)."""
    _check_args(prompts, greedy, samples, max_new_tokens, batch_size)
    stop_ids = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    device = next(model.parameters()).device
    texts = [format_prompt(tokenizer, p, chat_template) for p in prompts]
    rows: list[dict] = []

    def run(batch_texts: list[str], n_return: int) -> torch.Tensor:
        with _padding_side(tokenizer, "left"):
            # Chat templates already contain their special tokens (BOS if any); raw prompts are
            # tokenised as `tokenizer(text)` would (Qwen adds nothing either way).
            enc = tokenizer(batch_texts, return_tensors="pt", padding=True,
                            add_special_tokens=not chat_template).to(device)
        cfg = _generation_config(greedy=greedy, temperature=temperature, top_p=top_p,
                                 max_new_tokens=max_new_tokens, stop_ids=stop_ids, pad_id=pad_id,
                                 num_return_sequences=n_return, repetition_penalty=repetition_penalty)
        with torch.inference_mode():
            # Only ids + mask: some tokenizers also emit token_type_ids, which generate rejects.
            out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                 generation_config=cfg, use_model_defaults=False)
        return out[:, enc["input_ids"].shape[1]:].cpu()

    if greedy:
        # Sort by length so each left-padded batch wastes little; rows are put back in order.
        order = sorted(range(len(texts)), key=lambda i: len(tokenizer(texts[i]).input_ids))
        by_index: dict[int, dict] = {}
        for start in tqdm(range(0, len(order), batch_size), desc="generate", disable=None if progress else True):
            idx = order[start:start + batch_size]
            new_ids = run([texts[i] for i in idx], 1)
            for i, row in zip(idx, _decode_rows(tokenizer, new_ids, stop_ids, [prompts[i] for i in idx], [0] * len(idx))):
                by_index[i] = row
        return [by_index[i] for i in range(len(texts))]

    bar = tqdm(total=len(texts) * samples, desc="sample", disable=None if progress else True)
    for i, (prompt, text) in enumerate(zip(prompts, texts)):
        torch.manual_seed(seed + i)  # per-prompt stream: see module docstring
        done = 0
        while done < samples:
            n = min(batch_size, samples - done)
            new_ids = run([text], n)
            rows += _decode_rows(tokenizer, new_ids, stop_ids, [prompt] * n, range(done, done + n))
            done += n
            bar.update(n)
    bar.close()
    return rows


def generate_responses_vllm(model_path: str, prompts: list[str], *, adapter: str | None = None,
                            chat_template: bool = True, greedy: bool = True, samples: int = 1,
                            temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int, seed: int,
                            repetition_penalty: float = 1.0, max_lora_rank: int = 64,
                            dtype: str = "bfloat16", progress: bool = True) -> list[dict]:
    """Same rows as generate_responses, via vLLM (GPU; for large sample counts).

    vLLM seeds each request from SamplingParams.seed; prompt i uses seed + i, as the HF path.
    """
    _check_args(prompts, greedy, samples, max_new_tokens, 1)
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise ReproError("backend vllm: the vllm package is not installed (use backend 'hf' or the GPU image)") from None
    from .models import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    llm = LLM(model=model_path, dtype=dtype, enable_lora=adapter is not None, max_lora_rank=max_lora_rank,
              seed=seed, trust_remote_code=False)
    lora = LoRARequest("adapter", 1, adapter) if adapter is not None else None
    stop_ids = [t for t in dict.fromkeys([tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")])
                if isinstance(t, int) and t != tokenizer.unk_token_id]
    texts = [format_prompt(tokenizer, p, chat_template) for p in prompts]
    params = [
        SamplingParams(n=samples, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p,
                       top_k=-1, max_tokens=max_new_tokens, stop_token_ids=stop_ids, seed=seed + i,
                       repetition_penalty=repetition_penalty, skip_special_tokens=True)
        for i in range(len(texts))
    ]
    outputs = llm.generate(texts, params, lora_request=lora, use_tqdm=progress)
    rows = []
    for prompt, out in zip(prompts, outputs):
        for s, comp in enumerate(out.outputs):
            ids = list(comp.token_ids)
            stopped = comp.finish_reason == "stop"
            if stopped and ids and ids[-1] in stop_ids:
                ids = ids[:-1]
            rows.append({"prompt": prompt, "sample": s, "response": comp.text, "n_tokens": len(ids),
                         "finish_reason": "stop" if stopped else "length"})
    return rows


def generate(backend: str, *, prompts: list[str], model=None, tokenizer=None, model_path: str | None = None,
             adapter: str | None = None, **kwargs) -> list[dict]:
    """Dispatch on the backend name: "hf" needs a loaded model/tokenizer, "vllm" a model path."""
    if backend == "hf":
        if model is None or tokenizer is None:
            raise ReproError("backend hf: expected a loaded model and tokenizer")
        return generate_responses(model, tokenizer, prompts, **kwargs)
    if backend == "vllm":
        if model_path is None:
            raise ReproError("backend vllm: expected model_path (a hub id or local directory)")
        kwargs.pop("batch_size", None)  # vLLM schedules its own batches
        return generate_responses_vllm(model_path, prompts, adapter=adapter, **kwargs)
    raise ReproError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")
