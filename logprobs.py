"""Log-probs of sampled response tokens: what GRPO's ratio, the KL term and the entropy are made of.

token_logprobs(model, input_ids, attention_mask, response_mask, micro_batch_size) -> log pi(y_t | x, y_<t), [B, L],
in the batch layout of grpo.py (prompt left-padded to P, response right-padded; value at column t is about token t).
Only response logits are ever computed. Two exact fast paths sit at the end of the file, each with its equivalence
tests: prompt sharing (a GRPO group's prompt runs once; tests/test_grpo.py) and the chunked LM head for long
responses (memory grows with tokens x hidden size, not x vocabulary; tests/test_chunked.py).
"""

import torch

from distributed import is_sharded, unwrap

# ----------------------------------------------------------------------------------------------------------------------
# Log-probs of the sampled response tokens
# ----------------------------------------------------------------------------------------------------------------------


def token_logprobs(
    model,
    input_ids,
    attention_mask,
    response_mask,
    micro_batch_size: int,
    with_entropy: bool = False,
    temperature: float = 1.0,
    share_prompts: bool = True,
    chunk_size: int | None = None,
):
    """log pi(y_t | x, y_<t) of each realised response token, [B, L], zero off the response.

    Only response logits are computed: the model is called with `logits_to_keep` covering the columns from the first
    response column of the micro-batch on, so no [B, L, V] tensor over the prompt is ever built. log p = gathered
    logit - logsumexp(logits), in float32. Rows are processed `micro_batch_size` at a time; the autograd graph is kept
    when grad is enabled. `temperature` divides the logits, so log-probs are those of the distribution the sampler
    drew from (1.0 = the raw model). share_prompts turns on the fast path at the end of this file (a prompt repeated by
    several rows runs once); the numbers are the same.

    With with_entropy=True also returns the per-token entropy H_t = -sum_v pi(v | .) log pi(v | .), [B, L].

    chunk_size=k (long responses): the [b, R, V] logits tensor is never built. The LM head runs over k response
    positions at a time and its backward recomputes each chunk's logits, so memory grows with tokens x hidden size,
    not tokens x vocabulary (the last section of this file). Same numbers to float rounding; None = one logits tensor.

    Example: a 1-token response whose token has probability 0.25 under the model gives logprobs[0, P] = log 0.25.
    """
    lps, ents = [], []
    for start in range(0, input_ids.shape[0], micro_batch_size):
        rows = slice(start, start + micro_batch_size)
        lp, ent = _logprobs_one_micro_batch(
            model,
            input_ids[rows],
            attention_mask[rows],
            response_mask[rows],
            with_entropy,
            temperature,
            share_prompts,
            chunk_size,
        )
        lps.append(lp)
        ents.append(ent)
    logprobs = torch.cat(lps, dim=0)  # [B, L]
    if with_entropy:
        return logprobs, torch.cat(ents, dim=0)  # [B, L], [B, L]
    return logprobs


def _logprobs_one_micro_batch(
    model, input_ids, attention_mask, response_mask, with_entropy, temperature, share_prompts, chunk_size=None
):
    """token_logprobs for one micro-batch (see there). Returns (logprobs [b, L], entropy [b, L] or None).

    A micro-batch without any response token (every rollout dropped) still runs the model, on its last two columns:
    its log-probs are all 0 and its loss contributes a zero gradient, and every data-parallel rank makes the same
    forward/backward calls whatever its rows hold (distributed.py).
    """
    b, L = input_ids.shape
    in_response = response_mask.bool().any(dim=0)  # [L]
    p0 = int(in_response.nonzero()[0]) if in_response.any() else L - 1  # first response column of this micro-batch
    if p0 == 0:
        raise ValueError("token_logprobs: a response token at column 0 has no prompt to be predicted from")
    # Positions as generate() assigns them under left padding: the first real token is position 0.
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # [b, L]
    share = share_prompts and bool(in_response.any()) and can_share_prompts(model)
    keep = response_mask[:, p0:].bool()  # [b, L - p0]
    if chunk_size is None:
        logits = _response_logits(model, input_ids, attention_mask, position_ids, p0, share).float()  # [b, L - p0, V]
        lp, h = _response_stats(logits, input_ids[:, p0:], keep, temperature, with_entropy)  # [b, L - p0] each
    else:
        lp, h = _chunked_response_stats(
            model, input_ids, attention_mask, position_ids, keep, p0, share, temperature, with_entropy, chunk_size
        )  # [b, L - p0] each
    prompt_zeros = torch.zeros(b, p0, dtype=torch.float32, device=input_ids.device)  # [b, p0]
    logprobs = torch.cat([prompt_zeros, lp], dim=1)  # [b, L]
    entropy = torch.cat([prompt_zeros, h], dim=1) if with_entropy else None  # [b, L]
    return logprobs, entropy


def _response_stats(logits, targets, keep, temperature, with_entropy):
    """log p of each target and the entropy H from float32 logits [b, n, V]; (lp [b, n], H [b, n] or None), 0 where
    keep [b, n] is False."""
    if temperature != 1.0:
        logits = logits / temperature  # the distribution the sampler drew from
    log_z = torch.logsumexp(logits, dim=-1)  # [b, n]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [b, n]
    # torch.where (not multiplication) so that anything odd at padded columns cannot leak as NaN.
    lp = torch.where(keep, picked - log_z, torch.zeros_like(log_z))  # [b, n]
    if not with_entropy:
        return lp, None
    # H = -sum_v p_v log p_v = log Z - sum_v p_v z_v
    h = log_z - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)  # [b, n]
    return lp, torch.where(keep, h, torch.zeros_like(h))


def _response_logits(model, input_ids, attention_mask, position_ids, p0: int, share_prompts: bool):
    """Logits predicting columns p0 .. L - 1 (the response tokens), [b, L - p0, V]."""
    L = input_ids.shape[1]
    shared = prefill_distinct_prompts(model, input_ids[:, :p0], attention_mask[:, :p0]) if share_prompts else None
    if shared is None:
        # The token at column t is predicted by the logits at column t - 1, so columns p0 - 1 .. L - 2 are needed; the
        # model keeps the LAST k columns, i.e. p0 - 1 .. L - 1, and the final one (predicting past the end) is dropped.
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=L - p0 + 1,
            use_cache=False,
        )
        return out.logits[:, :-1, :]
    # Fast path: the prompts ran once each (columns < p0); only the response columns run per row.
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
# Fast path: a GRPO group's prompt runs once (token_logprobs and rollout.HFSampler)
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


# ----------------------------------------------------------------------------------------------------------------------
# Long responses: the LM head in chunks (token_logprobs(..., chunk_size=k))
# ----------------------------------------------------------------------------------------------------------------------
# At 16,384 response tokens and a 151,936-token vocabulary, one row's float32 logits take 10 GB, and the log-softmax,
# the entropy and their gradients several times that. Here the model runs ONE ordinary forward call (through its DDP or
# FSDP2 wrapper, so their hooks and all-gathers happen as always) in which forward hooks on the LM head take the final
# hidden states [b, n, H] and make the head return (log p, entropy) per position, [b, n, 2], computed k positions at a
# time by _ChunkedHead, which keeps no logits for backward and recomputes them there, chunk by chunk.


def _chunked_response_stats(
    model, input_ids, attention_mask, position_ids, keep, p0, share, temperature, with_entropy, chunk_size
):
    """What `_response_stats(_response_logits(...))` returns, without a [b, L - p0, V] tensor: (lp, entropy or None)."""
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
        lp0, h0 = _response_stats(first.float(), targets[:, :1], keep[:, :1], temperature, with_entropy)  # [b, 1]
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
        stats = torch.cat([torch.stack([lp0, h0 if with_entropy else torch.zeros_like(lp0)], dim=-1), rest], dim=1)
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
            log_z = torch.logsumexp(z, dim=-1)  # [k]
            lp[s : s + chunk_size] = z.gather(-1, targets[s : s + chunk_size, None]).squeeze(-1) - log_z
            if with_entropy:
                ent[s : s + chunk_size] = log_z - (torch.softmax(z, dim=-1) * z).sum(dim=-1)
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
    """z = (h W^T + b) / T in float32, [k, V], as the head and _response_stats compute it."""
    z = torch.nn.functional.linear(h, weight, bias).float()  # [k, V]
    return z / temperature if temperature != 1.0 else z
