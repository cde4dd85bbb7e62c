"""The exact fast paths of logprobs.token_logprobs, each behind the same call and each with its equivalence tests.

- Prompt sharing (on by default): a GRPO group is one prompt repeated G times; the prompt runs once and its KV cache
  is copied to the G rows (`prefill_distinct_prompts`, also used by rollout.HFSampler). Same numbers to float rounding
  (tests/test_grpo.py).
- The chunked LM head (`token_logprobs(..., chunk_size=k)`, long responses): the [b, R, V] logits tensor is never
  built, so memory grows with tokens x hidden size, not tokens x vocabulary (tests/test_chunked.py).

A reader of the method can skip this file: logprobs.py computes the same numbers with one forward and one logits tensor.
"""

import torch

from scale.distributed import is_sharded, unwrap

# ----------------------------------------------------------------------------------------------------------------------
# A GRPO group's prompt runs once (token_logprobs and rollout.HFSampler)
# ----------------------------------------------------------------------------------------------------------------------


def prefill_distinct_prompts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 1):
    """Run each DISTINCT row of a left-padded prompt batch (input_ids, attention_mask: [b, P]) through the model once
    and copy its KV cache to every row that has it. Returns (cache over all b rows, logits [b, logits_to_keep, V]),
    or None when no row repeats (nothing to save).

    A GRPO group is one prompt repeated G times, so this reads 8 prompts, not 64, for 8 prompts x 8 rollouts; the
    response columns then run per row on top of the copied cache. Same numbers as one forward over [b, L] (to float
    rounding; tests/test_grpo.py), ~(G - 1) / G of the prompt work saved: on the toy workload (~28 prompt and ~80
    response columns) a forward + backward ~15% cheaper. `reorder_cache` copies keys/values with index_select, which
    autograd differentiates: under grad, each row's gradient flows back into its shared prompt. Position ids follow the
    attention mask, as in `generate`.
    """
    b, P = input_ids.shape
    rows = torch.cat([input_ids, attention_mask.to(input_ids.dtype)], dim=1)  # [b, 2P]
    unique_rows, row_to_prompt = torch.unique(rows, dim=0, return_inverse=True)  # [u, 2P], [b]
    if unique_rows.shape[0] == b:
        return None
    ids, mask = unique_rows[:, :P], unique_rows[:, P:]  # [u, P] each
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0),
        use_cache=True,
        logits_to_keep=logits_to_keep,
    )
    out.past_key_values.reorder_cache(row_to_prompt)  # [u, ...] -> [b, ...] in every layer
    return out.past_key_values, out.logits[row_to_prompt]


def can_share_prompts(model) -> bool:
    """Prompt sharing runs two forwards per micro-batch through a KV cache: not under FSDP2 (every rank must make the
    same forward calls, but ranks differ in whether their micro-batch repeats a prompt) nor with gradient checkpointing
    (transformers turns the cache off while training with it)."""
    return not is_sharded(model) and not getattr(unwrap(model), "is_gradient_checkpointing", False)


def shared_prompt_logits(model, input_ids, attention_mask, position_ids, p0: int):
    """The logits predicting columns p0 .. L - 1 (the response tokens), [b, L - p0, V], with each distinct prompt
    (columns < p0) run once; None when no row repeats a prompt (then the plain forward of logprobs.py runs)."""
    shared = prefill_distinct_prompts(model, input_ids[:, :p0], attention_mask[:, :p0])
    if shared is None:
        return None
    cache, first = shared  # first [b, 1, V]: the last prompt column predicts the first response token
    out = model(
        input_ids=input_ids[:, p0:],
        attention_mask=attention_mask,
        position_ids=position_ids[:, p0:],
        past_key_values=cache,
        use_cache=True,
    )
    return torch.cat([first, out.logits[:, :-1, :]], dim=1)  # [b, L - p0, V]


# ----------------------------------------------------------------------------------------------------------------------
# Long responses: the LM head in chunks (token_logprobs(..., chunk_size=k))
# ----------------------------------------------------------------------------------------------------------------------
# At 16,384 response tokens and a 151,936-token vocabulary, one row's float32 logits take 10 GB, and the log-softmax,
# the entropy and their gradients several times that. Here the model runs ONE ordinary forward call (through its DDP or
# FSDP2 wrapper, so their hooks and all-gathers happen as always) in which forward hooks on the LM head take the final
# hidden states [b, n, H] and make the head return (log p, entropy) per position, [b, n, 2], computed k positions at a
# time by _ChunkedHead, which keeps no logits for backward and recomputes them there, chunk by chunk.


def chunked_response_stats(
    model, input_ids, attention_mask, position_ids, keep, p0, share, temperature, with_entropy, chunk_size
):
    """What logprobs.response_stats(logits) returns for the response columns p0 .. L - 1, without a [b, L - p0, V]
    logits tensor: (lp [b, L - p0], entropy [b, L - p0] or None), 0 where keep is False."""
    if chunk_size < 1:
        raise ValueError(f"token_logprobs: chunk_size must be >= 1 or None, got {chunk_size}")
    if getattr(unwrap(model).config, "final_logit_softcapping", None) is not None:
        raise ValueError(
            f"token_logprobs: chunk_size is not supported for {type(unwrap(model)).__name__}, whose "
            "config.final_logit_softcapping transforms the logits after the LM head; use chunk_size=None"
        )
    L = input_ids.shape[1]
    targets = input_ids[:, p0:]  # [b, m], m = L - p0
    head = (temperature, with_entropy, chunk_size)
    shared = prefill_distinct_prompts(model, input_ids[:, :p0], attention_mask[:, :p0]) if share else None
    if shared is None:
        # The head sees columns p0 - 1 .. L - 1 and scores the first m of them (column t - 1 predicts token t).
        stats = _stats_from_head(
            model,
            targets,
            keep,
            *head,
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=L - p0 + 1,
            use_cache=False,
        )  # [b, m, 2]
    else:
        # Prompt sharing: the last prompt column's logits [b, 1, V] score the first response token (one column: no
        # chunks needed); the response columns run on the shared cache, column p0 + j predicting token p0 + j + 1.
        cache, first = shared
        lp0, h0 = _log_p_and_entropy(_scaled(first.float(), temperature), targets[:, :1], with_entropy)  # [b, 1]
        lp0, h0 = (torch.where(keep[:, :1], x, torch.zeros_like(x)) for x in (lp0, h0))
        rest = _stats_from_head(
            model,
            targets[:, 1:],
            keep[:, 1:],
            *head,
            input_ids=input_ids[:, p0:],
            attention_mask=attention_mask,
            position_ids=position_ids[:, p0:],
            past_key_values=cache,
            use_cache=True,
        )  # [b, m - 1, 2]
        stats = torch.cat([torch.stack([lp0, h0], dim=-1), rest], dim=1)
    return stats[..., 0], (stats[..., 1] if with_entropy else None)  # [b, m] each


def _stats_from_head(model, targets, keep, temperature, with_entropy, chunk_size, **model_inputs):
    """model(**model_inputs) with forward hooks on its LM head (`get_output_embeddings()`): the head's input is kept
    and replaced by an empty slice (the head itself computes nothing), and its output is replaced by (log p, entropy)
    of `targets` [b, m] at the first m columns: [b, m, 2], 0 where keep [b, m] is False. Only the real response tokens
    (keep) reach _ChunkedHead; padding costs nothing.

    Why inside the model's forward: under DDP the wrapper's forward prepares the gradient all-reduce (calling a
    submodule directly would bypass it); under FSDP2 the root module's forward all-gathers the embedding/LM-head weight
    and registers its backward hooks on the model's outputs. So the head's weight is read where the model reads it,
    and the stats leave as the model's `logits`. A model that changes its logits after the head (a logit scale, a soft
    cap) would change the stats: the returned `logits` must equal what the hook produced, or this is an error.
    """
    box = {}

    def take_input(module, args):
        box["hidden"] = args[0]  # [b, n, H] final hidden states (after the last norm)
        return (args[0][:, :0],)  # [b, 0, H]

    def give_stats(module, args, output):
        hidden = box.pop("hidden")[:, : targets.shape[1]]  # [b, m, H]
        lp, ent = _ChunkedHead.apply(
            hidden[keep], module.weight, module.bias, targets[keep], temperature, with_entropy, chunk_size
        )  # [N] each, N = real response tokens
        stats = torch.zeros(*keep.shape, 2, dtype=torch.float32, device=hidden.device)  # [b, m, 2]
        box["stats"] = stats.index_put((keep,), torch.stack([lp, ent], dim=-1))
        return box["stats"]

    head = unwrap(model).get_output_embeddings()
    if head is None:
        raise ValueError(f"token_logprobs: chunk_size needs an LM head module; {type(unwrap(model)).__name__} has none")
    handles = [head.register_forward_pre_hook(take_input), head.register_forward_hook(give_stats)]
    try:
        logits = model(**model_inputs).logits
    finally:
        for handle in handles:
            handle.remove()
    if "stats" not in box or logits.shape != box["stats"].shape or not torch.equal(logits, box["stats"]):
        raise ValueError(
            f"token_logprobs: chunk_size is not supported for {type(unwrap(model)).__name__}: its forward "
            "does not return the LM head's output unchanged; use chunk_size=None"
        )
    return logits  # the tensor the model returned: FSDP2's backward hooks sit on it


class _ChunkedHead(torch.autograd.Function):
    """(log p(y_i), entropy E_i) for N positions from hidden states h [N, H] and the LM head W [V, H] (+ bias [V]),
    k rows at a time; saves only h, W and y for backward, which recomputes each chunk's logits.

    Per chunk, z = (h W^T + b) / T in float32 (T the temperature), log p = z - logsumexp(z), p = exp(log p):
        lp_i = log p_{i, y_i}                  d lp_i / d z_iv = [v = y_i] - p_iv
        E_i  = -sum_v p_iv log p_iv            d E_i / d z_iv  = -p_iv (log p_iv + E_i)
    so the logits' gradient is g_z = g_lp ([v = y] - p) - g_E p (log p + E), divided by T; then dL/dh = g_z W and
    dL/dW = g_z^T h, each chunk's product added to a float32 sum (rounded to W's dtype once, at the end).

    Example: one position, V = 2, z = (0, 0): p = (1/2, 1/2), lp = log 1/2, E = log 2; with g_lp = 1 and y = 0,
    g_z = (1 - 1/2, 0 - 1/2) = (1/2, -1/2). With g_E = 1 instead: log p + E = 0 for both, so g_z = (0, 0)
    (the uniform distribution is the entropy's maximum).
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, temperature, with_entropy, chunk_size):
        lp = torch.zeros(h.shape[0], dtype=torch.float32, device=h.device)  # [N]
        ent = torch.zeros_like(lp)  # [N]; stays 0 without with_entropy
        for s in range(0, h.shape[0], chunk_size):
            z = _chunk_logits(h[s : s + chunk_size], weight, bias, temperature)  # [k, V]
            lp[s : s + chunk_size], ent[s : s + chunk_size] = _log_p_and_entropy(
                z, targets[s : s + chunk_size], with_entropy
            )
        ctx.save_for_backward(h, weight, bias, targets)
        ctx.temperature, ctx.with_entropy, ctx.chunk_size = temperature, with_entropy, chunk_size
        return lp, ent

    @staticmethod
    def backward(ctx, g_lp, g_ent):
        h, weight, bias, targets = ctx.saved_tensors
        k = ctx.chunk_size
        grad_h = torch.empty_like(h)  # [N, H]
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)  # [V, H] the float32 sum
        product = torch.empty_like(weight)  # [V, H] one chunk's g_z^T h, reused (no new [V, H] tensor per chunk)
        grad_b = None if bias is None else torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)  # [V]
        for s in range(0, h.shape[0], k):
            log_p = _chunk_logits(h[s : s + k], weight, bias, ctx.temperature)  # [k, V] recomputed z ...
            log_p -= torch.logsumexp(log_p, dim=-1, keepdim=True)  # ... -> log p, in place
            p = log_p.exp()  # [k, V]
            g_z = p * -g_lp[s : s + k, None]  # [k, V]: -g_lp p ...
            g_z.scatter_add_(-1, targets[s : s + k, None], g_lp[s : s + k, None])  # ... + g_lp [v = y]
            if ctx.with_entropy:
                ent = -(p.unsqueeze(1) @ log_p.unsqueeze(2)).squeeze(2)  # [k, 1] E = -sum_v p log p, no [k, V] temp
                g_z -= log_p.add_(ent).mul_(p).mul_(g_ent[s : s + k, None])  # - g_E p (log p + E), in place
            del log_p, p
            if ctx.temperature != 1.0:
                g_z /= ctx.temperature
            g_z = g_z.to(weight.dtype)
            grad_h[s : s + k] = g_z @ weight  # [k, H]
            grad_w += torch.mm(g_z.T, h[s : s + k], out=product)  # [V, H]
            if grad_b is not None:
                grad_b += g_z.sum(dim=0, dtype=torch.float32)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h, product.copy_(grad_w), grad_b, None, None, None, None


def _chunk_logits(h, weight, bias, temperature):
    """z = (h W^T + b) / T in float32, [k, V], as the head and logprobs.response_stats compute it."""
    return _scaled(torch.nn.functional.linear(h, weight, bias).float(), temperature)  # [k, V]


def _scaled(logits, temperature):
    return logits / temperature if temperature != 1.0 else logits


def _log_p_and_entropy(z, targets, with_entropy):
    """(log p of each target, entropy or zeros) from float32 logits z [..., V], the arithmetic of
    logprobs.response_stats: log p = z_y - logsumexp(z), H = logsumexp(z) - sum_v p_v z_v."""
    log_z = torch.logsumexp(z, dim=-1)  # [...]
    lp = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z  # [...]
    if not with_entropy:
        return lp, torch.zeros_like(lp)
    return lp, log_z - (torch.softmax(z, dim=-1) * z).sum(dim=-1)
