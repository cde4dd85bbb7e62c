"""Log-probs of sampled response tokens: what GRPO's ratio, the KL term and the entropy are made of.

token_logprobs(model, input_ids, attention_mask, response_mask, micro_batch_size) -> log pi(y_t | x, y_<t), [B, L],
in the batch layout of grpo.py (prompt left-padded to P, response right-padded; value at column t is about token t).
Only response logits are ever computed. This file is the plain path: one forward per micro-batch and one logits
tensor. Two exact fast paths sit behind the same call in scale/logprobs_fast.py, each with its equivalence tests: prompt
sharing (a GRPO group's prompt runs once; on by default; tests/test_grpo.py) and the chunked LM head for long responses
(`chunk_size=k`: memory grows with tokens x hidden size, not x vocabulary; tests/test_chunked.py).
"""

import torch

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
    drew from (1.0 = the raw model). share_prompts turns on a fast path (scale/logprobs_fast.py: a prompt repeated by
    several rows runs once); the numbers are the same.

    With with_entropy=True also returns the per-token entropy H_t = -sum_v pi(v | .) log pi(v | .), [B, L].

    chunk_size=k (long responses): the [b, R, V] logits tensor is never built. The LM head runs over k response
    positions at a time and its backward recomputes each chunk's logits, so memory grows with tokens x hidden size,
    not tokens x vocabulary (scale/logprobs_fast.py). Same numbers to float rounding; None = one logits tensor.

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
            with_entropy=with_entropy,
            temperature=temperature,
            share_prompts=share_prompts,
            chunk_size=chunk_size,
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
    forward/backward calls whatever its rows hold (scale/distributed.py).
    """
    b, L = input_ids.shape
    in_response = response_mask.bool().any(dim=0)  # [L]
    p0 = int(in_response.nonzero()[0]) if in_response.any() else L - 1  # first response column of this micro-batch
    if p0 == 0:
        raise ValueError("token_logprobs: a response token at column 0 has no prompt to be predicted from")
    # Positions as generate() assigns them under left padding: the first real token is position 0.
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # [b, L]
    if share_prompts or chunk_size is not None:  # the exact fast paths (scale/logprobs_fast.py), loaded when used
        from scale.logprobs_fast import can_share_prompts, chunked_response_stats
    share = share_prompts and bool(in_response.any()) and can_share_prompts(model)
    keep = response_mask[:, p0:].bool()  # [b, L - p0]
    if chunk_size is None:
        logits = _response_logits(model, input_ids, attention_mask, position_ids, p0=p0, share_prompts=share)
        targets = input_ids[:, p0:]  # [b, L - p0]
        lp, h = response_stats(logits.float(), targets, keep, temperature=temperature, with_entropy=with_entropy)
    else:  # long responses: the LM head k positions at a time, no [b, L - p0, V] tensor (scale/logprobs_fast.py)
        lp, h = chunked_response_stats(
            model,
            input_ids,
            attention_mask,
            position_ids,
            keep=keep,
            p0=p0,
            share=share,
            temperature=temperature,
            with_entropy=with_entropy,
            chunk_size=chunk_size,
        )  # [b, L - p0] each
    prompt_zeros = torch.zeros(b, p0, dtype=torch.float32, device=input_ids.device)  # [b, p0]
    logprobs = torch.cat([prompt_zeros, lp], dim=1)  # [b, L]
    entropy = torch.cat([prompt_zeros, h], dim=1) if with_entropy else None  # [b, L]
    return logprobs, entropy


def response_stats(logits, targets, keep, temperature, with_entropy):
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
    shared = None
    if share_prompts:
        from scale.logprobs_fast import shared_prompt_logits

        shared = shared_prompt_logits(model, input_ids, attention_mask, position_ids, p0=p0)
    if shared is not None:  # fast path: each distinct prompt ran once, the responses on its cache
        return shared
    # The token at column t is predicted by the logits at column t - 1, so columns p0 - 1 .. L - 2 are needed; the
    # model keeps the LAST k columns, i.e. p0 - 1 .. L - 1, and the final one (predicting past the end) is dropped.
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=input_ids.shape[1] - p0 + 1,
        use_cache=False,
    )
    return out.logits[:, :-1, :]  # [b, L - p0, V]
