"""Comparisons over seeds (analysis.paired): W-T-L counts and paired-t intervals against values computed by hand."""

import pytest

from analysis.paired import compare, interval, t975, wins_ties_losses


def test_wins_ties_losses_count_each_seed_once():
    a = [0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 1.00]
    b = [0.00, 0.20, 0.40, 0.30, 0.50, 0.50, 0.90, 0.70, 0.90, 0.95]
    # seeds 0, 3, 5, 7, 9 win; 1, 4, 8 tie; 2, 6 lose
    assert wins_ties_losses(a, b) == (5, 3, 2)


def test_ten_seed_interval_by_hand():
    # d = A - B over 10 seeds: 0.01 x 5, 0.03 x 5 -> mean 0.02, std = sqrt(10 * 0.0001 / 9) = 0.010541,
    # se = 0.010541 / sqrt(10) = 0.0033333, half = t_{0.975, 9} * se = 2.2622 * 0.0033333 = 0.0075407
    a = [0.11, 0.13] * 5
    b = [0.10] * 10
    c = compare(a, b)
    assert c["wtl"] == (10, 0, 0)
    assert c["mean"] == pytest.approx(0.02)
    assert c["low"] == pytest.approx(0.02 - 0.0075407, abs=1e-6)
    assert c["high"] == pytest.approx(0.02 + 0.0075407, abs=1e-6)
    assert c["text"] == "+0.020 [+0.012, +0.028]" and c["verdict"] == "held"


def test_a_wide_spread_is_not_separable_and_a_clear_loss_is_reversed():
    # 6 wins and 4 losses of 0.05 each way: mean +0.01, std = sqrt((6 * 0.04^2 + 4 * 0.06^2) / 9) = 0.051640,
    # half = 2.2622 * 0.051640 / sqrt(10) = 0.036941 -> [-0.0269, +0.0469]
    d = [0.05] * 6 + [-0.05] * 4
    iv = interval(d)
    assert (iv.low, iv.high) == pytest.approx((0.01 - 0.036941, 0.01 + 0.036941), abs=1e-6)
    assert iv.verdict == "not separable"
    assert interval([-0.02, -0.03, -0.04]).verdict == "reversed"  # mean -0.03, half 4.3027 * 0.01 / sqrt(3) = 0.0248


def test_t_quantiles_and_too_few_values():
    assert (t975(1), t975(4), t975(9)) == (12.7062, 2.7764, 2.2622)  # standard table values
    assert t975(60) == pytest.approx(2.0003, abs=2e-4)  # beyond the table: the expansion (table value 2.0003)
    with pytest.raises(ValueError, match="2 or more values"):
        interval([0.1])
