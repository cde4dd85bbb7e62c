"""The reproduction driver end to end in a tiny configuration: every method's commands run, results.md and plots."""

import glob
import json
import os

import pytest

from scripts.reproduce import METHODS, Args, chain, main
from scripts.reproduce_report import mean_std, paired_markdown, report


def test_mean_std_uses_the_sample_std_over_seeds():
    assert mean_std([0.1, 0.3]) == "0.200 ± 0.141"  # std with ddof 1: sqrt(0.02) = 0.1414
    assert mean_std([0.25]) == "0.250"


def test_paired_comparisons_count_seeds_and_difference_hand_computed():
    def results(*pass1):
        return [{"pass@k": {"1": v}} for v in pass1]

    table = {
        "stage1": {"base": results(0.02, 0.03), "process": results(0.05, 0.01)},
        "stage2": {"base": results(0.04, 0.04), "process": results(0.10, 0.14), "sparse": results(0.20, 0.02)},
    }
    text = paired_markdown(table, seeds=[0, 1])
    # Stage I: 0.05 - 0.02 = +0.03, 0.01 - 0.03 = -0.02 -> holds in 1 of 2, mean +0.005, std sqrt(0.00125) = 0.035
    assert "| ExpRL-Process > Base (no Stage I) | Stage I | 1 of 2 | +0.005 ± 0.035 |" in text
    assert "| ExpRL-Process > Base (no Stage I) | Stage II | 2 of 2 | +0.080 ± 0.028 |" in text  # +0.06, +0.10
    assert "| ExpRL-Process > Sparse GRPO | Stage II | 1 of 2 | +0.010 ± 0.156 |" in text  # -0.10, +0.12
    assert "ExpRL-Outcome" not in text  # orderings with a method that did not run are left out


def test_every_method_is_one_stage1_command_then_the_same_stage2():
    data = {"train": "t.jsonl", "heldout": "h.jsonl"}
    stage2_commands = []
    for method in METHODS:
        (dir1, first), (dir2, second) = chain(Args(output_dir="out"), data, method, seed=3)
        assert dir1 == os.path.join("out", "s3", method, "stage1") and second[0] == "train_stage2.py"
        start = second[second.index("--model") + 1]
        assert start == ("toy" if method == "base" else os.path.join(dir1, "checkpoint"))
        assert first[first.index("--seed") + 1] == "3"
        stage2_commands.append([a for a in second if "out" not in a and a != "toy"])
    assert all(c == stage2_commands[0] for c in stage2_commands)  # Stage II is identical for every method


def test_tiny_reproduction_writes_tables_and_plots_and_resumes(tmp_path):
    """Three methods keep it quick (each run is a fresh process); all six: `pytest -m slow` (below)."""
    _tiny_reproduction(tmp_path, "base,sft,outcome")


@pytest.mark.slow
def test_tiny_reproduction_all_methods(tmp_path):
    _tiny_reproduction(tmp_path, ",".join(METHODS))


def _tiny_reproduction(tmp_path, methods: str):
    args = Args(
        output_dir=str(tmp_path),
        methods=methods,
        seeds="0",
        mine=True,
        mine_candidates=6,
        mine_k=2,
        stage1_steps=1,
        stage2_steps=1,
        group_size=2,
        prompts_per_step=2,
        eval_n=2,
        eval_limit=2,
        sft_epochs=1,
    )
    text = main(args)
    for title in ("After Stage I", "After Stage I + the same Stage II", "seed by seed", "During training"):
        assert title in text
    recomputed = report(str(tmp_path))  # the report alone, from the run directories: the same tables
    assert recomputed.split("\n", 3)[3] == text.split("\n", 3)[3]  # all but the header line (command and time)
    for method in methods.split(","):
        assert text.count(f"| {METHODS[method][0]} |") == 3  # one row in each table
    outcome_row = [line for line in text.splitlines() if line.startswith("| ExpRL-Outcome |")][-1]
    assert " of 1 |" in outcome_row and " -> " in outcome_row  # its Stage-II skipped count and unsolved trend
    assert os.path.getsize(tmp_path / "passk.png") > 1000 and os.path.getsize(tmp_path / "stage1_training.png") > 1000
    result = json.load(open(tmp_path / "s0" / "outcome" / "stage2" / "eval" / "step_0001" / "pass_at_k.json"))
    assert result["n"] == 2 and result["num_problems"] == 2
    # the reported pass@1 is the mean fraction correct of the saved per-problem counts (n = 2 samples each)
    assert result["pass@k"]["1"] == sum(c / 2 for c in result["correct_counts"]) / 2
    logs = sorted(glob.glob(str(tmp_path / "**" / "log.txt"), recursive=True))
    stamps = [os.stat(path).st_mtime_ns for path in logs]
    assert len(logs) >= 2 * len(methods.split(","))  # a Stage I (or SFT / evaluation) and a Stage II log per method
    main(args)  # every run has its done marker: nothing is rerun
    assert [os.stat(path).st_mtime_ns for path in logs] == stamps


def test_committed_reproduction_tables_are_recomputed_from_its_logs(tmp_path):
    """results/reproduce/ holds the 5-seed run's logs; the report rebuilds its results.md from them, digit for digit."""
    import shutil

    from common import REPO

    committed = os.path.join(REPO, "results", "reproduce")
    copy = shutil.copytree(committed, tmp_path / "reproduce")
    text = report(str(copy))
    assert text.split("\n", 3)[3] == open(os.path.join(committed, "results.md")).read().split("\n", 3)[3]
    assert "| ExpRL-Process > Sparse GRPO | Stage II | 5 of 5 |" in text


def test_committed_judge_dial_is_recomputed_from_its_logs(tmp_path):
    import shutil

    from common import REPO
    from scripts import judge_dial

    committed = os.path.join(REPO, "results", "reproduce")
    copy = shutil.copytree(committed, tmp_path / "reproduce")
    # every run is done: nothing runs, everything is read back
    result = judge_dial.main(judge_dial.Args(output_dir=str(copy), seeds="0,1"))
    assert result == json.load(open(os.path.join(committed, "judge_dial.json")))
