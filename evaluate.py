"""Evaluation: the unbiased pass@k estimator and pass@k curves (PAPER.md "Evaluation").

The paper samples n = 128 responses per problem at temperature 0.8 and reports pass@1, pass@16 and curves over
k = 2^1..2^7. It does not name its estimator; we use the unbiased one of Chen et al. (2021), "Evaluating Large
Language Models Trained on Code", Eq. 1.
"""

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021, Eq. 1).

    This is the chance that k samples drawn without replacement from the n contain at least one correct one. The
    binomials overflow floats for n = 128, so we use the product form
        C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i),
    which is exactly 1.0 when n - c < k (every k-subset holds a correct sample).

    Example (n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6):
        >>> pass_at_k(4, 1, 2)
        0.5
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if value < 0:
            raise ValueError(f"pass_at_k: {name} must be >= 0, got {value}")
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} exceeds the number of samples n={n}")
    if c > n:
        raise ValueError(f"pass_at_k: c={c} correct exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    all_wrong = 1.0  # probability that all k drawn samples are wrong
    for i in range(n - c + 1, n + 1):
        all_wrong *= 1.0 - k / i
    return 1.0 - all_wrong


def pass_at_k_curve(correct_counts: Sequence[int], n: int, ks: Sequence[int]) -> dict[int, float]:
    """Mean over problems of pass_at_k(n, c, k), for each k in ks; every problem has the same n samples.

    Example (two problems, n=4, c=1 and c=0; pass@2 = (0.5 + 0.0) / 2):
        >>> pass_at_k_curve([1, 0], n=4, ks=[1, 2])
        {1: 0.125, 2: 0.25}
    """
    if len(correct_counts) == 0:
        raise ValueError("pass_at_k_curve: no problems (correct_counts is empty)")
    return {k: sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts) for k in ks}
