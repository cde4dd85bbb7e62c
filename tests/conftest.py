"""Fixtures shared by several test files."""

import pytest
import torch

from common import load_model


@pytest.fixture(scope="module")
def toy_model():
    """The committed toy base and its tokenizer, loaded once per test module (tests may train it in place)."""
    torch.set_num_threads(1)
    return load_model("toy")
