"""Stage I: the reward -> advantage plumbing by hand, and one real step per reward mode on the toy base."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from plumbing.common import REPO
from rollout import Rollout
from toy import TOY_BASE
from train_stage1 import build_batch, main


def test_build_batch_places_advantages_on_response_tokens_and_masks_dropped():
    rollouts = [Rollout([5, 6], [8], "", False), Rollout([7], [9, 2], "", False)]
    batch = build_batch(rollouts, [torch.tensor([0.5]), torch.tensor([1.0, -1.0])], keep=[True, False], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 8, 0], [0, 7, 9, 2]]
    assert batch["advantages"].tolist() == [[0, 0, 0.5, 0], [0, 0, 1.0, -1.0]]
    assert batch["response_mask"].tolist() == [[0, 0, 1, 0], [0, 0, 0, 0]]  # the dropped rollout leaves the loss


@pytest.mark.parametrize(
    "reward,view,mode,seed",
    [
        ("outcome", "prefix", "delta", 1),  # seed 0: the judge scores each of the 4 groups alike (no signal, no step)
        ("process", "prefix", "delta_from_zero", 0),
        ("process", "segment", "delta", 0),
        ("process", "prefix", "group_norm", 0),
        ("sparse", "prefix", "delta", 0),
    ],
)
def test_one_stage1_step_per_reward_mode_changes_weights(tmp_path, tiny_args, reward, view, mode, seed):
    main(tiny_args(reward=reward, process_view=view, advantage=mode, weight_decay=0.0, lr=1e-3, seed=seed))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert len(rows) == 1
    for key in [
        "judge_score",
        "fully_unsolved",
        "zero_std_groups",
        "response_length",
        "entropy",
        "kl_ref",
        "clipfrac_low",
        "clipfrac_high",
        "judge_parse_failures",
        "time_sample",
        "time_judge",
        "time_update",
    ]:
        assert key in rows[0] and math.isfinite(rows[0][key]), key
    before = load_file(os.path.join(TOY_BASE, "model.safetensors"))
    after = load_file(os.path.join(tmp_path, "checkpoint", "model.safetensors"))
    changed = max((before[k] - after[k]).abs().max().item() for k in before)
    if rows[0]["zero_std_groups"] == 1.0:  # every group scored alike: no advantage, the update is skipped
        assert changed == 0.0 and rows[0]["skipped_update"] == 1.0
    else:
        assert changed > 0.0
    assert os.path.exists(tmp_path / "checkpoint" / "trainer_state.pt")
    samples = [json.loads(line) for line in open(tmp_path / "judge_samples.jsonl")]
    if reward != "sparse":  # the raw judge output is kept for inspection, parseable by judge.parse_score
        assert "Score:" in json.dumps(samples[0]["judge_text"])


def test_quickstart_command_shortened(tmp_path):
    """`python train_stage1.py` with its defaults, cut to 2 steps and a tiny evaluation."""
    out = subprocess.run(
        [
            sys.executable,
            "train_stage1.py",
            "--steps",
            "2",
            "--eval_n",
            "4",
            "--eval_limit",
            "4",
            "--output_dir",
            str(tmp_path),
            "--threads",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "held-out before" in out.stdout and "held-out after" in out.stdout
    for tag in ("step_0000", "step_0002"):
        result = json.load(open(tmp_path / "eval" / tag / "pass_at_k.json"))
        assert result["n"] == 4 and result["num_problems"] == 4 and set(result["pass@k"]) == {"1", "2", "4"}


def test_paper_preset_fills_paper_numbers_and_keeps_explicit_flags():
    from train_stage1 import parse_args

    args = parse_args(
        [
            "--preset",
            "paper-4b",
            "--model",
            "/qwen",
            "--judge",
            "/qwen",
            "--train_data",
            "hard.jsonl",
            "--reward",
            "outcome",
            "--steps",
            "5",
        ]
    )
    # docs/paper.md, "Stage I optimiser settings", ExpRL-Outcome: 10 rollouts x 36 prompts, 2 updates, lr 1e-6,
    # clip 0.2 / 0.28, KL 0.001, T 0.8
    assert (args.group_size, args.prompts_per_step, args.updates_per_step) == (10, 36, 2)
    assert (args.lr, args.clip_low, args.clip_high, args.kl_coef, args.temperature) == (1e-6, 0.2, 0.28, 0.001, 0.8)
    assert args.max_new_tokens == 16384 and args.engine == "vllm" and args.advantage == "delta"
    assert args.steps == 5  # an explicit flag wins over the preset
    process = parse_args(
        ["--preset", "paper-4b", "--model", "/q", "--judge", "/q", "--train_data", "h.jsonl", "--reward", "process"]
    )
    assert (process.group_size, process.updates_per_step, process.clip_high) == (16, 1, 0.26)
    with pytest.raises(SystemExit, match="needs --model"):
        parse_args(["--preset", "paper-4b"])


def test_paper_preset_fails_clearly_without_a_gpu_node():
    """--preset paper-4b needs CUDA and vLLM; where either is missing, check_hardware says which (skipped on a GPU node
    with vLLM, where the preset is meant to run)."""
    import importlib.util

    from config import check_hardware, parse_args

    has_vllm = importlib.util.find_spec("vllm") is not None
    if torch.cuda.is_available() and has_vllm:
        pytest.skip("a GPU node with vLLM: the preset can run here")
    args = parse_args(["--preset", "paper-4b", "--model", "/q", "--judge", "/q", "--train_data", "h.jsonl"])
    with pytest.raises(SystemExit, match="pip install vllm" if not has_vllm else "no CUDA device"):
        check_hardware(args)


def test_tensorboard_events_hold_the_metrics_jsonl_numbers(tmp_path, tiny_args):
    """--report_to tensorboard: a 2-step toy run's events, read back with TensorBoard's own reader, carry the numbers
    of metrics.jsonl (as float32) at the same steps, and the held-out pass@k under eval/."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    main(tiny_args(eval_data="toy:heldout", eval_limit=2, eval_n=4, steps=2, report_to="tensorboard"))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    for key in ("judge_score", "answer_accuracy", "loss", "grad_norm", "kl_ref", "entropy", "response_length"):
        logged = events.Scalars(f"train/{key}")
        assert [e.step for e in logged] == [1, 2]
        assert [e.value for e in logged] == pytest.approx([r[key] for r in rows], rel=1e-6, abs=1e-7), key
    passk = json.load(open(tmp_path / "eval" / "step_0002" / "pass_at_k.json"))["pass@k"]
    assert [e.step for e in events.Scalars("eval/pass@1")] == [0, 2]
    assert events.Scalars("eval/pass@4")[-1].value == pytest.approx(passk["4"], rel=1e-6)


def test_report_to_a_missing_package_is_one_line(monkeypatch, capsys):
    import importlib.util

    from config import parse_args

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a)
    )
    with pytest.raises(SystemExit, match="--report_to wandb: the wandb package is not installed: pip install wandb"):
        parse_args(["--report_to", "wandb"])


def test_logged_group_round_trips_and_its_advantages_are_eq2_of_its_scores(tmp_path, tiny_args):
    """groups.jsonl from a real process step: one whole group, whose A_t are Eq. 2 (delta) of its own s_t, whose
    segment texts make up each response, and which analysis.show_group loads and draws."""
    from advantages import delta_advantages
    from analysis.show_group import load_group
    from analysis.show_group import main as show_group

    main(tiny_args(reward="process", advantage="delta", log_group_every=1))
    record = load_group(str(tmp_path))
    assert record["step"] == 1 and record["reward"] == "process" and len(record["rollouts"]) == 4
    for rollout in record["rollouts"]:
        assert "".join(s["text"] for s in rollout["segments"]) == rollout["text"]
        scores = [s["score"] for s in rollout["segments"]]
        if rollout["dropped"] or rollout["truncated"] or not scores:
            continue
        assert [s["advantage"] for s in rollout["segments"]] == pytest.approx(delta_advantages(scores, "delta"))
        assert rollout["score"] == scores[-1]  # s_T
    written = show_group([str(tmp_path), "--out", str(tmp_path / "view")])
    assert [os.path.basename(p) for p in written] == ["step_000001.html", "step_000001.png"]
