"""Checkpoint / resume: 2S steps in one go == S steps, an interruption, then --resume (metrics and weights), and a
checkpoint whose writer was killed mid-write (kill -9) is ignored in favour of the previous one."""

import json
import os
import shutil
import signal

import pytest
import torch
from safetensors.torch import load_file

import toy.world as toy
from domains.problems import save_problems
from plumbing.checkpoint import latest_checkpoint
from plumbing.common import load_model, save_checkpoint
from toy import TOY_BASE
from train_stage1 import main


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "hard.jsonl"
    save_problems(toy.make_toy_problems(6, 8, 8, seed=11), str(path))
    return str(path)


@pytest.fixture
def run(tiny_args, problems):
    """run(output_dir, steps, **flags): the tests' short run (conftest.tiny_args) on 6 problems, 2 prompts per step."""

    def go(output_dir, steps: int, **overrides) -> None:
        main(
            tiny_args(
                train_data=problems,
                output_dir=str(output_dir),
                prompts_per_step=2,
                steps=steps,
                max_new_tokens=100,
                lr=1e-3,
                **overrides,
            )
        )

    return go


def rows_without_timing(path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time")} for line in open(path)]


def kill_writer_mid_checkpoint(target: str) -> None:
    """A child process starts save_checkpoint(target) and is killed with SIGKILL after writing the weights, before the
    rename: exactly what kill -9 during a checkpoint leaves behind (a .tmp-* directory next to the old ones)."""
    model, _ = load_model("toy")

    class DiesWhileSaving:  # the tokenizer is written after the model: die there
        def save_pretrained(self, path):
            os.kill(os.getpid(), signal.SIGKILL)

    pid = os.fork()
    if pid == 0:  # the child never returns: SIGKILL
        save_checkpoint(model, DiesWhileSaving(), target, extra_files={"trainer_state.json": {"step": 2}})
        os._exit(0)  # not reached
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_resume_equals_uninterrupted_run_and_skips_a_killed_checkpoint(tmp_path, run):
    # S = 1. Two steps in one go; a checkpoint every step, the newest one kept; --resume with nothing to resume from
    # starts at step 0.
    run(tmp_path / "full", steps=2, save_every=1, keep_last=1, resume=True)
    assert os.listdir(tmp_path / "full" / "checkpoints") == ["step_000002"]

    # The interrupted run: step 1 checkpointed, step 2 done and logged, then killed (SIGKILL, for real) while writing
    # step 2's checkpoint. We rebuild that state from a finished run: drop its step-2 checkpoints, then let a writer
    # die mid-write. Plus a directory cut short without its trainer state (as an interrupted copy would leave).
    cut = tmp_path / "cut"
    run(cut, steps=2, save_every=1, keep_last=0)
    shutil.rmtree(cut / "checkpoint")
    shutil.rmtree(cut / "checkpoints" / "step_000002")
    kill_writer_mid_checkpoint(str(cut / "checkpoints" / "step_000002"))
    leftovers = [n for n in os.listdir(cut / "checkpoints") if n.startswith(".tmp-")]
    assert len(leftovers) == 1 and os.path.isfile(cut / "checkpoints" / leftovers[0] / "model.safetensors")
    os.makedirs(cut / "checkpoints" / "step_000003")
    with open(cut / "checkpoints" / "step_000003" / "config.json", "w") as f:
        f.write("{}")
    assert len(rows_without_timing(cut / "metrics.jsonl")) == 2
    with pytest.warns(UserWarning, match="step_000003"):
        path, state = latest_checkpoint(str(cut))
    assert os.path.basename(path) == "step_000001" and state["step"] == 1

    # --resume continues after step 1: step 2 is redone and its old metrics row dropped
    with pytest.warns(UserWarning):
        run(cut, steps=2, save_every=1, resume=True)
    full_rows, cut_rows = (
        rows_without_timing(tmp_path / "full" / "metrics.jsonl"),
        rows_without_timing(cut / "metrics.jsonl"),
    )
    assert [r["step"] for r in cut_rows] == [1, 2]
    assert cut_rows == full_rows  # every metric of every step, exactly (timing fields aside)
    assert full_rows[1]["grad_norm"] > 0  # step 2 did learn something (not an all-zero-advantage step)
    full_w = load_file(str(tmp_path / "full" / "checkpoint" / "model.safetensors"))
    cut_w = load_file(str(cut / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(full_w[k], cut_w[k]) for k in full_w)  # one process on a CPU: bit-identical
    base = load_file(os.path.join(TOY_BASE, "model.safetensors"))
    assert max((base[k] - cut_w[k]).abs().max().item() for k in base) > 0  # and training did move the weights
    full_state = torch.load(tmp_path / "full" / "checkpoint" / "trainer_state.pt", weights_only=False)
    cut_state = torch.load(cut / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert full_state["step"] == cut_state["step"] == 2 and full_state["data_order"] == cut_state["data_order"]
    assert torch.equal(full_state["rng"][0]["torch"], cut_state["rng"][0]["torch"])
