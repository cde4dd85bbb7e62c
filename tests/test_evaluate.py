import itertools
import math

import pytest

from evaluate import pass_at_k, pass_at_k_curve


def test_pass_at_k_hand_computed():
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == 0.5
    # n=4, c=1, k=1: 1 - C(3,1)/C(4,1) = 1 - 3/4 = 0.25 (pass@1 is the fraction correct)
    assert pass_at_k(4, 1, 1) == 0.25
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=128, c=1, k=16: only one correct sample, chance it is among the 16 drawn = 16/128
    assert pass_at_k(128, 1, 16) == pytest.approx(16 / 128)


def test_no_correct_sample_gives_zero():
    assert pass_at_k(128, 0, 1) == 0.0
    assert pass_at_k(128, 0, 128) == 0.0


def test_exactly_one_when_fewer_wrong_than_k():
    # n=6, c=4: only 2 wrong samples, so every 3-subset holds a correct one
    assert pass_at_k(6, 4, 3) == 1.0
    assert pass_at_k(128, 128, 1) == 1.0
    assert pass_at_k(128, 1, 128) == 1.0


def test_matches_brute_force_enumeration():
    # Samples 0..c-1 are correct; pass@k = fraction of k-subsets that contain at least one of them.
    for n in range(1, 7):
        for c in range(n + 1):
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(range(n), k))
                hits = sum(any(i < c for i in subset) for subset in subsets)
                assert pass_at_k(n, c, k) == pytest.approx(hits / len(subsets), abs=1e-12), (n, c, k)


def test_matches_binomial_formula_at_paper_scale():
    n, c = 128, 3
    for k in (1, 2, 4, 8, 16, 32, 64, 128):
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n, c, k", [(4, 1, 5), (4, 1, 0), (4, 5, 2), (-1, 0, 1), (4, -1, 1), (4, 1, -2)])
def test_invalid_arguments_raise(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_curve_over_two_problems():
    # n=4; problem A has c=1, problem B has c=2.
    # k=1: A 1/4, B 2/4 -> mean 3/8.  k=2: A 1 - 3/6 = 1/2, B 1 - C(2,2)/C(4,2) = 1 - 1/6 = 5/6 -> mean 2/3.
    # k=4: both 1.0.
    curve = pass_at_k_curve([1, 2], n=4, ks=[1, 2, 4])
    assert list(curve) == [1, 2, 4]
    assert curve[1] == pytest.approx(3 / 8)
    assert curve[2] == pytest.approx((1 / 2 + 5 / 6) / 2)
    assert curve[4] == 1.0


def test_curve_rejects_empty_input():
    with pytest.raises(ValueError):
        pass_at_k_curve([], n=4, ks=[1])


def test_evaluate_greedy_samples_agree_and_json_is_written(tmp_path):
    """Greedy decoding makes the n samples of a problem identical, so each count is 0 or n and pass@k is flat in k."""
    import json

    import toy.world as toy
    from evaluate import evaluate

    problems = toy.make_toy_problems(6, 1, 2, seed=5)  # EASY chains: the toy base solves most of them
    result = evaluate("toy", problems, n=4, temperature=0.0, output_dir=str(tmp_path), step=7)
    assert all(c in (0, 4) for c in result["correct_counts"])
    solved = sum(c == 4 for c in result["correct_counts"]) / 6
    assert result["pass@k"] == {"1": solved, "2": solved, "4": solved} and solved >= 0.5
    saved = json.load(open(tmp_path / "pass_at_k.json"))
    assert (saved["step"], saved["n"], saved["num_problems"]) == (7, 4, 6) and saved["pass@k"] == result["pass@k"]
    assert set(saved) == {"step", "n", "num_problems", "pass@k", "correct_counts", "seconds"}  # math: no "domains"
