"""Baselines (SFT, self-distillation) and Stage II: hand-checked pieces, then one real step each moving the weights."""

import copy
import json
import os

import pytest
import torch
from safetensors.torch import load_file

import toy.world as toy
from baselines import DistillArgs, SFTArgs, distill_signal, sft_batch, sft_step, teacher_messages, train_sft
from baselines import main as baselines_main
from domains.problems import encode_prompts, save_problems
from domains.records import Problem
from grpo import LossConfig, grpo_step, token_logprobs
from rollout import HFSampler, to_batch
from toy import TOY_BASE


def weight_change(checkpoint_dir) -> float:
    before = load_file(os.path.join(TOY_BASE, "model.safetensors"))
    after = load_file(os.path.join(checkpoint_dir, "model.safetensors"))
    return max((before[k] - after[k]).abs().max().item() for k in before)


# ------------------------------------------------------------------------------------------------------------ SFT
def test_sft_batch_puts_labels_on_reference_tokens_only(toy_model):
    _, tokenizer = toy_model
    problem = Problem("p", "12 +3", "Add 3: that gives 15. The answer is 15.", "15")
    batch = sft_batch(tokenizer, [problem, Problem("q", "1 +1", "Add 1.", "2")])
    prompt = encode_prompts(tokenizer, [[{"role": "user", "content": "12 +3"}]])[0]
    target = tokenizer(problem.reference, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    assert batch["input_ids"][0].tolist() == prompt + target  # the longer row has no padding
    assert batch["labels"][0].tolist() == [-100] * len(prompt) + target
    row = batch["attention_mask"][1]
    assert int(row.sum()) < batch["input_ids"].shape[1] and (batch["labels"][1][row == 0] == -100).all()


def test_sft_gradient_does_not_depend_on_micro_batch_size(toy_model):
    model, tokenizer = toy_model
    batch = sft_batch(tokenizer, toy.make_toy_problems(4, 8, 8, seed=3))
    deltas = []
    for micro in (4, 1):
        m = copy.deepcopy(model)
        before = [p.detach().clone() for p in m.parameters()]
        sft_step(m, torch.optim.SGD(m.parameters(), lr=1.0), batch, micro, max_grad_norm=1e9)
        deltas.append(torch.cat([(p.detach() - b).flatten() for p, b in zip(m.parameters(), before)]))
    assert deltas[0].abs().max() > 0
    torch.testing.assert_close(deltas[0], deltas[1], atol=2e-6, rtol=1e-4)


def test_sft_run_changes_weights_and_lowers_the_reference_loss(tmp_path, tiny_problems):
    args = SFTArgs(
        train_data=tiny_problems, eval_data="", output_dir=str(tmp_path), epochs=2, batch_size=2, threads=1, lr=1e-3
    )
    train_sft(args)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and [r["epoch"] for r in rows] == [0, 0, 1, 1]
    assert rows[-1]["loss"] < rows[0]["loss"]  # words are new to the toy base: the reference loss must fall
    assert weight_change(tmp_path / "checkpoint") > 0


# ------------------------------------------------------------------------------------------ self-distillation
def sample(model, tokenizer, problems, n=2):
    torch.manual_seed(0)
    prompts = encode_prompts(tokenizer, [[{"role": "user", "content": p.question}] for p in problems])
    return HFSampler(model, tokenizer, max_new_tokens=24).sample(prompts, n=n)


def test_distill_signal_is_zero_when_teacher_is_student_in_the_same_context(toy_model):
    model, tokenizer = toy_model
    rollouts = sample(model, tokenizer, toy.make_toy_problems(2, 8, 8, seed=5))
    signal = distill_signal(model, model, rollouts, [r.prompt_ids for r in rollouts], pad_id=tokenizer.pad_token_id)
    assert [len(s) for s in signal] == [len(r.response_ids) for r in rollouts]
    assert all(torch.equal(s, torch.zeros_like(s)) for s in signal)
    # ... and not zero once the teacher sees the reference
    problems = toy.make_toy_problems(2, 8, 8, seed=5)
    teacher_prompts = encode_prompts(tokenizer, [teacher_messages(problems[i // 2]) for i in range(4)])
    signal = distill_signal(model, model, rollouts, teacher_prompts, pad_id=tokenizer.pad_token_id)
    assert max(s.abs().max().item() for s in signal) > 0.01


def test_distill_as_advantage_has_the_gradient_of_the_papers_loss(toy_model):
    """grpo_step with A_t = -d_t (on-policy, no clip hit) == grad of token-mean(d_t * log pi_theta(y_t))."""
    model, tokenizer = toy_model
    rollouts = sample(model, tokenizer, toy.make_toy_problems(2, 8, 8, seed=7))
    torch.manual_seed(1)
    d = [torch.randn(len(r.response_ids)) for r in rollouts]  # any detached per-token signal
    batch = to_batch(rollouts, tokenizer.pad_token_id)
    P = batch["input_ids"].shape[1] - max(len(r.response_ids) for r in rollouts)
    signal = torch.zeros(batch["input_ids"].shape)  # [B, L]
    for i, x in enumerate(d):
        signal[i, P : P + len(x)] = x
    # the paper's loss, by hand
    m1 = copy.deepcopy(model)
    lp = token_logprobs(
        m1, batch["input_ids"], batch["attention_mask"], batch["response_mask"], micro_batch_size=64
    )  # [B, L]
    mask = batch["response_mask"].bool()
    ((signal * lp)[mask].sum() / mask.sum()).backward()
    expected = torch.cat([p.grad.flatten() for p in m1.parameters()])
    # the same through grpo_step: SGD with lr 1 makes the weight change equal to minus the gradient
    m2 = copy.deepcopy(model)
    before = [p.detach().clone() for p in m2.parameters()]
    grpo_step(
        m2,
        torch.optim.SGD(m2.parameters(), lr=1.0),
        {**batch, "advantages": -signal},
        LossConfig(dual_clip=None),
        micro_batch_size=64,
        max_grad_norm=None,
    )
    got = torch.cat([(b - p.detach()).flatten() for p, b in zip(m2.parameters(), before)])
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-4)


def test_one_self_distill_step_changes_weights(tmp_path, tiny_flags):
    baselines_main(["self_distill", *tiny_flags(group_size=2, prompts_per_step=2, lr="1e-3", weight_decay=0)])
    row = json.loads(open(tmp_path / "metrics.jsonl").readline())
    assert row["judge_score"] > 0  # mean d_t: the base is more confident without the reference than with it
    assert weight_change(tmp_path / "checkpoint") > 0
    with pytest.raises(SystemExit, match="updates_per_step.*invalid choice: 2"):
        baselines_main(["self_distill", "--updates_per_step", "2"])
    assert DistillArgs().kl_coef == 0.0 and DistillArgs().reward == "self_distill"


# ------------------------------------------------------------------------------------------------------ Stage II
def test_stage2_defaults_follow_the_paper_and_reject_judge_rewards():
    from train_stage2 import parse_args

    args = parse_args(["--model", "toy"])
    assert (args.reward, args.kl_coef, args.entropy_coef, args.max_grad_norm, args.scale_advantages) == (
        "sparse",
        0.0,
        1e-4,
        0.3,
        False,
    )
    with pytest.raises(SystemExit, match="--reward: invalid choice: 'outcome'"):
        parse_args(["--model", "toy", "--reward", "outcome"])
    with pytest.raises(SystemExit, match="Run Stage I first"):
        parse_args(["--model", "/no/such/checkpoint"])
    paper = parse_args(["--preset", "paper-4b", "--model", "toy", "--train_data", "x.jsonl"])
    assert (paper.group_size, paper.prompts_per_step, paper.steps, paper.lr) == (32, 32, 500, 1e-6)


def test_one_stage2_step_from_a_checkpoint_changes_weights(tmp_path, tiny_flags):
    """Stage II on problems the base solves about half the time (7 ops), so groups have mixed 0/1 rewards and a
    gradient (on 2-op problems every rollout is right: no advantage, and --skip_no_signal skips the step)."""
    from train_stage2 import main, parse_args

    data = tmp_path / "easy.jsonl"
    save_problems(toy.make_toy_problems(4, 7, 7, seed=1), str(data))
    args = parse_args(tiny_flags(train_data=data, output_dir=tmp_path / "run", lr="1e-3", weight_decay=0))
    main(args)
    row = json.loads(open(tmp_path / "run" / "metrics.jsonl").readline())
    assert 0 < row["answer_accuracy"] < 1 and row["judge_score"] == row["answer_accuracy"]
    assert row["zero_std_groups"] < 1 and row["skipped_update"] == 0
    assert weight_change(tmp_path / "run" / "checkpoint") > 0


@pytest.mark.parametrize("skip", [True, False])
def test_stage2_step_without_any_correct_rollout_leaves_weights_alone(tmp_path, tiny_flags, skip):
    """All rewards 0 -> all advantages 0; the only gradient is the 1e-4 entropy bonus, which Adam would scale up to a
    full lr-sized step on every weight. --skip_no_signal (default) makes that step a no-op; turned off, it moves."""
    from train_stage2 import main, parse_args

    problems = [Problem(p.id, p.question, p.reference, "-1") for p in toy.make_toy_problems(2, 2, 2, seed=1)]
    data = tmp_path / "unsolvable.jsonl"  # the toy world's values are 0..99: an answer of -1 is never produced
    save_problems(problems, str(data))
    args = parse_args(
        tiny_flags(
            train_data=data,
            output_dir=tmp_path / "run",
            group_size=2,
            prompts_per_step=2,
            max_new_tokens=40,
            skip_no_signal=skip,
        )
    )
    main(args)
    row = json.loads(open(tmp_path / "run" / "metrics.jsonl").readline())
    assert row["answer_accuracy"] == 0 and row["zero_std_groups"] == 1.0
    assert row["skipped_update"] == float(skip) and row["entropy"] > 0
    assert (weight_change(tmp_path / "run" / "checkpoint") == 0) == skip
