"""What every script shares: seeds and threads, a model in (`load_model`: 'toy' or a save_pretrained directory) and
out (`save_checkpoint`, atomic), a problem set by name or path (`load_problem_set`), JSON and report files.

The command-line helpers are in plumbing/cli.py, resumable training checkpoints in plumbing/checkpoint.py, run logs in
plumbing/logs.py.
"""

import json
import os
import random
import shutil
import tempfile

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from domains.problems import load_problems
from domains.records import DataError, Problem
from plumbing.cli import fail

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root


def toy_path(name: str) -> str:
    """The toy world's names -> their committed files: 'toy' (the base model), 'toy:train', 'toy:heldout', 'toy:test'
    (the problem sets); any other name is a path and comes back as it is. The toy package is imported only here, and
    only for a toy name."""
    if name != "toy" and not name.startswith("toy:"):
        return name
    from toy import TOY_BASE, TOY_DATA

    return TOY_BASE if name == "toy" else TOY_DATA.get(name, name)


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
    """'toy' -> the committed toy base (toy/__init__.py); otherwise a local save_pretrained directory (never a hub
    download)."""
    path = toy_path(name)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(
            f"model {name!r}: no config.json in {path!r} (expected a save_pretrained directory; "
            "nothing is downloaded at run time)"
        )
    return path


def check_model_path(name: str, flag: str) -> None:
    """`--model toy` or a save_pretrained directory; anything else stops with one line naming the flag."""
    try:
        resolve_model_path(name)
    except FileNotFoundError as error:
        fail(f"{flag}: {error}")


def load_model(name: str, dtype: str = "float32", device: str = "cpu"):
    """-> (model, tokenizer) from 'toy' or a local directory."""
    path = resolve_model_path(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_problem_set(source: str, limit: int | None = None, flag: str | None = None, **column_mapping) -> list[Problem]:
    """'toy:train' / 'toy:heldout' or anything domains.problems.load_problems reads (JSONL, HF dataset with column
    mapping, `domain=`, `require_reference=`); several sources, comma-separated, are read in turn (`limit` applies to
    each).

    With `flag` (the command-line flag that named the source), a missing, empty or malformed source stops the script
    with one line naming the flag, the file and (where there is one) the line and field; without it, DataError.
    """
    try:
        problems = [
            problem
            for part in source.split(",")
            for problem in load_problems(toy_path(part), limit=limit, **column_mapping)
        ]
        if not problems:
            raise DataError(f"{source}: no problems (the file or dataset is empty)")
    except DataError as error:
        if flag is None:
            raise
        fail(f"{flag}: {error}")
    return problems


def save_checkpoint(
    model, tokenizer, output_dir: str, extra_files: dict | None = None, state_dict: dict | None = None
) -> None:
    """save_pretrained into a temporary sibling directory, then rename: an interrupt leaves the old copy or none.

    extra_files maps a file name to a JSON-able object (written as JSON) or, for names ending in .pt, to an object
    saved with torch.save (e.g. trainer_state.pt: step, optimiser, RNG); they are written in order, after the model.
    state_dict: the weights to write instead of the model's own (e.g. gathered from FSDP2 shards).
    """
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        model.save_pretrained(tmp, state_dict=state_dict)
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


def write_report(out_dir: str, stem: str, report, table: str) -> None:
    """An analysis' outputs: out_dir/stem.json (the full report, atomic via write_json) and out_dir/stem.md (the
    markdown table, also written to a temp file and renamed); the table is printed too."""
    write_json(os.path.join(out_dir, f"{stem}.json"), report)
    path = os.path.join(out_dir, f"{stem}.md")
    with open(path + ".tmp", "w") as f:
        f.write(table + "\n")
    os.replace(path + ".tmp", path)
    print(table)
