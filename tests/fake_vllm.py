"""A stand-in for the `vllm` package (GPU image only), injected into sys.modules by tests.

It records what the code under test hands to vLLM (LLM engine arguments, LoRARequest, each
SamplingParams, the prompts and the lora_request of every generate call) and answers every
prompt with token ids that depend only on the request's seed and sample index, as vLLM's per-request
seeded sampler would: even seeds stop on the tokenizer's eos, odd seeds hit max_tokens.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field


@dataclass
class Record:
    llm: list = field(default_factory=list)          # LLM(**kwargs) of every engine built
    lora: list = field(default_factory=list)         # LoRARequest(*args) of every request built
    calls: list = field(default_factory=list)        # {"prompts", "params", "lora_request", "use_tqdm"}


def install(monkeypatch, tokenizer) -> Record:
    """Put a fake vllm (+ vllm.lora.request) into sys.modules for this test; returns the record."""
    rec = Record()

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.n = kwargs.get("n", 1)

    class LoRARequest:
        def __init__(self, *args, **kwargs):
            assert not kwargs, "LoRARequest is built positionally (lora_name, lora_int_id, lora_path)"
            self.args = args
            rec.lora.append(args)

    class Completion:
        def __init__(self, index, token_ids, finish_reason):
            self.index, self.token_ids, self.finish_reason = index, token_ids, finish_reason
            self.text = "vLLM's own detokenisation (never read)"

    class RequestOutput:
        def __init__(self, outputs):
            self.outputs = outputs

    class LLM:
        def __init__(self, **kwargs):
            rec.llm.append(kwargs)

        def generate(self, prompts, sampling_params, *, use_tqdm=True, lora_request=None):
            rec.calls.append({"prompts": prompts, "params": sampling_params, "lora_request": lora_request,
                              "use_tqdm": use_tqdm})
            assert len(prompts) == len(sampling_params)
            outs = []
            for prompt, sp in zip(prompts, sampling_params):
                assert set(prompt) == {"prompt_token_ids"}
                comps = []
                for j in reversed(range(sp.n)):   # out of order: the code must sort by index
                    seed = sp.kwargs["seed"]
                    ids = tokenizer(f"answer {seed} {j}", add_special_tokens=False).input_ids[: sp.kwargs["max_tokens"]]
                    stop = seed % 2 == 0
                    comps.append(Completion(j, ids + [tokenizer.eos_token_id] if stop else ids, "stop" if stop else "length"))
                outs.append(RequestOutput(comps))
            return outs

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    lora.request = request
    vllm.lora = lora
    for name, mod in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    return rec


def expected_answer(tokenizer, seed: int, sample: int, max_tokens: int) -> tuple[str, int, str]:
    """(response, n_tokens, finish_reason) the fake gives for a request seed and sample index."""
    ids = tokenizer(f"answer {seed} {sample}", add_special_tokens=False).input_ids[:max_tokens]
    return tokenizer.decode(ids, skip_special_tokens=True), len(ids), "stop" if seed % 2 == 0 else "length"
