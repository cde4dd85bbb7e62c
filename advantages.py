"""Advantages for ExpRL: group-normalised outcome advantages and centered segment advantages.

ExpRL-Outcome gives one judge score per response; its advantage is the GRPO group-normalised score, broadcast to every
response token. ExpRL-Process slices each response at the delimiter "###" into T segments, scores every prefix
y_<=t with the judge (s_1..s_T) and gives each segment its own advantage (paper Eq. 2, "DeltaNorm"), broadcast to the
tokens of that segment. This file holds all of that arithmetic; it never calls a model or a judge.

Index conventions: a response is a list of token ids; a span (start, end) is a half-open range of token indices into
that list; segment t (1-based in the paper) is spans[t - 1] here.
"""

from bisect import bisect_left

import torch

DELTA_MODES = ("delta", "delta_code", "delta_from_zero", "end")  # delta_advantages
PROCESS_MODES = (*DELTA_MODES, "group_norm")  # process_advantages: the delta modes and GroupNorm


# ----------------------------------------------------------------------------------------------------------------------
# Outcome advantages (ExpRL-Outcome, sparse GRPO, Stage II)
# ----------------------------------------------------------------------------------------------------------------------


def group_advantages(rewards, group_size: int, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO advantage A_i = (r_i - mean(group)) / (std(group) + eps), or r_i - mean(group) when scale=False.

    ExpRL-Outcome and sparse GRPO use scale=True (docs/paper.md, "Outcome judge");
    Stage II uses scale=False, A = r - group mean (docs/paper.md, "Stage II").

    `rewards` is ordered group by group: rewards[0:G] are the G rollouts of the first prompt, and so on.
    The std is the SAMPLE std (divide by G - 1; torch's default), as in the authors' code, verl, TRL and PipelineRL.
    A group whose rewards are all equal (zero std; G = 1 too, where the sample std is undefined) gets exactly zero
    advantages, never NaN or round-off noise divided by eps: such a group carries no learning signal.

    Example (two groups of 2; the sample std of {1, 0} is sqrt(0.5) = 0.7071, so (1 - 0.5) / 0.7071 = 0.7071):
        >>> group_advantages([1.0, 0.0, 0.0, 1.0], group_size=2)
        tensor([ 0.7071, -0.7071, -0.7071,  0.7071])
        >>> group_advantages([1.0, 0.0, 0.3, 0.3], group_size=2, scale=False)
        tensor([ 0.5000, -0.5000,  0.0000,  0.0000])
    """
    r = torch.as_tensor(rewards, dtype=torch.float32).flatten()  # [N]
    if group_size < 1 or r.numel() % group_size != 0:
        raise ValueError(f"group_advantages: {r.numel()} rewards are not a whole number of groups of {group_size}")
    groups = r.view(-1, group_size)  # [num_prompts, G]
    centered = groups - groups.mean(dim=1, keepdim=True)  # [num_prompts, G]
    # The mean of equal floats need not equal them to the last bit; force exact zeros for constant groups.
    constant = (groups == groups[:, :1]).all(dim=1, keepdim=True)  # [num_prompts, 1]
    centered = torch.where(constant, torch.zeros_like(centered), centered)
    if scale and group_size > 1:  # G = 1 groups are constant: already exactly 0
        std = groups.std(dim=1, keepdim=True)  # [num_prompts, 1], sample std (divides by G - 1)
        centered = torch.where(constant, centered, centered / (std + eps))
    return centered.flatten()  # [N]


# ----------------------------------------------------------------------------------------------------------------------
# Slicing a response into segments (ExpRL-Process)
# ----------------------------------------------------------------------------------------------------------------------


def _token_char_ends(token_ids: list[int], tokenizer) -> tuple[str, list[int]]:
    """Decode a response incrementally; return (text, ends) where ends[i] = len(text decoded from tokens 0..i).

    Token i covers the characters text[ends[i-1]:ends[i]]. Decoding token by token in isolation is wrong for two
    reasons this handles: (1) SentencePiece-style decoders drop the leading space of the FIRST token of a decode call,
    so we always decode a token together with the token before it and keep only the new characters; (2) byte-level
    BPE can split one character over several tokens, whose partial decode is the replacement char U+FFFD, so such a
    token adds no characters until the token that completes the character arrives (it then gets all of them).
    Cost is linear in the response length (each decode call sees a short window), unlike decoding every prefix.

    Example (character-level tokenizer): tokens "a", "#", "#" -> ("a##", [1, 2, 3]).
    """
    text = ""
    ends = []
    prefix_start, read_start = 0, 0  # window = tokens[prefix_start:] ; tokens[prefix_start:read_start] already emitted
    for i in range(len(token_ids)):
        prefix_text = tokenizer.decode(token_ids[prefix_start:read_start])
        new_text = tokenizer.decode(token_ids[prefix_start : i + 1])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            text += new_text[len(prefix_text) :]
            prefix_start, read_start = read_start, i + 1
        ends.append(len(text))
    return text, ends


def segment_spans(token_ids: list[int], tokenizer, delimiter: str = "###") -> list[tuple[int, int]]:
    """Slice a response into segments at `delimiter`; return contiguous token spans [(start, end), ...] (end exclusive).

    ExpRL-Process (docs/paper.md, "Process judge and Eq. 2"): the delimiter CLOSES a segment, so the token(s)
    carrying it belong to the segment they end; the last segment runs to the end of the response; T = number of
    delimiters + 1, except that a response ending right after a delimiter has no empty trailing segment. The spans
    cover every token exactly once.

    Works on characters, not tokens, so the delimiter may be split over several tokens ("#", "##") or merged with
    neighbours in one token ("###\\n", " ###"): the token whose decoded text contains the delimiter's LAST character
    closes the segment (with whatever else that token carries). Occurrences are found left to right without overlap,
    as str.split would ("######" is two delimiters).

    Example (a stand-in tokenizer: anything with decode(ids) -> text; "ab###c" is 4 tokens "a", "b", "###", "c"):
        >>> class Vocab:
        ...     words = ["a", "b", "###", "c"]
        ...     def decode(self, ids):
        ...         return "".join(self.words[i] for i in ids)
        >>> segment_spans([0, 1, 2, 3], Vocab())  # "ab###" | "c"
        [(0, 3), (3, 4)]
        >>> segment_spans([0, 1, 3], Vocab()), segment_spans([], Vocab())  # "abc": one segment; nothing: none
        ([(0, 3)], [])
    """
    if len(token_ids) == 0:
        return []
    if not delimiter:
        raise ValueError("segment_spans: the delimiter must be a non-empty string")
    text, ends = _token_char_ends(list(token_ids), tokenizer)  # ends: [len(token_ids)]
    cuts = []  # token index just after each closing token
    at = text.find(delimiter)
    while at != -1:
        last_char_end = at + len(delimiter)  # the delimiter occupies text[at:last_char_end]
        closing_token = bisect_left(ends, last_char_end)  # first token whose text reaches that character
        if not cuts or cuts[-1] != closing_token + 1:  # two delimiters closing in one token make one cut
            cuts.append(closing_token + 1)
        at = text.find(delimiter, last_char_end)
    if not cuts or cuts[-1] != len(token_ids):
        cuts.append(len(token_ids))  # the last segment runs to the end
    starts = [0] + cuts[:-1]
    return list(zip(starts, cuts))


# ----------------------------------------------------------------------------------------------------------------------
# Segment advantages (ExpRL-Process)
# ----------------------------------------------------------------------------------------------------------------------


def delta_advantages(scores: list[float], mode: str = "delta") -> list[float]:
    """Centered segment advantages from one trajectory's prefix scores s_1..s_T (ExpRL Eq. 2 and its variants).

    mode:
      "delta"           ExpRL Eq. 2 ("DeltaNorm"): A_1 = s_1 - s_T, A_t = s_t - s_{t-1} for t > 1. Sums to zero
                        over the trajectory. T = 1 gives [0.0].
      "delta_code"      as "delta", but T = 1 gives [s_1] (the authors' released code).
      "delta_from_zero" s_0 = 0: A_1 = s_1, A_t = s_t - s_{t-1}. Sums to s_T. With a judge that scores progress
                        fractions, Eq. 2 punishes a correct first step on every good trajectory (s_1 - s_T < 0);
                        this mode rewards each step for the progress it adds.
      "end"             EndNorm ablation (appendix): A_t = s_t - s_T for t < T, A_T = s_T.

    Example, s = [0.25, 0.75, 1.0]:
        delta           -> [0.25 - 1.0, 0.75 - 0.25, 1.0 - 0.75] = [-0.75, 0.5, 0.25]   (sum 0)
        delta_from_zero -> [0.25, 0.5, 0.25]                                            (sum 1.0 = s_T)
        end             -> [0.25 - 1.0, 0.75 - 1.0, 1.0] = [-0.75, -0.25, 1.0]
    """
    if mode not in DELTA_MODES:
        raise ValueError(f"delta_advantages: unknown mode {mode!r}; valid modes: {', '.join(DELTA_MODES)}")
    s = [float(x) for x in scores]
    if not s:
        return []
    T = len(s)
    steps = [s[t] - s[t - 1] for t in range(1, T)]  # A_t = s_t - s_{t-1}, t = 2..T (paper indexing)
    if mode == "delta":
        return [s[0] - s[-1]] + steps  # T = 1: s_1 - s_1 = 0
    if mode == "delta_code":
        return [s[0]] if T == 1 else [s[0] - s[-1]] + steps
    if mode == "delta_from_zero":
        return [s[0]] + steps
    return [x - s[-1] for x in s[:-1]] + [s[-1]]  # "end"


def group_norm_advantages(scores_per_rollout: list[list[float]]) -> list[list[float]]:
    """GroupNorm ablation (ExpRL appendix): A_t = s_t - b, b = the mean over the group's rollouts of their mean s_t.

    Input: the segment scores of every rollout of ONE prompt's group. Rollouts with no segments are left out of the
    baseline and get [] back.

    Example: rollouts [[0.0, 1.0], [0.5]] have means 0.5 and 0.5, so b = 0.5:
        >>> group_norm_advantages([[0.0, 1.0], [0.5]])
        [[-0.5, 0.5], [0.0]]
    """
    means = [sum(s) / len(s) for s in scores_per_rollout if len(s) > 0]
    if not means:
        return [[] for _ in scores_per_rollout]
    baseline = sum(means) / len(means)
    return [[float(x) - baseline for x in s] for s in scores_per_rollout]


# ----------------------------------------------------------------------------------------------------------------------
# Broadcasting to tokens
# ----------------------------------------------------------------------------------------------------------------------


def token_advantages(spans: list[tuple[int, int]], values: list[float], length: int) -> torch.Tensor:
    """Per-token advantages of one response: every token of span i gets values[i]; tokens in no span get 0.

    Segment t's advantage A_t goes to all tokens of segment t (ExpRL Eq. 2, "every token of segment t gets A_t").
    An outcome advantage is the one-span case [(0, length)].

    Example:
        >>> token_advantages([(0, 2), (2, 3)], [0.5, -1.0], length=4)
        tensor([ 0.5000,  0.5000, -1.0000,  0.0000])
    """
    if len(spans) != len(values):
        raise ValueError(f"token_advantages: {len(spans)} spans but {len(values)} values")
    out = torch.zeros(length, dtype=torch.float32)  # [length]
    for (start, end), value in zip(spans, values):
        out[start:end] = float(value)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# One step's rollouts: rewards or segment scores -> advantages, with over-length and unparseable cases
# ----------------------------------------------------------------------------------------------------------------------


def outcome_advantages(
    scores: list, truncated: list[bool], group_size: int, scale: bool = True
) -> tuple[list[float], list[bool]]:
    """Per-rollout advantage from per-rollout rewards (docs/paper.md, "Outcome judge"; scale=False: Stage II's r-mean).

    Over-length responses get reward 0; an unparseable score (None) drops the rollout from the loss and from its
    group's mean/std. Returns (advantages, keep) with one entry per rollout.

    The authors' code differs on unparseable scores: it counts them as reward 0 inside the group (and keeps them in
    the loss). We drop them instead (the paper; docs/paper.md, "Outcome judge"): a judge failure is not
    evidence that the response is bad, and a 0 would push it down and lift its group-mates.

    Example (group of 4: rewards 1, 0, truncated -> 0, unparseable -> dropped; mean 1/3, sample std of {1, 0, 0}
    = sqrt(1/3) = 0.577, so A = (2/3) / 0.577 = 1.155 and (-1/3) / 0.577 = -0.577):
        >>> adv, keep = outcome_advantages([1.0, 0.0, 0.5, None], [False, False, True, False], group_size=4)
        >>> [round(a, 3) for a in adv], keep
        ([1.155, -0.577, -0.577, 0.0], [True, True, True, False])
    """
    rewards = [0.0 if trunc else s for s, trunc in zip(scores, truncated)]
    advantages, keep = [0.0] * len(rewards), [r is not None for r in rewards]
    for g in range(0, len(rewards), group_size):
        valid = [i for i in range(g, g + group_size) if keep[i]]
        if valid:
            for i, a in zip(valid, group_advantages([rewards[i] for i in valid], len(valid), scale).tolist()):
                advantages[i] = a
    return advantages, keep


def process_advantages(scores: list[list], truncated: list[bool], group_size: int, mode: str, levels=None):
    """Per-segment advantages from per-segment scores (docs/paper.md, "Process judge and Eq. 2": Eq. 2 and ablations).

    A rollout with any unparseable segment score is dropped; an over-length rollout keeps advantage 0.
    Returns (advantages per rollout as lists over its segments, keep).

    `levels` (a batch mixing domains, judge.score_process_routed): a group whose rows are at level "outcome" has one
    score per response and gets ExpRL-Outcome's group-normalised advantage (outcome_advantages), since Eq. 2 on a
    single segment would give 0; the other groups get `mode` as above. None: every row at level "prefix".

    Example (mode "delta", groups of 2: a prefix group with s = (0.25, 0.75) and (0.5,), an outcome group with 1.0
    and 0.0; Eq. 2 gives (0.25 - 0.75, 0.75 - 0.25) and 0; the outcome group gives +-0.5 / std 0.707 = +-0.707):
        >>> adv, keep = process_advantages([[0.25, 0.75], [0.5], [1.0], [0.0]], [False] * 4, 2, "delta",
        ...                                ["prefix", "prefix", "outcome", "outcome"])
        >>> [[round(a, 3) for a in row] for row in adv]
        [[-0.5, 0.5], [0.0], [0.707], [-0.707]]
    """
    keep = [all(s is not None for s in row) for row in scores]
    advantages = [[0.0] * len(row) for row in scores]
    levels = levels or ["prefix"] * len(scores)
    if mode == "group_norm":
        for g in range(0, len(scores), group_size):
            members = [i for i in range(g, g + group_size) if keep[i] and scores[i] and levels[i] == "prefix"]
            for i, adv in zip(members, group_norm_advantages([scores[i] for i in members])):
                advantages[i] = adv
    else:
        for i, row in enumerate(scores):
            if keep[i] and levels[i] == "prefix":
                advantages[i] = delta_advantages(row, mode)
    for g in range(0, len(scores), group_size):  # outcome-level groups (levels are the same within a group)
        if levels[g] != "prefix":
            rows = range(g, g + group_size)
            outcome, kept = outcome_advantages([scores[i][0] for i in rows], [truncated[i] for i in rows], group_size)
            for i, a, k in zip(rows, outcome, kept):
                advantages[i], keep[i] = [a], k
    for i, trunc in enumerate(truncated):
        if trunc and levels[i] == "prefix":  # an outcome-level row was scored 0 instead, as in ExpRL-Outcome
            advantages[i] = [0.0] * len(advantages[i])
    return advantages, keep
