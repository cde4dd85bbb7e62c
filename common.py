"""What every script shares: seeding and threads, loading a policy, atomic checkpoints, metrics logging.

Kept deliberately small: helpers that several scripts need, nothing that hides the training loop.
"""
import json
import os
import random
import shutil
import tempfile
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from data import Problem, load_problems

REPO = os.path.dirname(os.path.abspath(__file__))
TOY_BASE = os.path.join(REPO, "toy_base")  # the committed, pretrained toy base model (see toy.py)
TOY_DATA = {  # the committed toy problem sets (see toy.py, "python toy.py data")
    "toy:train": os.path.join(REPO, "toy_data", "stage1_train.jsonl"),  # HARD problems the base fails in 64 samples
    "toy:heldout": os.path.join(REPO, "toy_data", "heldout.jsonl"),  # fresh HARD problems, not mined: the benchmark
}


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (sampling uses torch's global RNG, so it is covered too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(num_threads: int) -> None:
    """Pin torch's CPU threads. On a busy 2-core machine, more threads than free cores makes OpenMP spin and can run
    several times slower than 1 thread; 0 leaves torch's default."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)


def resolve_model_path(name: str) -> str:
    """'toy' -> the committed toy base; otherwise a local save_pretrained directory (never a hub download)."""
    path = TOY_BASE if name == "toy" else name
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"model {name!r}: no config.json in {path!r} (expected a save_pretrained directory; "
                                "nothing is downloaded at run time)")
    return path


def load_model(name: str, dtype: str = "float32", device: str = "cpu"):
    """-> (model, tokenizer) from 'toy' or a local directory."""
    path = resolve_model_path(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_problem_set(source: str, limit: int | None = None, **column_mapping) -> list[Problem]:
    """'toy:train' / 'toy:heldout' or anything data.load_problems reads (JSONL, HF dataset with column mapping)."""
    return load_problems(TOY_DATA.get(source, source), limit=limit, **column_mapping)


def save_checkpoint(model, tokenizer, output_dir: str, extra_files: dict | None = None) -> None:
    """save_pretrained into a temporary sibling directory, then rename: an interrupt leaves the old copy or none.

    extra_files maps a file name to a JSON-able object (written as JSON) or, for names ending in .pt, to an object
    saved with torch.save (e.g. trainer_state.pt: step, optimiser, RNG).
    """
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, obj in (extra_files or {}).items():
            if name.endswith(".pt"):
                torch.save(obj, os.path.join(tmp, name))
            else:
                with open(os.path.join(tmp, name), "w") as f:
                    json.dump(obj, f, indent=2)
        if os.path.exists(output_dir):
            old = output_dir + ".old"
            os.replace(output_dir, old)
            os.replace(tmp, output_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str, obj) -> None:
    """Write JSON atomically (temp file + rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


class MetricsLog:
    """Append one JSON line per step to metrics.jsonl (flushed, so a killed run keeps every finished step)."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = open(path, "a")
        self.start = time.time()

    def log(self, step: int, metrics: dict) -> None:
        row = {"step": step, "time": round(time.time() - self.start, 2), **metrics}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
