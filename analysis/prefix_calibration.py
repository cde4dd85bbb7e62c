"""Process calibration (docs/paper.md, "Judge calibration", Fig. 11): does a prefix score s_t track how likely the
prefix is to end well? Each proper prefix of a rollout is continued K times by the policy; the success rate of those
continuations is compared with the judge's s_t (Pearson r, mean success per score, a calibration plot). Run through
`python -m analysis.calibrate ... --process_model toy --k 8`.
"""

import math
import random


def pearson(x: list[float], y: list[float]) -> float | None:
    """Pearson correlation; None when either side is constant."""
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def split_segments(response: str, delimiter: str = "###") -> list[str]:
    """The response's segments as process judging slices it (the delimiter closes a segment; on text, the same cut
    advantages.segment_spans makes on tokens when the delimiter is one token, as in the toy world).

    Example:
        >>> split_segments("47+8=55###55*2=110###so 110")
        ['47+8=55###', '55*2=110###', 'so 110']
    """
    parts = response.split(delimiter)
    segments = [p + delimiter for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    return segments or [response]


def prefix_calibration(
    policy,
    tokenizer,
    judge,
    rows: list[dict],
    k: int = 8,
    delimiter: str = "###",
    max_new_tokens: int = 160,
    temperature: float = 1.0,
    batch_size: int = 256,
) -> dict:
    """Prefix scores s_t (judge, view "prefix") against the success rate of K policy continuations of each prefix.

    Every proper prefix y_<=t (t < T: the whole response's success is just its own correctness) is continued K times
    from the question-only prompt; success = fraction of the K whose final answer (prefix + continuation) is right.
    Returns {"pairs": [(s_t, success)], "pearson", "by_score": {s: [mean success, count]}}.
    """
    from advantages import segment_spans
    from domains.problems import encode_prompts, policy_messages
    from domains.rule_rewards import answer_reward
    from rollout import HFSampler

    prompt_ids = encode_prompts(tokenizer, [policy_messages(r["question"]) for r in rows])
    segments, prefixes = [], []  # prefixes: (prompt + prefix ids, prefix text, answer)
    for r, prompt in zip(rows, prompt_ids):
        ids = tokenizer(r["response"], add_special_tokens=False).input_ids
        spans = segment_spans(ids, tokenizer, delimiter)
        segments.append([tokenizer.decode(ids[a:b], skip_special_tokens=True) for a, b in spans])
        prefixes += [
            (prompt + ids[:b], tokenizer.decode(ids[:b], skip_special_tokens=True), r["answer"]) for a, b in spans[:-1]
        ]
    judged = judge.score_process([r["question"] for r in rows], [r["reference"] for r in rows], segments, "prefix")
    scores = [s for row in judged.scores for s in row[:-1]]  # [num_prefixes], same order as prefixes
    sampler = HFSampler(
        policy, tokenizer, max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size
    )
    continuations = sampler.sample([p[0] for p in prefixes], n=k)  # [num_prefixes * k], group by group
    success = [
        sum(answer_reward(text + c.text, answer) for c in continuations[i * k : (i + 1) * k]) / k
        for i, (_, text, answer) in enumerate(prefixes)
    ]
    pairs = [(s, p) for s, p in zip(scores, success) if s is not None]
    by_score = {}
    for s, p in pairs:
        by_score.setdefault(s, []).append(p)
    return {
        "k": k,
        "pairs": pairs,
        "num_prefixes": len(prefixes),
        "parse_failures": len(scores) - len(pairs),
        "pearson": pearson(*zip(*pairs)) if len(pairs) > 1 else None,
        "by_score": {s: [sum(v) / len(v), len(v)] for s, v in sorted(by_score.items())},
    }


def plot_prefix_calibration(result: dict, path: str, title: str = "") -> None:
    """Mean K-continuation success per prefix-score level (with counts), and the individual prefixes jittered."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = random.Random(0)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    xs, ys = zip(*result["pairs"]) if result["pairs"] else ((), ())
    ax.scatter([x + rng.uniform(-0.03, 0.03) for x in xs], ys, s=6, alpha=0.3, color="tab:blue", label="prefixes")
    levels = list(result["by_score"])
    ax.plot(levels, [result["by_score"][s][0] for s in levels], "o-", color="black", label="mean per score")
    for s in levels:
        ax.annotate(
            f"n={result['by_score'][s][1]}",
            (s, result["by_score"][s][0]),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, 4),
        )
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=0.8, label="perfect calibration")
    r = result["pearson"]
    ax.set_title(f"{title} r={'n/a' if r is None else f'{r:.2f}'}, K={result['k']}", fontsize=9)
    ax.set_xlabel("prefix score s_t = (N - 1) / 4")
    ax.set_ylabel("success of K continuations")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
