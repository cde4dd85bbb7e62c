"""What every script shares: seeding and threads, loading a policy, atomic checkpoints, metrics logging.

Kept deliberately small: helpers that several scripts need, nothing that hides the training loop.
"""

import argparse
import glob
import json
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import field

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

import distributed
from data import DataError, Problem, load_problems

REPO = os.path.dirname(os.path.abspath(__file__))
TOY_BASE = os.path.join(REPO, "toy_base")  # the committed, pretrained toy base model (see toy.py)
TOY_DATA = {  # the committed toy problem sets (see toy.py, "python toy.py data")
    "toy:train": os.path.join(REPO, "toy_data", "stage1_train.jsonl"),  # HARD problems the base fails in 512 samples
    "toy:heldout": os.path.join(REPO, "toy_data", "heldout.jsonl"),  # fresh HARD problems, not mined: development
    "toy:test": os.path.join(REPO, "toy_data", "test.jsonl"),  # the untouched test split: the final reproduction only
}


# ------------------------------------------------------------------------------------------- the command line
class UsageError(SystemExit):
    """Exit status 2 (argparse's) for a bad command line or input; str() is the message (what tests match)."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def fail(message: str):
    """A bad command line or input: one line on stderr, exit status 2, no traceback; raised before anything is
    loaded or written."""
    print(f"error: {message}", file=sys.stderr)
    raise UsageError(message)


def check_flags(args, rules) -> None:
    """rules: (flag name, condition, what the value must be); the first false condition stops with one line naming
    the flag and its value. NaN fails every comparison, so `--lr nan` lands here too.

    Example: check_flags(args, [("n", args.n >= 1, ">= 1")]) with n = 0 -> `error: --n 0: must be >= 1`, exit 2.
    """
    for name, ok, expected in rules:
        if not ok:
            fail(f"--{name} {getattr(args, name)!r}: must be {expected}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the plain scripts (evaluate.py, analysis/): errors are one line, exit status 2, no usage block."""

    def error(self, message: str):
        fail(message)


class _OneLineParser(HfArgumentParser):
    """HfArgumentParser whose errors (unknown flag, invalid choice, bad number) are one line, not the usage block."""

    def error(self, message: str):
        fail(message)


def arg(default, help: str, choices=None):
    """A documented dataclass field of a script's arguments; with `choices`, any other value stops the command line.

    Example: `reward: str = arg("outcome", "outcome | process | sparse", choices=("outcome", "process", "sparse"))`
    """
    metadata = {"help": help} if choices is None else {"help": help, "choices": list(choices)}
    return field(default=default, metadata=metadata)


def parse_cli(dataclass_type, argv: list[str] | None = None):
    """Command line -> (the script's @dataclass of arguments, names of the flags given explicitly).

    Fields with metadata "choices" accept only those values; a wrong one stops here:
    `error: argument --reward: invalid choice: 'foo' (choose from outcome, process, sparse)`.
    """
    argv = sys.argv[1:] if argv is None else argv
    args, unknown = _OneLineParser(dataclass_type).parse_args_into_dataclasses(argv, return_remaining_strings=True)
    if unknown:
        fail(f"unrecognized arguments: {' '.join(unknown)} (--help lists the flags)")
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    return args, given


def check_model_path(name: str, flag: str) -> None:
    """`--model toy` or a save_pretrained directory; anything else stops with one line naming the flag."""
    try:
        resolve_model_path(name)
    except FileNotFoundError as error:
        fail(f"{flag}: {error}")


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
        raise FileNotFoundError(
            f"model {name!r}: no config.json in {path!r} (expected a save_pretrained directory; "
            "nothing is downloaded at run time)"
        )
    return path


def load_model(name: str, dtype: str = "float32", device: str = "cpu"):
    """-> (model, tokenizer) from 'toy' or a local directory."""
    path = resolve_model_path(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_problem_set(source: str, limit: int | None = None, flag: str | None = None, **column_mapping) -> list[Problem]:
    """'toy:train' / 'toy:heldout' or anything data.load_problems reads (JSONL, HF dataset with column mapping).

    With `flag` (the command-line flag that named the source), a missing, empty or malformed source stops the script
    with one line naming the flag, the file and (where there is one) the line and field; without it, DataError.
    """
    try:
        problems = load_problems(TOY_DATA.get(source, source), limit=limit, **column_mapping)
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


# ------------------------------------------------------------------------------------------- checkpoint / resume
# Layout of a run directory:
#   output_dir/checkpoint/                the final model (save_pretrained) + trainer state: what later stages load
#   output_dir/checkpoints/step_000010/   every --save_every steps, the newest --keep_last kept: what --resume reads
# Each holds trainer_state.json ({"step": N}, cheap to read) and trainer_state.pt (step, optimiser, per-rank RNG
# states, data order), both written after the weights; the directory appears only when complete (save_checkpoint).


def rng_state(sampler=None) -> dict:
    """Every random stream a step draws from: Python, NumPy, torch CPU (+ CUDA), and the sampler's own seed generator
    (VLLMSampler.seeds; HFSampler samples from torch's global RNG, already included)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if isinstance(getattr(sampler, "seeds", None), torch.Generator):
        state["sampler"] = sampler.seeds.get_state()
    return state


def set_rng_state(state: dict, sampler=None) -> None:
    """Inverse of rng_state: the next random draw is the one the interrupted run would have made."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "sampler" in state and isinstance(getattr(sampler, "seeds", None), torch.Generator):
        sampler.seeds.set_state(state["sampler"])


def save_training_checkpoint(
    path: str, model, tokenizer, optimizer, step: int, data_order: list[int], sampler=None
) -> None:
    """A resumable checkpoint at `path` (atomic, see save_checkpoint): weights, optimiser, step, data order, and the RNG
    states of every rank. Collective under data parallelism: every rank calls it, rank 0 writes."""
    weights = distributed.full_state_dict(model) if distributed.is_sharded(model) else None  # None: the model's own
    optimizer_state = distributed.optimizer_state_dict(model, optimizer)
    rngs = distributed.all_gather_object(rng_state(sampler))  # [one per rank]
    if distributed.is_main():
        state = {"step": step, "optimizer": optimizer_state, "rng": rngs, "data_order": data_order}
        save_checkpoint(
            distributed.unwrap(model),
            tokenizer,
            path,
            state_dict=weights,
            extra_files={"trainer_state.json": {"step": step}, "trainer_state.pt": state},
        )
    distributed.barrier()


def restore_training_state(state: dict, model, optimizer, sampler, output_dir: str, seed: int) -> None:
    """--resume, once the weights are loaded: optimiser state, this rank's RNG states, and (rank 0) metrics.jsonl /
    judge_samples.jsonl cut to the checkpoint's step, so the redone steps do not appear twice."""
    distributed.load_optimizer_state_dict(model, optimizer, state["optimizer"])
    rank, world = distributed.rank(), distributed.world_size()
    if len(state["rng"]) == world:
        set_rng_state(state["rng"][rank], sampler)
    else:  # another number of processes: the old random streams cannot be continued anyway
        warnings.warn(f"resume: checkpoint written by {len(state['rng'])} processes, now {world}: fresh RNG seeds")
        seed_everything(seed * world + rank + 7919 * state["step"])
    if distributed.is_main():
        for name in ("metrics.jsonl", "judge_samples.jsonl"):
            truncate_jsonl(os.path.join(output_dir, name), state["step"])
        print(f"resume: continuing after step {state['step']}")


def latest_checkpoint(output_dir: str) -> tuple[str, dict] | None:
    """(path, trainer state) of the newest COMPLETE checkpoint of a run, or None.

    Candidates: checkpoints/step_* and checkpoint/, newest step first. A write killed mid-way leaves only a .tmp-*
    directory (never a candidate); a directory whose trainer state is missing or does not load is skipped, with a
    warning, for the next older one.
    """
    candidates = []
    for path in glob.glob(os.path.join(output_dir, "checkpoints", "step_*")) + [os.path.join(output_dir, "checkpoint")]:
        try:
            with open(os.path.join(path, "trainer_state.json")) as f:
                candidates.append((int(json.load(f)["step"]), path))
        except (OSError, ValueError, KeyError):
            if os.path.isdir(path):
                warnings.warn(f"resume: ignoring {path} (no readable trainer_state.json: incomplete checkpoint)")
    for step, path in sorted(candidates, reverse=True):
        try:
            state = torch.load(os.path.join(path, "trainer_state.pt"), map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001  (a damaged checkpoint: fall back to the previous one)
            warnings.warn(f"resume: ignoring {path} ({error})")
            continue
        if state.get("step") == step and os.path.isfile(os.path.join(path, "config.json")):
            return path, state
    return None


def prune_checkpoints(output_dir: str, keep_last: int) -> None:
    """Delete all but the newest `keep_last` periodic checkpoints (0 keeps all); never the final checkpoint/."""
    paths = sorted(glob.glob(os.path.join(output_dir, "checkpoints", "step_*")))  # zero-padded: name order = step order
    for path in paths[: max(len(paths) - keep_last, 0)] if keep_last > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def truncate_jsonl(path: str, last_step: int) -> None:
    """Keep the rows with step <= last_step (atomic rewrite): a resumed run redoes the later steps, no duplicates."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= last_step]
    with open(path + ".tmp", "w") as f:
        f.writelines(rows)
    os.replace(path + ".tmp", path)


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


class Reporter:
    """A step's metrics also to TensorBoard or Weights & Biases (--report_to), through those libraries' own writers;
    metrics.jsonl stays the record. "none" does nothing. TensorBoard events go to output_dir/tensorboard/
    (`tensorboard --logdir runs`); wandb reads WANDB_PROJECT (default "exprl") and its usual login or offline mode."""

    def __init__(self, kind: str, output_dir: str, config: dict):
        self.kind, self.writer = kind, None
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(output_dir, "tensorboard"))
        elif kind == "wandb":
            import wandb

            name = os.path.basename(os.path.normpath(output_dir))
            self.writer = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "exprl"), name=name, dir=output_dir, config=config
            )

    def log(self, step: int, metrics: dict, prefix: str = "train") -> None:
        """Every number of `metrics` as prefix/name at `step`."""
        if self.writer is None:
            return
        values = {f"{prefix}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        if self.kind == "tensorboard":
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        else:
            self.writer.log(values, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close() if self.kind == "tensorboard" else self.writer.finish()


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
