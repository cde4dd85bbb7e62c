"""Prompt-only sampling: the policy sees the question, never the reference (docs/paper.md, "Policy prompt").

Two engines with one interface, `sampler.sample(prompt_ids, n) -> list[Rollout]` (n rollouts per prompt, ordered group
by group, so rollouts[i * n : (i + 1) * n] belong to prompt i, the layout `advantages.group_advantages` expects), and
`sampler.update_weights(model)` after each update:

- `HFSampler` (here): Hugging Face `generate` on the training model itself; runs everywhere (CPU CI included); the
  default.
- `VLLMSampler` (scale/vllm_engine.py): in-process vLLM (GPU; fast), whose `update_weights` pushes the trainer's
  weights in.

`to_batch` turns rollouts into the padded [B, L] tensors that grpo.py trains on.
"""

from dataclasses import dataclass

import torch


@dataclass
class Rollout:
    """One sampled response. `response_ids` ends with EOS unless `truncated` (hit the length limit first)."""

    prompt_ids: list[int]
    response_ids: list[int]
    text: str  # decoded response, special tokens removed
    truncated: bool


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
            shared = None
            if self.share_prompts and input_ids.shape[1] > 1:  # the fast path, scale/logprobs_fast.py: loaded when used
                from scale.logprobs_fast import prefill_distinct_prompts

                shared = prefill_distinct_prompts(self.model, input_ids[:, :-1], attention_mask[:, :-1])
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

    def update_weights(self, model) -> None:
        """Nothing to do: `generate` runs on the training model itself, so it always has the newest weights."""
