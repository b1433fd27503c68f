"""Response generation for the behaviour stage (and natural elicitation).

Backends
- "hf" (default): transformers `generate`, batched with LEFT padding.
- "vllm" (optional, GPU image): same output rows; imported lazily, LoRA adapters via LoRARequest
  (VLLMGenerator). vLLM and HF answers need not match token for token.
The answers stage (repro/stages/answers.py) opens one generator per model (open_generator) and
asks it for every prompt set; nothing else generates answers.

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
import json
import os
from pathlib import Path
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


# vLLM's max_lora_rank must be one of these (vllm 0.11.2 vllm/config/lora.py; 0.8.5/0.11.0 lack 1)
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_lora_rank(adapter_dir: str | Path) -> int:
    """The smallest rank vLLM accepts that holds the adapter's own `r` (adapter_config.json)."""
    cfg_path = Path(adapter_dir) / "adapter_config.json"
    try:
        r = int(json.loads(cfg_path.read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReproError(f"{cfg_path}: cannot read the LoRA rank 'r' ({type(exc).__name__})") from None
    for rank in VLLM_LORA_RANKS:
        if rank >= r:
            return rank
    raise ReproError(f"{cfg_path}: r = {r} is above vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}")


def _local_adapter(adapter: str) -> str:
    """vLLM reads a LoRA adapter from a directory: a hub adapter pinned as `org/name@<commit>` is
    downloaded at that commit first (vLLM's own hub lookup would take the current main)."""
    from .hubref import hub_ref

    adapter_id, revision = hub_ref(adapter)
    if Path(adapter_id).is_dir():
        return adapter_id
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id=adapter_id, revision=revision)
    except Exception as exc:  # offline, unknown repo or commit: huggingface_hub raises several types
        raise ReproError(f"adapter {adapter!r}: cannot download for vLLM ({type(exc).__name__})") from None


class HFGenerator:
    """Answers from a loaded transformers model (`generate_responses`)."""

    backend = "hf"

    def __init__(self, model, tokenizer, progress: bool = True):
        self.model, self.tokenizer, self.progress = model, tokenizer, progress

    def generate(self, prompts: list[str], **decoding) -> list[dict]:
        return generate_responses(self.model, self.tokenizer, prompts, progress=self.progress, **decoding)


class VLLMGenerator:
    """Answers from vLLM (GPU image only): one engine per model, built on the first call, the
    same rows as HFGenerator.

    The same inputs as the HF path: the prompt is formatted with the same HF tokenizer and chat
    template (format_prompt) and handed to vLLM as token ids, tokenised exactly as the HF path does;
    the answer is decoded from vLLM's token ids with that tokenizer. Decoding is stated in full
    (SamplingParams leaves no field to the model's generation_config); prompt i is seeded seed + i
    with SamplingParams(seed=...), its n samples drawn from that one stream. A LoRA adapter goes
    through vLLM's LoRA request API (enable_lora, max_lora_rank from the adapter's r, LoRARequest).
    vLLM's answers need not match HF's token for token (other kernels, batching and sampler).
    """

    backend = "vllm"

    def __init__(self, model_path: str, *, adapter: str | None = None, dtype: str = "bfloat16", seed: int = 0,
                 progress: bool = True):
        self.model_path, self.adapter, self.dtype, self.seed, self.progress = model_path, adapter, dtype, seed, progress
        self._llm = self._lora = self._params = None
        self.tokenizer = None

    def _engine(self):
        if self._llm is not None:
            return self._llm
        # vLLM's docs: V1 offline runs are reproducible only without its engine subprocess
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise ReproError("behavior.backend vllm: the vllm package is not installed; run in the GPU image "
                             "(docker/Dockerfile.gpu) or set behavior.backend: hf") from None
        from .hubref import hub_ref
        from .models import load_tokenizer

        self.tokenizer = load_tokenizer(self.model_path)
        repo, revision = hub_ref(self.model_path)
        kwargs = dict(model=repo, revision=revision, tokenizer_revision=revision, dtype=self.dtype, seed=self.seed,
                      trust_remote_code=False)
        if self.adapter is not None:
            local = _local_adapter(self.adapter)
            kwargs.update(enable_lora=True, max_lora_rank=vllm_lora_rank(local), max_loras=1)
            self._lora = LoRARequest("adapter", 1, local)   # positional: lora_name, lora_int_id (>= 1), lora_path
        self._llm, self._params = LLM(**kwargs), SamplingParams
        return self._llm

    def generate(self, prompts: list[str], *, chat_template: bool = True, greedy: bool = True, samples: int = 1,
                 temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int, batch_size: int = 1, seed: int,
                 repetition_penalty: float = 1.0) -> list[dict]:
        _check_args(prompts, greedy, samples, max_new_tokens, batch_size)   # batch_size: vLLM schedules its own
        llm = self._engine()
        tok = self.tokenizer
        stop_ids = [t for t in dict.fromkeys([tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")])
                    if isinstance(t, int) and t >= 0 and t != tok.unk_token_id]
        inputs = [{"prompt_token_ids": tok(format_prompt(tok, p, chat_template),
                                           add_special_tokens=not chat_template).input_ids} for p in prompts]
        params = [self._params(n=samples, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p,
                               max_tokens=max_new_tokens, seed=seed + i, stop_token_ids=stop_ids,
                               repetition_penalty=repetition_penalty, skip_special_tokens=True)
                  for i in range(len(prompts))]
        outputs = llm.generate(inputs, params, lora_request=self._lora, use_tqdm=self.progress)
        if len(outputs) != len(prompts):
            raise ReproError(f"backend vllm: {len(outputs)} outputs for {len(prompts)} prompts")
        special = set(getattr(tok, "all_special_ids", [])) | set(stop_ids)
        rows = []
        for prompt, out in zip(prompts, outputs):
            comps = sorted(out.outputs, key=lambda c: getattr(c, "index", 0))
            if len(comps) != samples:
                raise ReproError(f"backend vllm: {len(comps)} completions for one prompt, expected {samples}")
            for s, comp in enumerate(comps):
                ids = list(comp.token_ids)
                stopped = comp.finish_reason == "stop"
                if stopped and ids and ids[-1] in special:   # the stop token is not part of the answer
                    ids = ids[:-1]
                rows.append({"prompt": prompt, "sample": s, "response": tok.decode(ids, skip_special_tokens=True),
                             "n_tokens": len(ids), "finish_reason": "stop" if stopped else "length"})
        return rows


def open_generator(backend: str, *, model_path: str, adapter: str | None = None, dtype: str = "float32",
                   seed: int = 0, progress: bool = True):
    """The generator of one model for backend "hf" (loads it with transformers now) or "vllm"
    (builds the engine on the first call; never imported unless asked for)."""
    if backend == "hf":
        from .models import load_model, load_tokenizer

        return HFGenerator(load_model(model_path, adapter=adapter, dtype=dtype), load_tokenizer(model_path), progress)
    if backend == "vllm":
        return VLLMGenerator(model_path, adapter=adapter, dtype=dtype, seed=seed, progress=progress)
    raise ReproError(f"behavior.backend: expected one of {list(BACKENDS)}, got {backend!r}")


def generate_responses_vllm(model_path: str, prompts: list[str], *, adapter: str | None = None,
                            dtype: str = "bfloat16", seed: int, progress: bool = True, **decoding) -> list[dict]:
    """Same rows as generate_responses, via vLLM, in one call (VLLMGenerator; prompt i seeded seed + i)."""
    gen = VLLMGenerator(model_path, adapter=adapter, dtype=dtype, seed=seed, progress=progress)
    return gen.generate(prompts, seed=seed, **decoding)


def generate(backend: str, *, prompts: list[str], model=None, tokenizer=None, model_path: str | None = None,
             adapter: str | None = None, **kwargs) -> list[dict]:
    """One call, dispatched on the backend name: "hf" needs a loaded model/tokenizer, "vllm" a model path."""
    if backend == "hf":
        if model is None or tokenizer is None:
            raise ReproError("backend hf: expected a loaded model and tokenizer")
        return generate_responses(model, tokenizer, prompts, **kwargs)
    if backend == "vllm":
        if model_path is None:
            raise ReproError("backend vllm: expected model_path (a hub id or local directory)")
        return generate_responses_vllm(model_path, prompts, adapter=adapter, **kwargs)
    raise ReproError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")
