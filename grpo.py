"""GRPO update for ExpRL: response log-probs, the clipped policy loss, k3 KL to the frozen base, one optimiser step.

Batch layout used across the project (B rows, L = P + R columns):

    input_ids       [B, L]  prompt LEFT-padded to length P, then the response RIGHT-padded to length R
    attention_mask  [B, L]  1 on real tokens (prompt and response), 0 on padding
    response_mask   [B, L]  1 on real response tokens (columns >= P that are not padding), 0 elsewhere
    advantages      [B, L]  A for the token input_ids[b, t]; 0 off the response

Per-token tensors (log-probs, advantages, entropies) are aligned with input_ids: the value at column t is about the
token input_ids[b, t], predicted from columns < t. Everything is zero where response_mask is 0.

The loss follows PAPER.md ("Optimiser"): PPO clip with decoupled bounds (0.2 / 0.28), dual clip c = 3 for negative
advantages, k3 ("low_var_kl") KL to the frozen base in the loss, token-mean over all tokens of the mini-batch.
"""

import math
from dataclasses import dataclass

import torch

from distributed import is_sharded, unwrap

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


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
# Loss
# ----------------------------------------------------------------------------------------------------------------------


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) from tokens sampled from pi ("low_var_kl" in PAPER.md).

    k3 = exp(ref - lp) - (ref - lp) - 1 >= 0 (Schulman, "Approximating KL divergence"); unbiased, low variance.
    As in the authors' code (verl's "low_var_kl"): the log-ratio is clamped to [-20, 20] so one extreme token cannot
    overflow exp(), and k3 itself to [-10, 10], so a token the base finds far likelier than the policy adds at most 10
    to the loss and no gradient (the clamp's gradient is 0 there).

    Example: lp = 0, ref = log 0.5 -> 0.5 - log 0.5 - 1 = log 2 - 0.5 ~= 0.1931; lp = 0, ref = 3 -> e^3 - 4 = 16.09,
    clamped to 10.
        >>> kl_k3(torch.tensor([0.0, 0.0]), torch.tensor([math.log(0.5), 3.0]))
        tensor([ 0.1931, 10.0000])
    """
    log_ratio = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
    return (torch.exp(log_ratio) - log_ratio - 1.0).clamp(-10.0, 10.0)


def _masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, torch.zeros_like(x)).sum()


def aggregation_denominator(mask: torch.Tensor, agg: str, norm_length: int | None = None) -> int:
    """What an aggregation divides by: masked tokens ("token-mean"), rows with >= 1 masked token
    ("seq-mean-token-mean"), or the constant norm_length (default L) for "seq-mean-token-sum-norm" (0 if no token).

    grpo_step scales each micro-batch's loss by (its denominator / the batch's), so gradients add up exactly.
    Example: mask [[1, 1, 0], [1, 0, 0]] -> token-mean 3, seq-mean-token-mean 2, seq-mean-token-sum-norm 3 (= L).
    """
    if agg not in AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {agg!r}; valid: {', '.join(AGGREGATIONS)}")
    mask = mask.bool()
    if agg == "token-mean":
        return int(mask.sum())
    if agg == "seq-mean-token-mean":
        return int(mask.any(dim=-1).sum())
    return (norm_length if norm_length is not None else mask.shape[-1]) if bool(mask.any()) else 0


def aggregate(
    loss_per_token: torch.Tensor, mask: torch.Tensor, agg: str = "token-mean", norm_length: int | None = None
) -> torch.Tensor:
    """Reduce a [B, L] per-token loss over the masked tokens to a scalar.

    "token-mean"               sum over all masked tokens / their number (PAPER.md default; long responses weigh more)
    "seq-mean-token-mean"      mean over each row's tokens, then mean over rows (GRPO paper; each response weighs 1)
    "seq-mean-token-sum-norm"  sum over all rows and tokens / norm_length, a constant (default L): verl's definition
                               under this name (Dr. GRPO: no length bias); it is NOT averaged over rows
    Rows with no masked token (dropped trajectories) are not counted in seq-mean-token-mean.

    Example, loss [[1, 2, 9], [4, 9, 9]], mask [[1, 1, 0], [1, 0, 0]]:
        token-mean (1 + 2 + 4) / 3 = 7/3;  seq-mean-token-mean ((1 + 2)/2 + 4/1) / 2 = 2.75;
        seq-mean-token-sum-norm (1 + 2 + 4) / 3 = 7/3 (L = 3)
    """
    denom = max(aggregation_denominator(mask, agg, norm_length), 1)
    mask = mask.bool()
    masked = torch.where(mask, loss_per_token, torch.zeros_like(loss_per_token))  # [B, L]
    if agg in ("token-mean", "seq-mean-token-sum-norm"):
        return masked.sum() / denom
    row_values = masked.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)  # [B]; empty rows give 0
    return row_values.sum() / denom


def policy_loss(
    logprobs,
    old_logprobs,
    advantages,
    mask,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 3.0,
    ref_logprobs=None,
    kl_coef: float = 0.0,
    agg: str = "token-mean",
    entropy=None,
    entropy_coef: float = 0.0,
    norm_length: int | None = None,
):
    """Clipped GRPO/PPO loss with decoupled clip bounds, dual clip, k3 KL penalty and entropy bonus; all [B, L] inputs.

    Per token (PAPER.md "Optimiser"; DAPO's decoupled clip; dual clip from Ye et al. 2020):
        ratio = exp(lp - lp_old)
        pg    = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))
        pg    = min(pg, -A * dual_clip)                        for A < 0 (caps the loss when ratio >> 1)
        loss  = pg + kl_coef * k3(lp, lp_ref) - entropy_coef * H
    then aggregated over masked tokens (see `aggregate`). Clipped tokens get zero gradient.

    Returns (loss, metrics). Metrics are python floats over the masked tokens:
        clipfrac_low   A < 0 and ratio < 1 - clip_low   (clipped from below)
        clipfrac_high  A > 0 and ratio > 1 + clip_high  (clipped from above)
        dual_clip_frac A < 0 and the dual clip is active
        approx_kl      mean k3 estimate of KL(pi_old || pi) = exp(lp - lp_old) - (lp - lp_old) - 1 (tokens come from
                       pi_old, so this is the unbiased direction); 0 when fully on-policy
        kl_ref         mean k3(lp, lp_ref) (when ref_logprobs given)
        entropy        mean H (when entropy given)
        pg_loss        the pg term aggregated like the loss

    Example: A = 1, lp_old = 0, lp = log 1.5 -> ratio 1.5 > 1.28 -> pg = -1.28, no gradient.
    """
    mask = mask.bool()
    zero = torch.zeros_like(logprobs)
    # Replace everything off the mask by 0 before any arithmetic: inf/NaN there must not reach loss or gradients.
    lp = torch.where(mask, logprobs, zero)  # [B, L]
    old = torch.where(mask, old_logprobs.to(lp.dtype), zero)  # [B, L]
    adv = torch.where(mask, advantages.to(lp.dtype), zero)  # [B, L]

    log_ratio = (lp - old).clamp(-20.0, 20.0)  # [B, L]
    ratio = torch.exp(log_ratio)  # [B, L]
    pg_unclipped = -adv * ratio
    pg_clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    pg = torch.maximum(pg_unclipped, pg_clipped)  # [B, L]
    dual_active = torch.zeros_like(mask)
    if dual_clip is not None:
        cap = -adv * dual_clip  # [B, L]
        dual_active = (adv < 0) & (pg > cap)
        pg = torch.where(adv < 0, torch.minimum(pg, cap), pg)
    loss_per_token = pg

    kl_ref = None
    if ref_logprobs is not None:
        ref = torch.where(mask, ref_logprobs.to(lp.dtype), zero)
        kl_ref = kl_k3(lp, ref)  # [B, L]
        if kl_coef != 0.0:
            loss_per_token = loss_per_token + kl_coef * kl_ref
    ent = None
    if entropy is not None:
        ent = torch.where(mask, entropy, zero)  # [B, L]
        if entropy_coef != 0.0:
            loss_per_token = loss_per_token - entropy_coef * ent

    loss = aggregate(loss_per_token, mask, agg, norm_length)

    with torch.no_grad():
        n = max(int(mask.sum()), 1)

        def frac(flag):
            return float((flag & mask).sum()) / n

        metrics = {
            "clipfrac_low": frac((adv < 0) & (ratio < 1.0 - clip_low)),
            "clipfrac_high": frac((adv > 0) & (ratio > 1.0 + clip_high)),
            "dual_clip_frac": frac(dual_active),
            "approx_kl": float(_masked_sum(kl_k3(old, lp), mask)) / n,
            "pg_loss": float(aggregate(pg, mask, agg, norm_length)),
        }
        if kl_ref is not None:
            metrics["kl_ref"] = float(_masked_sum(kl_ref, mask)) / n
        if ent is not None:
            metrics["entropy"] = float(_masked_sum(ent, mask)) / n
    return loss, metrics


# ----------------------------------------------------------------------------------------------------------------------
# One optimiser step
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class LossConfig:
    """The loss's settings (see policy_loss); defaults are PAPER.md's ExpRL-Outcome Stage-I values, KL off."""

    clip_low: float = 0.2  # ratio >= 1 - clip_low
    clip_high: float = 0.28  # ratio <= 1 + clip_high (paper: 0.28 outcome, 0.26 process)
    dual_clip: float | None = 3.0  # cap for negative advantages; None = off
    kl_coef: float = 0.0  # k3 KL to the frozen base (needs batch["ref_logprobs"])
    entropy_coef: float = 0.0  # entropy bonus
    agg: str = "token-mean"  # see aggregate()
    temperature: float = 1.0  # the sampler's; log-probs are those of the distribution it drew from
    log_entropy: bool = False  # compute the entropy for the metrics even when entropy_coef is 0
    norm_length: int | None = None  # seq-mean-token-sum-norm's constant (None: the batch width L)
    chunk_size: int | None = None  # LM head over this many response tokens at a time (token_logprobs); None = at once


def grpo_step(
    model,
    optimizer,
    batch: dict,
    loss: LossConfig,
    micro_batch_size: int,
    max_grad_norm: float | None = 1.0,
    loss_scale: float = 1.0,
    apply: bool = True,
) -> dict:
    """One optimiser step of the GRPO loss over a whole mini-batch, with gradient accumulation over micro-batches.

    batch: input_ids, attention_mask, response_mask, advantages ([B, L] each, layout in the module docstring);
    optional old_logprobs (absent or None = fully on-policy: the current log-probs, detached, are the old ones, so
    ratio = 1 and no second forward pass is needed) and ref_logprobs (required when loss.kl_coef > 0).

    Each micro-batch runs forward + policy_loss + backward on its own (only one micro-batch's activations live at a
    time). Its loss is scaled by its share of the batch's aggregation denominator (tokens for token-mean, non-empty rows
    for the seq-mean variants), so the accumulated gradient EQUALS the gradient of the unsplit batch's loss:
        batch loss = sum_tokens l / N = sum_micro (n_micro / N) * (sum_micro_tokens l / n_micro).
    `loss_scale` multiplies every micro-batch's loss (1 in one process; under torchrun the caller passes
    distributed.loss_scale(...), so that the ranks' averaged gradient is the one of the global batch).
    Then: clip the gradient norm to max_grad_norm (None: no clipping), optimizer.step(), optimizer.zero_grad().
    apply=False computes the loss, gradient norm and metrics but leaves the weights and the optimiser state untouched.

    Returns metrics averaged over micro-batches weighted by their token counts, plus "loss" (the batch loss, times
    loss_scale) and "grad_norm" (before clipping).
    """
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    response_mask, advantages = batch["response_mask"], batch["advantages"]
    old_logprobs, ref_logprobs = batch.get("old_logprobs"), batch.get("ref_logprobs")
    if loss.kl_coef != 0.0 and ref_logprobs is None:
        raise ValueError("grpo_step: kl_coef > 0 needs batch['ref_logprobs'] (log-probs of the frozen base)")
    want_entropy = loss.entropy_coef != 0.0 or loss.log_entropy
    total_denom = max(aggregation_denominator(response_mask, loss.agg, loss.norm_length), 1)
    total_tokens = max(int(response_mask.bool().sum()), 1)

    loss_sum, sums = 0.0, {}
    for start in range(0, input_ids.shape[0], micro_batch_size):
        rows = slice(start, start + micro_batch_size)
        mask = response_mask[rows]
        out = token_logprobs(
            model,
            input_ids[rows],
            attention_mask[rows],
            mask,
            micro_batch_size,
            with_entropy=want_entropy,
            temperature=loss.temperature,
            chunk_size=loss.chunk_size,
        )
        lp, ent = out if want_entropy else (out, None)  # [b, L] each
        old = lp.detach() if old_logprobs is None else old_logprobs[rows]
        ref = None if ref_logprobs is None else ref_logprobs[rows]
        micro_loss, metrics = policy_loss(
            lp,
            old,
            advantages[rows],
            mask,
            loss.clip_low,
            loss.clip_high,
            loss.dual_clip,
            ref,
            loss.kl_coef,
            loss.agg,
            ent,
            loss.entropy_coef,
            loss.norm_length,
        )
        share = (
            aggregation_denominator(mask, loss.agg, loss.norm_length) / total_denom
        )  # 0 for a micro-batch of dropped rollouts
        (micro_loss * (share * loss_scale)).backward()  # share * 1.0 == share exactly: one process is unchanged
        loss_sum += micro_loss.item() * share * loss_scale
        n_tokens = int(mask.bool().sum())
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value * n_tokens

    params = [p for p in model.parameters() if p.grad is not None]
    max_norm = math.inf if max_grad_norm is None else max_grad_norm
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else 0.0
    grad_norm = float(getattr(grad_norm, "full_tensor", lambda: grad_norm)())  # FSDP2 returns a (replicated) DTensor
    if apply:
        optimizer.step()
    optimizer.zero_grad()

    result = {key: value / total_tokens for key, value in sums.items()}
    result["loss"] = loss_sum
    result["grad_norm"] = grad_norm
    return result


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
