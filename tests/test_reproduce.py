"""The reproduction driver end to end in a tiny configuration: every method's commands run, results.md and plots."""

import glob
import json
import os
import shutil

import pytest

from scripts.reproduce import METHODS, Args, chain, is_done, main
from scripts.reproduce_report import mean_std, paired_markdown, report


def test_mean_std_uses_the_sample_std_over_seeds():
    assert mean_std([0.1, 0.3]) == "0.200 ± 0.141"  # std with ddof 1: sqrt(0.02) = 0.1414
    assert mean_std([0.25]) == "0.250"


def test_paired_comparisons_count_seeds_and_difference_hand_computed():
    def results(*pass1):
        return [{"pass@k": {"1": v}} for v in pass1]

    table = {
        "dev": {
            "stage1": {"base": results(0.02, 0.03), "process": results(0.05, 0.01)},
            "stage2": {"base": results(0.04, 0.04), "process": results(0.10, 0.14), "sparse": results(0.20, 0.02)},
        }
    }
    text = paired_markdown(table, seeds=[0, 1])
    # Stage I: 0.05 - 0.02 = +0.03, 0.01 - 0.03 = -0.02 -> 1 win, 0 ties, 1 loss; mean +0.005, std sqrt(0.00125),
    # half-width t_{0.975, 1} * std / sqrt(2) = 12.7062 * 0.025 = 0.318
    assert "| ExpRL-Process > Base (no Stage I) | Stage I | dev | 1-0-1 +0.005 [-0.313, +0.323] |" in text
    # +0.06, +0.10: mean 0.08, std 0.0283, half 12.7062 * 0.02 = 0.254
    assert "| ExpRL-Process > Base (no Stage I) | Stage II | dev | 2-0-0 +0.080 [-0.174, +0.334] |" in text
    # -0.10, +0.12: mean 0.01, std 0.1556, half 12.7062 * 0.11 = 1.398
    assert "| ExpRL-Process > Sparse GRPO | Stage II | dev | 1-0-1 +0.010 [-1.388, +1.408] |" in text
    assert "ExpRL-Outcome" not in text  # orderings with a method that did not run are left out
    assert "Held: none." in text and "Reversed: none." in text


def test_paired_verdicts_over_four_seeds_hand_computed():
    def results(*pass1):
        return [{"pass@k": {"1": v}} for v in pass1]

    table = {
        "dev": {
            "stage1": {"base": results(0.10, 0.10, 0.10, 0.10), "process": results(0.12, 0.14, 0.16, 0.18)},
            "stage2": {"base": results(0.10, 0.10, 0.10, 0.10), "process": results(0.09, 0.08, 0.06, 0.05)},
        }
    }
    text = paired_markdown(table, seeds=[0, 1, 2, 3])
    # Stage I: d = 0.02, 0.04, 0.06, 0.08: mean 0.05, std sqrt(0.002 / 3) = 0.02582, se 0.01291,
    # half t_{0.975, 3} * se = 3.1824 * 0.01291 = 0.0411 -> [0.009, 0.091], above 0
    assert "| Stage I | dev | 4-0-0 +0.050 [+0.009, +0.091] **held** |" in text
    # Stage II: d = -0.01, -0.02, -0.04, -0.05: mean -0.03, std sqrt(0.001 / 3) = 0.01826, se 0.00913,
    # half 3.1824 * 0.00913 = 0.0291 -> [-0.059, -0.001], below 0
    assert "| Stage II | dev | 0-0-4 -0.030 [-0.059, -0.001] **reversed** |" in text
    assert "Held: ExpRL-Process > Base (no Stage I) (Stage I, dev, pass@1)." in text
    assert "Reversed: ExpRL-Process > Base (no Stage I) (Stage II, dev, pass@1)." in text


def test_every_method_is_one_stage1_command_then_the_same_stage2():
    data = {"train": "t.jsonl", "heldout": "h.jsonl"}
    stage2_commands = []
    for method in METHODS:
        (dir1, first), (dir2, second), (test1, _), (test2, _) = chain(Args(output_dir="out"), data, method, seed=3)
        assert (test1, test2) == (os.path.join(dir1, "test"), os.path.join(dir2, "test"))  # both on the test split
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
        test_n=2,
        test_limit=2,
        test_data=str(tmp_path / "data" / "heldout.jsonl"),  # a smoke test: the real test split is not read here
    )
    text = main(args)
    for title in ("After Stage I", "After Stage I + the same Stage II", "seed by seed", "During training"):
        assert title in text
    for method in methods.split(","):
        assert text.count(f"| {METHODS[method][0]} |") == 3  # one row in each table
    outcome_row = [line for line in text.splitlines() if line.startswith("| ExpRL-Outcome |")][-1]
    assert " of 1 |" in outcome_row and " -> " in outcome_row  # its Stage-II skipped count and unsolved trend
    assert os.path.getsize(tmp_path / "passk.png") > 1000 and os.path.getsize(tmp_path / "stage1_training.png") > 1000
    result = json.load(open(tmp_path / "s0" / "outcome" / "stage2" / "eval" / "step_0001" / "pass_at_k.json"))
    assert result["n"] == 2 and result["num_problems"] == 2
    # the reported pass@1 is the mean fraction correct of the saved per-problem counts (n = 2 samples each)
    assert result["pass@k"]["1"] == sum(c / 2 for c in result["correct_counts"]) / 2
    test = json.load(open(tmp_path / "s0" / "outcome" / "stage2" / "test" / "pass_at_k.json"))
    assert (test["n"], test["num_problems"]) == (2, 2) and "test pass@1" in text
    logs = sorted(glob.glob(str(tmp_path / "**" / "log.txt"), recursive=True))
    stamps = [os.stat(path).st_mtime_ns for path in logs]
    assert len(logs) >= 4 * len(methods.split(","))  # Stage I (or SFT / evaluation), Stage II, a test per stage
    main(args)  # every run has its done marker: nothing is rerun
    assert [os.stat(path).st_mtime_ns for path in logs] == stamps


def _fake_run(root, split_files: dict, skipped: list[int] | None = None):
    """A run directory as the reproduction leaves it: eval/step_0040/pass_at_k.json (dev), test/pass_at_k.json,
    and a metrics.jsonl with the given skipped_update flags."""
    for where, pass_at_k in split_files.items():
        path = root / ("eval/step_0040" if where == "dev" else "test") / "pass_at_k.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"n": 4, "num_problems": 2, "pass@k": pass_at_k}))
    if skipped is not None:
        lines = [json.dumps({"step": i + 1, "skipped_update": s, "fully_unsolved": 1.0}) for i, s in enumerate(skipped)]
        (root / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_report_of_a_hand_made_reproduction(tmp_path):
    # two seeds, two methods; pass@k values chosen so that every cell can be checked by hand
    config = {"methods": "base,outcome", "seeds": "0,1", "stage1_steps": 2, "stage2_steps": 2, "prompts_per_step": 1,
              "group_size": 2, "sft_epochs": 1, "eval_n": 4}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    dev = {"base": [0.10, 0.20], "outcome": [0.30, 0.20]}  # pass@1 per seed, after both stages
    test = {"base": [0.05, 0.05], "outcome": [0.25, 0.15]}
    for seed in (0, 1):
        for method in ("base", "outcome"):
            for stage in ("stage1", "stage2"):
                files = {
                    "dev": {"1": dev[method][seed], "2": 0.5, "4": 0.5},
                    "test": {"1": test[method][seed], "2": 0.5, "4": 0.5},
                }
                skipped = [1, 1] if (method, stage) == ("base", "stage2") and seed == 1 else [0, 1]
                _fake_run(
                    tmp_path / f"s{seed}" / method / stage,
                    files,
                    None if stage == "stage1" and method == "base" else skipped,
                )
    text = report(str(tmp_path))
    # outcome dev pass@1: mean (0.30 + 0.20) / 2 = 0.25, sample std |0.30 - 0.20| / sqrt(2) = 0.0707
    # outcome test pass@1: (0.25 + 0.15) / 2 = 0.20, std 0.0707; pass@4 0.5 in every run (std 0)
    row = "| ExpRL-Outcome | 0.250 ± 0.071 | 0.500 ± 0.000 | 0.200 ± 0.071 | 0.500 ± 0.000 | "
    row += "0.300, 0.200 | 0.250, 0.150"
    assert text.count(row) == 2  # the same numbers after Stage I and after Stage II
    # base: dev (0.10 + 0.20) / 2 = 0.15, std 0.0707; test 0.05 twice: std 0
    assert "| Base (no Stage I) | 0.150 ± 0.071 | 0.500 ± 0.000 | 0.050 ± 0.000 |" in text
    # the ordering outcome > base at pass@1: dev +0.20 and 0.00 -> 1 win, 1 tie, 0 losses, mean +0.10, std 0.1414,
    # half-width t_{0.975, 1} * 0.1414 / sqrt(2) = 12.7062 * 0.1 = 1.271; test +0.20 and +0.10 -> 2-0-0, mean +0.15,
    # std 0.0707, half 12.7062 * 0.05 = 0.635; pass@4: all equal -> 0-2-0, a zero-width interval (not separable)
    assert "| ExpRL-Outcome > Base (no Stage I) | Stage II | dev | 1-1-0 +0.100 [-1.171, +1.371] |" in text
    assert "| ExpRL-Outcome > Base (no Stage I) | Stage II | test | 2-0-0 +0.150 [-0.485, +0.785] |" in text
    assert "0-2-0 +0.000 [+0.000, +0.000] |" in text
    # base's Stage II skipped both updates in seed 1 only: 1 of 2 runs unchanged; mean skipped (2 + 1) / 2 = 1.5
    assert "| Base (no Stage I) |  |  |  |  | 1.5 of 2 | 1 of 2 |" in text
    # the headline: mean with its 95% t interval, half-width t_{0.975, 1} * std / sqrt(2) = 12.7062 * 0.05 = 0.635
    # for outcome's pass@1 (std 0.0707 on both splits); pass@n = pass@4 is 0.5 everywhere (zero width); the runs
    # have no pass@16, so its column after Stage I is left out
    heads = "| method | after Stage I: test pass@1 | after Stage I + Stage II: dev pass@1 | test pass@1 | test pass@4 |"
    assert heads in text
    outcome = "| ExpRL-Outcome | 0.200 [-0.435, 0.835] | 0.250 [-0.385, 0.885] | 0.200 [-0.435, 0.835] | "
    assert outcome + "0.500 [0.500, 0.500] |" in text
    assert os.path.getsize(tmp_path / "paired.png") > 1000
    # --report_dir: the same report elsewhere, the run directory left as it was
    os.remove(tmp_path / "results.md")
    assert report(str(tmp_path), dest=str(tmp_path / "partial")) == text and not (tmp_path / "results.md").exists()
    assert sorted(os.listdir(tmp_path / "partial")) == ["paired.png", "passk.png", "results.md", "stage1_training.png"]


COMMITTED = ["reproduce-toy-v3", "reproduce-llm-like-v2", "reproduce-llm-like-v1", "reproduce-toy-rubric"]


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_reproduction_table_matches_its_logs(name):
    """results/<name>/results.md, recomputed here without the report code: each cell of the first pass@1 column is
    the mean and sample std over seeds of the runs' own pass_at_k.json."""
    from plumbing.common import REPO

    committed = os.path.join(REPO, "results", name)
    config = json.load(open(os.path.join(committed, "config.json")))
    seeds = config["seeds"].split(",")
    text = open(os.path.join(committed, "results.md")).read()
    labels = {
        "outcome": "ExpRL-Outcome",
        "process": "ExpRL-Process",
        "sparse": "Sparse GRPO",
        "base": "Base (no Stage I)",
    }
    for stage, heading in (("stage1", "## After Stage I ("), ("stage2", "## After Stage I + the same Stage II")):
        table = text[text.index(heading) :].split("\n\n")[1]
        for method, label in labels.items():
            values = []
            for s in seeds:
                evals = sorted(
                    glob.glob(os.path.join(committed, f"s{s}", method, stage, "eval", "*", "pass_at_k.json"))
                )
                values.append(json.load(open(evals[-1]))["pass@k"]["1"])
            mean = sum(values) / len(values)
            std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
            row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
            assert row.split(" | ")[1] == f"{mean:.3f} ± {std:.3f}", (stage, method)


def test_restore_takes_only_columns_finished_in_the_logs(tmp_path):
    from scripts.reproduce import restore

    args = Args(output_dir=str(tmp_path / "runs"), logs_dir=str(tmp_path / "logs"))
    data = {"train": "t.jsonl", "heldout": "h.jsonl"}
    whole, half = chain(args, data, "base", seed=0), chain(args, data, "sparse", seed=0)
    for steps, finished in ((whole, 4), (half, 3)):  # the sparse column lacks its last run's done marker
        for run_dir, _ in steps[:finished]:
            logged = os.path.join(args.logs_dir, os.path.relpath(run_dir, args.output_dir))
            os.makedirs(logged, exist_ok=True)
            open(os.path.join(logged, "done"), "w").write("1.0\n")
            open(os.path.join(logged, "metrics.jsonl"), "w").write("{}\n")
    assert restore(args, [whole, half]) == 1
    assert all(is_done(run_dir) for run_dir, _ in whole)
    assert not any(os.path.exists(run_dir) for run_dir, _ in half)
    assert restore(args, [whole, half]) == 0  # already there: nothing to copy


def test_a_reproduction_resumes_on_a_fresh_checkout_from_its_logs(tmp_path):
    """The runs are lost, the logs committed: a driver started again restores the finished column and reruns
    nothing, and the report recomputed from the logs alone is the driver's."""
    sizes = dict(methods="base", seeds="0", stage2_recipe="toy-40", stage2_steps=1, group_size=2, prompts_per_step=2,
                 eval_n=2, eval_limit=2, test_n=2, test_limit=2, logs_dir=str(tmp_path / "logs"))  # fmt: skip
    first = main(Args(output_dir=str(tmp_path / "runs"), **sizes))
    logs = tmp_path / "logs"
    assert (logs / "s0" / "base" / "stage2" / "done").exists() and (logs / "results.md").exists()
    assert not glob.glob(str(logs / "**" / "checkpoint"), recursive=True)  # the logs carry no weights
    shutil.rmtree(tmp_path / "runs")
    second = main(Args(output_dir=str(tmp_path / "fresh"), **sizes))
    assert not (tmp_path / "fresh" / "s0" / "base" / "stage2" / "checkpoint").exists()  # restored, not rerun
    table = lambda text: text[text.index("## After Stage I") :]
    assert table(second) == table(first) == table(report(str(logs)))
    assert "Stage II: `toy-40`, 1 steps x 2 prompts x 2 rollouts, lr 0.0001." in first


def test_report_command_names_an_unfinished_seed_in_one_line(tmp_path):
    import subprocess
    import sys

    from plumbing.common import REPO

    (tmp_path / "config.json").write_text(json.dumps({"methods": "base,outcome", "seeds": "0,1"}))
    for method in ("base", "outcome"):
        for stage in ("stage1", "stage2"):
            (tmp_path / "s0" / method / stage).mkdir(parents=True)
            (tmp_path / "s0" / method / stage / "done").write_text("")
    command = [sys.executable, "-m", "scripts.reproduce_report", "--output_dir", str(tmp_path)]
    for seeds, message in (
        ([], f"error: --seeds: s1/base/stage1 has not finished in {tmp_path} (no done marker)"),
        (["--seeds", "0,x"], "error: --seeds '0,x': expected comma-separated integers, e.g. 0,1,2"),
    ):
        done = subprocess.run(command + seeds, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 1 and done.stderr.strip() == message


def test_readme_result_table_is_recomputed_from_the_committed_logs():
    """The README's table, recomputed from results/reproduce/'s logs by the report's own headline function over the
    seeds the README names: the two cannot drift apart."""
    import re

    from plumbing.common import REPO
    from scripts.reproduce_report import collect, headline_markdown

    readme = open(os.path.join(REPO, "README.md")).read()
    section = readme[readme.index("## One result") :]
    seeds = [int(s) for s in re.search(r"mean over seeds ([0-9, ]+) with its 95% t interval", section)[1].split(",")]
    logs = os.path.join(REPO, "results", "reproduce")
    methods = json.load(open(os.path.join(logs, "config.json")))["methods"].split(",")
    expected = [line for line in headline_markdown(collect(logs, methods, seeds), seeds).splitlines() if "|" in line]
    table = section[section.index("| method | after Stage I: test pass@1") :].split("\n\n")[0]
    assert len(seeds) >= 5 and table.splitlines() == expected
