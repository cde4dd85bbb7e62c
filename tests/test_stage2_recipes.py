"""The Stage-II recipe driver (scripts/stage2_recipes.py): its probabilities, its commands, and its summary and
decision rule read back from hand-made run logs, every expected value worked out by hand."""

import json
import os

import pytest

import train_stage2
from advantages import outcome_advantages
from scripts import reproduce
from scripts.reproduce import RECIPES, STAGE2_DEFAULT_LR
from scripts.stage2_recipes import Args, decide, run_summary, stage2_commands, summary_markdown, update_skipped
from scripts.stage2_recipes import p_any_success as p_any


def test_a_group_has_a_success_with_probability_one_minus_all_failing():
    # 1 - 0.95^8 = 1 - 0.66342 = 0.33658; 1 - 0.95^32 = 1 - 0.19371 = 0.80629
    assert round(p_any(0.05, 8), 4) == 0.3366 and round(p_any(0.05, 32), 4) == 0.8063
    assert p_any(0.0, 32) == 0.0 and p_any(1.0, 1) == 1.0
    assert p_any(0.5, 2) == pytest.approx(0.75)  # 1 - 0.5 * 0.5


def test_an_update_is_skipped_when_every_group_is_all_wrong_or_all_right():
    G = 4
    all_wrong = [0, 0, 0, 0] * 2  # two groups of 4, every reward 0: no signal
    one_right = [0, 0, 0, 0, 0, 1, 0, 0]  # the second group has a success: A = 1 - 1/4 = 0.75 there
    solved = [1, 1, 1, 1, 0, 0, 0, 0]  # a fully solved group is as silent as a fully wrong one
    steps = [all_wrong, one_right, solved, all_wrong]
    assert [update_skipped(s, G) for s in steps] == [True, False, True, True]
    assert sum(update_skipped(s, G) for s in steps) == 3  # the skipped-update count of these four steps
    for correct in steps:  # the same as "every Stage-II advantage (A = r - group mean) is 0"
        advantages, _ = outcome_advantages([float(c) for c in correct], [False] * 8, G, scale=False)
        assert update_skipped(correct, G) == all(a == 0 for a in advantages)
    assert outcome_advantages([float(c) for c in one_right], [False] * 8, G, scale=False)[0][5] == 0.75


def test_toy_40_is_todays_stage2_and_the_clip_is_already_the_papers():
    defaults = train_stage2.Args()
    assert (defaults.lr, defaults.max_grad_norm) == (STAGE2_DEFAULT_LR, 0.3)  # lr 1e-4 (toy), clip 0.3 (paper)
    data = {"train": "t.jsonl", "heldout": "h.jsonl"}
    # the committed reproduction's Stage-II command, written out: `--stage2_recipe toy-40` gives it back exactly
    today = ["train_stage2.py", "--model", "toy", "--output_dir", os.path.join("o", "s0", "base", "stage2")]
    today += ["--steps", "40", "--group_size", "8", "--prompts_per_step", "8", "--eval_before", "false", "--seed", "0"]
    today += ["--threads", "1", "--eval_data", "h.jsonl", "--eval_n", "64", "--eval_limit", "48", "--train_data"]
    today += ["t.jsonl"]
    old = reproduce.Args(output_dir="o", test_n=0, stage2_recipe="toy-40")
    assert reproduce.chain(old, data, "base", seed=0)[1][1] == today
    assert RECIPES["toy-40"].flags() == today[5:11]
    # toy-40 keeps Stage I's sizes (as the committed runs did); another recipe brings its own G x prompts and lr
    small = reproduce.Args(output_dir="o", test_n=0, stage2_recipe="toy-40", group_size=2, prompts_per_step=3)
    assert reproduce.stage2_flags(small) == ["--steps", "40", "--group_size", "2", "--prompts_per_step", "3"]
    new = reproduce.Args(output_dir="o", test_n=0, stage2_steps=7, stage2_recipe="lr2e-5-120")
    assert reproduce.stage2_flags(new) == [
        "--steps",
        "7",
        "--group_size",
        "8",
        "--prompts_per_step",
        "8",
        "--lr",
        "2e-05",
    ]
    default = reproduce.chain(reproduce.Args(output_dir="o", test_n=0), data, "base", seed=0)[1][1]
    assert default[5:13] == ["--steps", "120", "--group_size", "8", "--prompts_per_step", "8", "--lr", "2e-05"]
    assert RECIPES["lr2e-5-120"].flags()[-2:] == ["--lr", "2e-05"]
    # rollouts = steps x G x prompts: 40 x 8 x 8 = 2,560 = 40 x 32 x 2; 120 x 8 x 8 = 7,680; 40 x 32 x 8 = 10,240
    assert [RECIPES[n].rollouts for n in ("toy-40", "g32x2-40", "lr2e-5-120", "g32x8-40")] == [2560, 2560, 7680, 10240]


def test_stage2_commands_curve_every_eighth_of_the_run_then_the_64_sample_end():
    args = Args(output_dir="o")
    (run_dir, train), (end_dir, end) = stage2_commands(args, 1, "process", "lr2e-5-120")
    assert run_dir == os.path.join("o", "s1", "process", "lr2e-5-120") and end_dir == os.path.join(run_dir, "end")
    assert train[train.index("--model") + 1] == os.path.join("o", "s1", "process", "stage1", "checkpoint")
    assert train[train.index("--eval_every") + 1] == "15"  # 120 steps / 8
    assert train[train.index("--eval_n") + 1] == "16" and train[train.index("--eval_limit") + 1] == "48"
    assert end[end.index("--n") + 1] == "64" and end[end.index("--seed") + 1] == "1"
    train40 = stage2_commands(args, 0, "base", "toy-40")[0][1]
    assert train40[train40.index("--model") + 1] == "toy" and train40[train40.index("--eval_every") + 1] == "5"


def _write(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(payload if isinstance(payload, str) else json.dumps(payload))


def _fake_run(out, seed, recipe, start_p, end_p, curve_p, correct_per_step):
    """A finished base-started Stage-II run: the start evaluation, metrics.jsonl, one curve point, the end."""
    _write(f"{out}/s{seed}/base/stage1/eval/step_0000/pass_at_k.json", {"pass@k": {"1": start_p, "16": 0.2}})
    rows = [
        {"step": i + 1, "skipped_update": float(c == 0), "answer_accuracy": c, "entropy": 0.1 * (i + 1), "time_step": 2}
        for i, c in enumerate(correct_per_step)
    ]
    _write(f"{out}/s{seed}/base/{recipe}/metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    _write(f"{out}/s{seed}/base/{recipe}/eval/step_0005/pass_at_k.json", {"step": 5, "pass@k": {"1": curve_p}})
    _write(f"{out}/s{seed}/base/{recipe}/end/pass_at_k.json", {"pass@k": {"1": end_p, "16": 0.3}})


def test_summary_of_two_tiny_fake_runs(tmp_path):
    out = str(tmp_path)
    # 12 steps; training accuracy 0 except 0.5 at step 3 and 0.25 at steps 11 and 12: 12 - 3 = 9 updates skipped
    accuracy = [0, 0, 0.5, 0, 0, 0, 0, 0, 0, 0, 0.25, 0.25]
    _fake_run(out, 0, "toy-40", start_p=0.024, end_p=0.015, curve_p=0.02, correct_per_step=accuracy)
    _fake_run(out, 0, "g32x2-40", start_p=0.024, end_p=0.030, curve_p=0.03, correct_per_step=[0.5] * 12)
    a = run_summary(out, 0, "base", "toy-40")
    assert a["delta_pass1"] == pytest.approx(-0.009)  # 0.015 - 0.024
    assert a["skipped"] == 9 and a["steps"] == 12
    assert a["accuracy_first10"] == pytest.approx(0.05)  # 0.5 / 10
    assert a["accuracy_last10"] == pytest.approx(0.1)  # steps 3-12: (0.5 + 0.25 + 0.25) / 10
    assert a["entropy_first10"] == pytest.approx(0.55)  # 0.1 x (1 + ... + 10) / 10
    assert a["curve"] == [[0, 0.024, 0.2], [5, 0.02, None]]  # step 0 is the start's 64-sample evaluation
    assert run_summary(out, 1, "base", "toy-40") is None  # not run: left out, no error
    b = run_summary(out, 0, "base", "g32x2-40")
    text = summary_markdown([a, b], {"verdicts": {}, "passed": [], "chosen": None}, 0.005)
    rows = [line for line in text.splitlines() if line.startswith("| toy-40") or line.startswith("| g32x2-40")]
    assert rows[0] == (
        "| toy-40 | base | 0 | 0.024 -> 0.015 | -0.009 | 0.200 -> 0.300 | 0.050 -> 0.100 | 9.0 of 12 "
        "| 0.550 -> 0.750 | 2.0 |"  # entropy of steps 3-12: 0.1 x (3 + ... + 12) / 10 = 0.75
    )
    assert rows[1].startswith("| g32x2-40 | base | 0 | 0.024 -> 0.030 | +0.006 | ") and "| 0.0 of 12 |" in rows[1]


def _cells(changes: dict, primed_end: float) -> dict:
    """{start: [run per seed]} with the given per-seed changes; every primed run ends at primed_end."""
    return {
        start: [{"delta_pass1": d, "end_pass1": primed_end if start != "base" else 0.02} for d in deltas]
        for start, deltas in changes.items()
    }


def test_decision_rule_hand_made():
    keeps = {"base": [0.0, 0.002, -0.002], "outcome": [0.01, 0.0, 0.0], "process": [0.0, 0.0, 0.0]}
    seed_falls = {**keeps, "base": [0.02, 0.02, -0.009]}  # mean +0.010 >= 0, but one seed falls by 0.009 > 0.005
    loses_gain = {**keeps, "process": [0.003, -0.004, -0.002]}  # each seed within X, but the mean -0.001 < 0
    cells = {
        "toy-40": _cells(seed_falls, 0.09),
        "g32x2-40": _cells(keeps, 0.06),
        "lr2e-5-120": _cells(keeps, 0.064),  # 0.004 above g32x2-40: within 0.005, so the cheaper g32x2-40 wins
        "g16x4-40": _cells(loses_gain, 0.10),
    }
    d = decide(cells, tolerance=0.005)
    assert d["passed"] == ["g32x2-40", "lr2e-5-120"] and d["chosen"] == "g32x2-40"
    assert d["verdicts"]["toy-40"] == ["base: a seed falls by 0.0090 > 0.005"]
    assert d["verdicts"]["g16x4-40"] == ["process: mean change -0.0010 < 0"]
    cells["lr2e-5-120"] = _cells(keeps, 0.066)  # 0.006 above: more than X, the better one wins
    assert decide(cells, 0.005)["chosen"] == "lr2e-5-120"
    # none passes: the closest is the one whose worst mean change over the starts is highest
    none = decide({"toy-40": cells["toy-40"], "g16x4-40": cells["g16x4-40"]}, 0.005)
    # toy-40's mean changes: base (0.02 + 0.02 - 0.009) / 3 = +0.0103, outcome +0.0033, process 0 -> worst 0;
    # g16x4-40's: base 0, outcome +0.0033, process -0.001 -> worst -0.001
    assert none["passed"] == [] and none["chosen"] == "toy-40"
    assert none["worst_mean_change"]["g16x4-40"] == pytest.approx(-0.001)
