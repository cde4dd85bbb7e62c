"""Evaluation draws depend only on (seed, problems, weights) and never touch the training stream
(evaluate.fixed_draws): the same weights score the same in evaluate.py and inside a training run, a Stage II whose
updates were all skipped scores like its start, and --eval_every changes no training metric."""

import json
import os

import torch

import evaluate
import train_stage1
import train_stage2
from plumbing.common import load_model, load_problem_set
from toy import TOY_DATA

EVAL = dict(eval_data="toy:heldout", eval_limit=6, eval_n=8)  # 6 held-out problems x 8 samples


def tiny_run(tmp_path, name: str, **overrides):
    args = train_stage1.Args(
        output_dir=str(tmp_path / name), group_size=4, prompts_per_step=2, steps=3, threads=1, seed=5, **overrides
    )
    return train_stage1.main(args), str(tmp_path / name)


def metrics(run_dir: str) -> list[dict]:
    """Every training line of metrics.jsonl without its timing fields."""
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [{k: v for k, v in r.items() if "time" not in k and "seconds" not in k} for r in rows]


def test_the_same_weights_score_the_same_wherever_they_are_evaluated(tmp_path):
    torch.set_num_threads(1)
    evals, _ = tiny_run(tmp_path, "run", **EVAL)
    model, tokenizer = load_model("toy")
    problems = load_problem_set(TOY_DATA["toy:heldout"], limit=6)
    alone = evaluate.evaluate(model, problems, n=8, tokenizer=tokenizer, seed=5)  # what evaluate.py --seed 5 does
    assert alone["correct_counts"] == evals["before"]["correct_counts"]  # the step-0 evaluation of the run
    # a different random history before the call changes nothing: the draws are the seed's
    torch.manual_seed(12345)
    torch.rand(1000)
    again = evaluate.evaluate(model, problems, n=8, tokenizer=tokenizer, seed=5)
    assert again["correct_counts"] == alone["correct_counts"]
    # and the caller's stream is left where it was: the next draw is the one it would have been without the call
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    evaluate.evaluate(model, problems[:1], n=2, tokenizer=tokenizer, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_a_stage2_whose_updates_were_all_skipped_scores_like_its_start(tmp_path):
    # Stage II (sparse reward) on problems the base never solves: every group is all-zero, every update skipped,
    # the weights stay the base's; its before and after evaluations are the same draws on the same weights
    torch.set_num_threads(1)
    args = train_stage2.Args(
        model="toy",
        output_dir=str(tmp_path / "s2"),
        group_size=2,
        prompts_per_step=2,
        steps=2,
        threads=1,
        seed=3,
        **EVAL,
    )
    evals = train_stage2.main(args)
    skipped = [json.loads(line) for line in open(tmp_path / "s2" / "metrics.jsonl")]
    assert all(r["answer_accuracy"] == 0 and r["skipped_update"] == 1 for r in skipped)  # no signal, no update
    assert evals["after"]["correct_counts"] == evals["before"]["correct_counts"]
    model, tokenizer = load_model("toy")
    problems = load_problem_set(TOY_DATA["toy:heldout"], limit=6)
    start = evaluate.evaluate(model, problems, n=8, tokenizer=tokenizer, seed=3)
    assert evals["after"]["correct_counts"] == start["correct_counts"]


def test_eval_every_changes_no_training_metric(tmp_path):
    torch.set_num_threads(1)
    tiny_run(tmp_path, "every0", eval_every=0, **EVAL)
    tiny_run(tmp_path, "every1", eval_every=1, **EVAL)
    assert metrics(str(tmp_path / "every0")) == metrics(str(tmp_path / "every1"))
    a = torch.load(tmp_path / "every0" / "checkpoint" / "trainer_state.pt", weights_only=False)
    b = torch.load(tmp_path / "every1" / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert a["step"] == b["step"] == 3
