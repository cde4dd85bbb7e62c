"""Resumable checkpoints of a training run (train_stage1.py, through plumbing.run.Run) and `--resume`.

Layout of a run directory:
  output_dir/checkpoint/                the final model (save_pretrained) + trainer state: what later stages load
  output_dir/checkpoints/step_000010/   every --save_every steps, the newest --keep_last kept: what --resume reads
Each holds trainer_state.json ({"step": N}, cheap to read) and trainer_state.pt (step, optimiser, per-rank RNG
states, data order), both written after the weights; the directory appears only when complete
(plumbing.common.save_checkpoint).
"""

import glob
import json
import os
import random
import shutil
import warnings

import numpy as np
import torch

from plumbing.common import save_checkpoint, seed_everything
from scale import distributed


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
