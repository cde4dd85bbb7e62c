"""GRPO update for ExpRL: the clipped policy loss, k3 KL to the frozen base, one optimiser step.

Batch layout used across the project (B rows, L = P + R columns):

    input_ids       [B, L]  prompt LEFT-padded to length P, then the response RIGHT-padded to length R
    attention_mask  [B, L]  1 on real tokens (prompt and response), 0 on padding
    response_mask   [B, L]  1 on real response tokens (columns >= P that are not padding), 0 elsewhere
    advantages      [B, L]  A for the token input_ids[b, t]; 0 off the response

Per-token tensors (log-probs, advantages, entropies) are aligned with input_ids: the value at column t is about the
token input_ids[b, t], predicted from columns < t. Everything is zero where response_mask is 0.

The loss follows docs/paper.md, "Stage I optimiser settings": PPO clip with decoupled bounds (0.2 / 0.28), dual
clip c = 3 for negative advantages, k3 ("low_var_kl") KL to the frozen base in the loss, token-mean over all tokens
of the mini-batch.
"""

import math
from dataclasses import dataclass

import torch

from logprobs import token_logprobs

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


# ----------------------------------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------------------------------


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) from tokens sampled from pi ("low_var_kl").

    The paper's KL term: docs/paper.md, "Stage I optimiser settings".

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

    "token-mean"               sum over all masked tokens / their number (the paper's; long responses weigh more)
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

    Per token (docs/paper.md, "Stage I optimiser settings"; DAPO's decoupled clip; dual clip from Ye et al. 2020):
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
    """The loss's settings (see policy_loss); defaults: ExpRL-Outcome's Stage-I values, KL off.

    The paper's values: docs/paper.md, "Stage I optimiser settings"."""

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

    def denominator(self, mask: torch.Tensor) -> int:
        """What this loss divides the summed token losses of a batch with response mask `mask` by."""
        return aggregation_denominator(mask, self.agg, self.norm_length)


def grpo_step(
    model,
    optimizer,
    batch: dict,
    loss: LossConfig,
    micro_batch_size: int,
    max_grad_norm: float | None = 1.0,
    apply: bool = True,
    denominator: float | None = None,
) -> dict:
    """One optimiser step of the GRPO loss over a whole mini-batch, with gradient accumulation over micro-batches.

    batch: input_ids, attention_mask, response_mask, advantages ([B, L] each, layout in the module docstring);
    optional old_logprobs (absent or None = fully on-policy: the current log-probs, detached, are the old ones, so
    ratio = 1 and no second forward pass is needed) and ref_logprobs (required when loss.kl_coef > 0).

    Each micro-batch runs forward + policy_loss + backward on its own (only one micro-batch's activations live at a
    time). Its loss is scaled by its share of the batch's aggregation denominator N (tokens for token-mean, non-empty
    rows for the seq-mean variants), so the accumulated gradient EQUALS the gradient of the unsplit batch's loss:
        batch loss = sum_tokens l / N = sum_micro (n_micro / N) * (sum_micro_tokens l / n_micro).
    `denominator` replaces N (None: this batch's own, loss.denominator); a process that trains its rows of a larger
    batch passes that batch's (scale.distributed.global_mini_batch).
    Then: clip the gradient norm to max_grad_norm (None: no clipping), optimizer.step(), optimizer.zero_grad().
    apply=False computes the loss, gradient norm and metrics but leaves the weights and the optimiser state untouched.

    Returns metrics averaged over micro-batches weighted by their token counts, plus "loss" (the batch loss) and
    "grad_norm" (before clipping).
    """
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    response_mask, advantages = batch["response_mask"], batch["advantages"]
    old_logprobs, ref_logprobs = batch.get("old_logprobs"), batch.get("ref_logprobs")
    if loss.kl_coef != 0.0 and ref_logprobs is None:
        raise ValueError("grpo_step: kl_coef > 0 needs batch['ref_logprobs'] (log-probs of the frozen base)")
    want_entropy = loss.entropy_coef != 0.0 or loss.log_entropy
    total_denom = max(loss.denominator(response_mask), 1) if denominator is None else denominator
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
            micro_batch_size=micro_batch_size,
            with_entropy=want_entropy,
            temperature=loss.temperature,
            chunk_size=loss.chunk_size,
        )
        lp, ent = out if want_entropy else (out, None)  # [b, L] each
        micro_loss, metrics = policy_loss(
            lp,
            old_logprobs=lp.detach() if old_logprobs is None else old_logprobs[rows],  # on-policy: ratio 1
            advantages=advantages[rows],
            mask=mask,
            clip_low=loss.clip_low,
            clip_high=loss.clip_high,
            dual_clip=loss.dual_clip,
            ref_logprobs=None if ref_logprobs is None else ref_logprobs[rows],
            kl_coef=loss.kl_coef,
            agg=loss.agg,
            entropy=ent,
            entropy_coef=loss.entropy_coef,
            norm_length=loss.norm_length,
        )
        share = loss.denominator(mask) / total_denom  # 0 for a micro-batch of dropped rollouts
        (micro_loss * share).backward()
        loss_sum += micro_loss.item() * share
        n_tokens = int(mask.bool().sum())
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value * n_tokens

    params = [p for p in model.parameters() if p.grad is not None]
    max_norm = math.inf if max_grad_norm is None else max_grad_norm
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
    if apply:
        optimizer.step()
    optimizer.zero_grad()

    result = {key: value / total_tokens for key, value in sums.items()}
    result["loss"] = loss_sum
    result["grad_norm"] = grad_norm
    return result
