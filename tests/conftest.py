"""Fixtures shared by several test files: the toy base, and the tests' short Stage-I run (`tiny_args`, `tiny_flags`)."""

import pytest
import torch

import toy.world as toy
from config import Args
from domains.problems import save_problems
from plumbing.common import load_model

# The tests' short run: 4 prompts x 4 rollouts on the toy base, one step, no held-out evaluation, one thread, seed 0.
TINY = dict(model="toy", eval_data="", group_size=4, prompts_per_step=4, steps=1, threads=1, seed=0)


@pytest.fixture(scope="module")
def toy_model():
    """The committed toy base and its tokenizer, loaded once per test module (tests may train it in place)."""
    torch.set_num_threads(1)
    return load_model("toy")


@pytest.fixture(scope="session")
def tiny_problems(tmp_path_factory) -> str:
    """4 hard toy problems (8 operations each, seed 11) in a JSONL file: what the short runs train on."""
    path = tmp_path_factory.mktemp("data") / "hard.jsonl"
    save_problems(toy.make_toy_problems(4, 8, 8, seed=11), str(path))
    return str(path)


@pytest.fixture
def tiny_args(tiny_problems, tmp_path):
    """tiny_args(**overrides) -> Args of the short run (TINY) on `tiny_problems`, writing to the test's tmp_path;
    overrides win, e.g. tiny_args(reward="process", steps=2)."""
    torch.set_num_threads(1)

    def make(**overrides) -> Args:
        return Args(**{**TINY, "train_data": tiny_problems, "output_dir": str(tmp_path), **overrides})

    return make


@pytest.fixture
def tiny_flags(tiny_problems, tmp_path):
    """The short run as command-line flags, for scripts that parse their own (train_stage2.py, baselines.py):
    tiny_flags(**overrides) -> ["--model", "toy", "--eval_data", "", ...]; a value of None drops that flag."""

    def make(**overrides) -> list[str]:
        values = {**TINY, "train_data": tiny_problems, "output_dir": str(tmp_path), **overrides}
        return [item for name, value in values.items() if value is not None for item in (f"--{name}", str(value))]

    return make
