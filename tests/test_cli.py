"""Bad command lines and bad input files: one line naming the flag (and file, line, field), exit status 2, before
anything is loaded or written."""

import subprocess
import sys

import pytest

from plumbing.common import REPO
from train_stage1 import Args, main, parse_args


def usage_error(call, capsys) -> str:
    """Run call(); it must exit with status 2 and one line on stderr. Returns that line."""
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["--reward", "foo"],
            "argument --reward: invalid choice: 'foo' (choose from 'outcome', 'process', 'sparse', 'self_distill')",
        ),
        (["--reward", "process", "--advantage", "bar"], "argument --advantage: invalid choice: 'bar'"),
        (["--process_view", "whole"], "argument --process_view/--process-view: invalid choice: 'whole'"),
        (["--engine", "sglang"], "argument --engine: invalid choice: 'sglang'"),
        (["--data_parallel", "zero3"], "argument --data_parallel/--data-parallel: invalid choice: 'zero3'"),
        (["--loss_agg", "mean"], "argument --loss_agg/--loss-agg: invalid choice: 'mean'"),
        (["--preset", "paper-70b"], "argument --preset: invalid choice: 'paper-70b'"),
        (["--group_size", "x"], "argument --group_size/--group-size: invalid int value: 'x'"),
        (["--prompts_per_step", "0"], "--prompts_per_step 0: must be >= 1"),
        (["--group_size", "0"], "--group_size 0: must be >= 1"),
        (["--steps", "-1"], "--steps -1: must be >= 0"),
        (["--lr", "0"], "--lr 0.0: must be > 0 and finite"),
        (["--lr", "nan"], "--lr nan: must be > 0 and finite"),
        (["--temperature", "0"], "--temperature 0.0: must be > 0 and finite"),
        (["--max_new_tokens", "0"], "--max_new_tokens 0: must be >= 1"),
        (["--clip_low", "-0.1"], "--clip_low -0.1: must be in [0, 1)"),
        (["--clip_high", "-1"], "--clip_high -1.0: must be >= 0"),
        (["--dual_clip", "0.5"], "--dual_clip 0.5: must be > 1"),
        (["--vllm_kwargs", "{bad"], "--vllm_kwargs '{bad': must be a JSON object"),
        (["--no_such_flag", "1"], "unrecognized arguments: --no_such_flag 1"),
    ],
)
def test_bad_flags_stop_at_parse_time_with_one_line(argv, expected, capsys):
    assert expected in usage_error(lambda: parse_args(argv), capsys)


def test_bad_problem_files_name_the_file_line_and_field(tmp_path, capsys):
    empty, broken, missing_field = tmp_path / "empty.jsonl", tmp_path / "broken.jsonl", tmp_path / "field.jsonl"
    empty.write_text("")
    broken.write_text('{"question": "q", "reference": "r", "answer": "1"}\n{not json\n')
    missing_field.write_text('{"question": "q", "answer": "1"}\n')
    out = tmp_path / "run"
    cases = [
        (empty, f"--train_data: {empty}: no problems (the file or dataset is empty)"),
        (broken, f"--train_data: {broken} line 2: invalid JSON"),
        (missing_field, f"--train_data: {missing_field} line 1"),
        (tmp_path / "nope.jsonl", f"--train_data: cannot read problems file {tmp_path / 'nope.jsonl'}"),
    ]
    for path, expected in cases:
        line = usage_error(lambda: main(Args(train_data=str(path), output_dir=str(out))), capsys)
        assert line.startswith(f"error: {expected}"), line
    assert "reference" in usage_error(lambda: main(Args(train_data=str(missing_field), output_dir=str(out))), capsys)
    assert not out.exists()  # nothing written before the inputs were checked


def test_missing_model_and_judge_directories(tmp_path, capsys):
    out = tmp_path / "run"
    line = usage_error(lambda: main(Args(model=str(tmp_path / "nomodel"), output_dir=str(out))), capsys)
    assert line.startswith("error: --model: model") and "no config.json" in line
    line = usage_error(lambda: main(Args(judge=str(tmp_path / "nojudge"), output_dir=str(out))), capsys)
    assert line.startswith("error: --judge: model")
    assert not out.exists()


def test_http_judge_without_the_openai_package_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openai" else real_find_spec(name, *a)
    )
    line = usage_error(lambda: main(Args(judge="http://127.0.0.1:8000/v1", output_dir=str(tmp_path / "run"))), capsys)
    assert line == "error: --judge http://127.0.0.1:8000/v1: an HTTP judge needs the openai client: pip install openai"


def test_self_distill_is_run_from_baselines(tmp_path, capsys):
    line = usage_error(lambda: main(Args(reward="self_distill", output_dir=str(tmp_path / "run"))), capsys)
    assert "python baselines.py self_distill" in line


@pytest.mark.parametrize(
    "script, argv, expected",
    [
        ("train_stage1.py", ["--reward", "foo"], "error: argument --reward: invalid choice: 'foo'"),
        ("train_stage2.py", ["--model", "toy", "--group_size", "0"], "error: --group_size 0: must be >= 1"),
        ("baselines.py", ["sft", "--epochs", "0"], "error: --epochs 0: must be >= 1"),
        ("baselines.py", ["dpo"], "error: usage: python baselines.py sft|self_distill"),
    ],
)
def test_scripts_exit_2_with_one_line_and_no_traceback(script, argv, expected):
    out = subprocess.run([sys.executable, script, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and out.stderr.startswith(expected), out.stderr


def test_evaluate_and_the_analyses_check_their_flags_and_files(tmp_path, capsys):
    import evaluate
    from analysis import calibrate, injection, plots

    rollouts = tmp_path / "r.jsonl"
    rollouts.write_text("")
    cases = [
        (lambda: evaluate.main(["--n", "0"]), "error: --n 0: must be >= 1"),
        (lambda: evaluate.main(["--temperature", "nan"]), "error: --temperature nan: must be >= 0 and finite"),
        (lambda: evaluate.main(["--data", str(tmp_path / "none.jsonl")]), "error: --data: cannot read problems file"),
        (lambda: evaluate.main(["--model", str(tmp_path)]), "error: --model: model"),
        (lambda: evaluate.main(["--n", "x"]), "error: argument --n: invalid int value: 'x'"),
        (
            lambda: calibrate.main(["--rollouts", str(tmp_path / "x.jsonl")]),
            f"error: --rollouts {tmp_path / 'x.jsonl'}: no such file",
        ),
        (
            lambda: calibrate.main(["--rollouts", str(rollouts), "--min_score", "6"]),
            "error: --min_score 6: must be in 1..5",
        ),
        (lambda: injection.main(["--rollouts", str(rollouts), "--limit", "-1"]), "error: --limit -1: must be >= 0"),
        (lambda: plots.main([str(tmp_path), "--bogus"]), "error: unrecognized arguments: --bogus"),
    ]
    for call, expected in cases:
        assert usage_error(call, capsys).startswith(expected)
