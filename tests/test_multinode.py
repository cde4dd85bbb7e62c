"""Two nodes under torchrun, on one machine: each "node" is its own torchrun agent with one gloo process, both started
concurrently and joined by torchrun's rendezvous at a localhost endpoint. The code is the one-node code; what is
checked is that it stays exact, where each node writes, and --resume across node counts (docs/gpu-node.md).

One module fixture runs a chain of launches (~20 s each on a 2-core machine, mostly importing torch):
  P  one process, 1 Stage-I step (a checkpoint written by 1 process)
  A  2 nodes, static rendezvous (--node_rank 0 holds global rank 0), each node its own output directory (no shared
     filesystem): test_distributed's fixed-batch update (DDP, FSDP2); 3 Stage-I steps; P resumed on 2 nodes with
     node 1 holding only a copy of the checkpoint; a --resume where node 1 has no checkpoint at all (refused)
  S  1 node x 2 processes (--standalone): A's step-1 checkpoint resumed for step 2
  B  2 nodes, c10d rendezvous, one shared output directory: S's run resumed for step 3
The chain A (step 1) -> S (step 2) -> B (step 3) must equal A's uninterrupted 3 steps bit for bit: a run does not
depend on how its ranks are spread over nodes, only on the number of ranks.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import toy.world as toy
from domains.problems import save_problems
from plumbing.common import REPO
from scale import distributed
from tests.test_distributed import fixed_batch_update, tiny_model
from tests.test_resume import rows_without_timing
from train_stage1 import Args, main

REFUSAL = "--resume: the ranks found different checkpoints"


def stage1_args(root: str, output_dir: str, steps: int, resume: bool = False) -> Args:
    """The toy Stage-I run of every launch: 2 prompts x 4 rollouts per step (one prompt per rank on 2 ranks), a
    checkpoint every step (all kept), a 2-problem held-out set evaluated by rank 0 before and after."""
    return Args(
        model="toy",
        train_data=os.path.join(root, "hard.jsonl"),
        eval_data=os.path.join(root, "heldout.jsonl"),
        eval_n=2,
        output_dir=output_dir,
        group_size=4,
        prompts_per_step=2,
        steps=steps,
        max_new_tokens=100,
        lr=1e-3,
        threads=1,
        seed=0,
        save_every=1,
        keep_last=0,
        resume=resume,
    )


def worker(root: str, node_dir: str, jobs: list[str]) -> None:
    """What every rank runs under torchrun. A job is "fixed" (test_distributed's fixed-batch update through DDP and
    FSDP2) or "NAME:STEPS[:resume]" (train_stage1.main into node_dir/NAME); a refused run leaves NAME.refused with its
    one-line message."""
    torch.set_num_threads(1)
    distributed.init()
    rank, world = distributed.rank(), distributed.world_size()
    for job in jobs:
        if job == "fixed":
            for mode in ("ddp", "fsdp"):
                weights, metrics = fixed_batch_update(mode, rank, world)
                if mode == "ddp":  # every rank holds the full model: each saves its copy on its own node
                    torch.save(weights, os.path.join(node_dir, f"ddp_rank{rank}.pt"))
                if rank == 0:  # FSDP2: rank 0 receives the gathered weights
                    torch.save(weights, os.path.join(node_dir, f"{mode}_full.pt"))
                    json.dump(metrics, open(os.path.join(node_dir, f"{mode}_metrics.json"), "w"))
            continue
        name, steps, *resume = job.split(":")
        try:
            main(stage1_args(root, os.path.join(node_dir, name), int(steps), resume=bool(resume)))
        except SystemExit as error:  # every rank stops at the same point (after the same collective)
            with open(os.path.join(node_dir, f"{name}.refused"), "w") as f:
                f.write(str(error))
    distributed.cleanup()


WORKER = """
import sys
sys.path.insert(0, {repo!r})
from tests.test_multinode import worker
worker(sys.argv[1], sys.argv[2], sys.argv[3:])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(torchrun_flags: list[str], out, label: str, worker_args: list[str]) -> subprocess.Popen:
    """One torchrun agent (a "node") running the worker; stdout and stderr to out/label.log. Its own process group,
    so a hang is killed with its workers."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", *torchrun_flags, str(out / "worker.py"), *worker_args]
    log = open(out / f"{label}.log", "w")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def finish(procs: list[subprocess.Popen], out, labels: list[str], timeout: float = 240) -> float:
    """Wait for every node; stop all of them on a timeout. Returns the wall time. A hang is ended with SIGTERM to each
    agent, which passes it on to its workers (they run in a session of their own: SIGKILL to the agent's process
    group would leave them running), then SIGKILL."""
    start = time.time()
    try:
        for proc in procs:
            proc.wait(timeout=max(timeout - (time.time() - start), 1))
    finally:
        for signum in (signal.SIGTERM, signal.SIGKILL):
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signum)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
    for proc, label in zip(procs, labels):
        assert proc.returncode == 0, (out / f"{label}.log").read_text()[-4000:]
    return time.time() - start


def two_nodes(out, label: str, backend: str, node_dirs: list[str], jobs: list[str]) -> float:
    """Two torchrun agents with --nnodes 2 --nproc_per_node 1, started together, meeting at localhost:<free port>."""
    port = free_port()
    procs = []
    for node in range(2):
        flags = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", backend]
        flags += ["--rdzv_endpoint", f"localhost:{port}"]
        flags += ["--node_rank", str(node)] if backend == "static" else []  # c10d ignores --node_rank (and says so)
        procs.append(launch(flags, out, f"{label}.node{node}", [str(out), node_dirs[node], *jobs]))
    return finish(procs, out, [f"{label}.node0", f"{label}.node1"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("multinode")
    save_problems(toy.make_toy_problems(4, 8, 8, seed=11), str(out / "hard.jsonl"))
    save_problems(toy.make_toy_problems(2, 8, 8, seed=12), str(out / "heldout.jsonl"))
    (out / "worker.py").write_text(WORKER.format(repo=REPO))
    node0, node1 = out / "node0", out / "node1"
    node0.mkdir()
    node1.mkdir()
    times = {}

    # P: one process, one step
    torch.set_num_threads(1)
    main(stage1_args(str(out), str(out / "single"), steps=1))
    shutil.copytree(out / "single", node0 / "widen")  # node 0: the whole run directory
    shutil.copytree(out / "single" / "checkpoints", node1 / "widen" / "checkpoints")  # node 1: only the checkpoint
    shutil.copytree(out / "single", node0 / "nodisk")  # node 1 has nothing: its disk does not hold the run

    # A: two nodes, no shared filesystem
    jobs = ["fixed", "full:3", "widen:2:resume", "nodisk:2:resume"]
    times["A"] = two_nodes(out, "A", "static", [str(node0), str(node1)], jobs)

    # S: A's step-1 checkpoint (and its metrics, which --resume cuts to step 1) resumed on one node for step 2
    shutil.copytree(node0 / "full", out / "chain", ignore=shutil.ignore_patterns("eval"))
    shutil.rmtree(out / "chain" / "checkpoint")
    for step in (2, 3):
        shutil.rmtree(out / "chain" / "checkpoints" / f"step_{step:06d}")
    proc = launch(["--standalone", "--nproc_per_node", "2"], out, "S", [str(out), str(out), "chain:2:resume"])
    times["S"] = finish([proc], out, ["S"])

    # B: back on two nodes (c10d rendezvous), both reading and writing one shared directory, for step 3
    times["B"] = two_nodes(out, "B", "c10d", [str(out), str(out)], ["chain:3:resume"])
    print(f"wall seconds per launch: {times}")
    return out


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_node_update_equals_single_process_update(runs, mode):
    """test_distributed's fixed batch (uneven token counts, an all-dropped micro-batch), one SGD step, ranks on two
    nodes: the weights of one process to 1e-6, and the same global loss and gradient norm."""
    torch.set_num_threads(1)
    single_weights, single_metrics = fixed_batch_update(mode)
    if mode == "ddp":  # the replica on each node, bit-identical
        replicas = [torch.load(runs / f"node{r}" / f"ddp_rank{r}.pt") for r in range(2)]
        assert all(torch.equal(replicas[0][k], replicas[1][k]) for k in replicas[0])
    weights = torch.load(runs / "node0" / f"{mode}_full.pt")
    before = tiny_model()[0].state_dict()
    assert max((single_weights[k] - before[k]).abs().max().item() for k in weights) > 1e-3  # the step moved them
    for k in single_weights:
        torch.testing.assert_close(weights[k], single_weights[k], atol=1e-6, rtol=0, msg=k)
    metrics = json.load(open(runs / "node0" / f"{mode}_metrics.json"))
    for key in ("loss", "grad_norm", "kl_ref", "pg_loss", "entropy"):
        assert metrics[key] == pytest.approx(single_metrics[key], rel=1e-5, abs=1e-7), key


def test_only_global_rank_0_writes_and_its_node_evaluates(runs):
    """Without a shared filesystem: node 0 (global rank 0) holds every output of the run; node 1 only created the
    empty output directory (metrics, checkpoints, config and evaluation are rank 0's alone)."""
    assert os.listdir(runs / "node1" / "full") == []
    full = runs / "node0" / "full"
    assert [r["step"] for r in rows_without_timing(full / "metrics.jsonl")] == [1, 2, 3]  # one row per step
    assert sorted(os.listdir(full / "checkpoints")) == [f"step_{s:06d}" for s in (1, 2, 3)]
    assert sorted(os.listdir(full / "eval")) == ["step_0000", "step_0003"]  # before and after, on rank 0's node
    state = torch.load(full / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 3 and len(state["rng"]) == 2  # both ranks' RNG states, gathered onto node 0


def test_resume_across_node_counts_equals_the_uninterrupted_run(runs):
    """Step 1 on 2 nodes, step 2 on 1 node x 2 processes, step 3 on 2 nodes again == 3 steps on 2 nodes: every
    metric, every weight, the optimiser state and both ranks' RNG states, bit for bit. (Same world size: each global
    rank gets its own RNG state back, whichever node it runs on.)"""
    full, chain = runs / "node0" / "full", runs / "chain"
    full_rows, chain_rows = rows_without_timing(full / "metrics.jsonl"), rows_without_timing(chain / "metrics.jsonl")
    assert [r["step"] for r in chain_rows] == [1, 2, 3]
    assert chain_rows == full_rows
    assert full_rows[1]["grad_norm"] > 0 and full_rows[2]["grad_norm"] > 0  # steps 2 and 3 did learn
    a, b = load_file(full / "checkpoint" / "model.safetensors"), load_file(chain / "checkpoint" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(full / "checkpoint" / "trainer_state.pt", weights_only=False)
    sb = torch.load(chain / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert sa["step"] == sb["step"] == 3 and sa["data_order"] == sb["data_order"]
    assert all(torch.equal(x["torch"], y["torch"]) for x, y in zip(sa["rng"], sb["rng"]))
    for p, moments in sa["optimizer"]["state"].items():
        assert all(torch.equal(v, sb["optimizer"]["state"][p][k]) for k, v in moments.items())


def test_resume_on_another_world_size_continues_with_fresh_seeds(runs, tmp_path):
    """1 process -> 2 nodes and 2 nodes -> 1 process: weights, AdamW state, data order and step continue; the random
    streams cannot (one per rank), so each rank gets fresh seeds and a one-line warning naming the cause."""
    # 1 -> 2 (launch A): node 1 had only a copy of the checkpoint; node 0 has the run, continued to step 2
    assert "checkpoint written by 1 processes, now 2: fresh RNG seeds" in (runs / "A.node1.log").read_text()
    widen, single = runs / "node0" / "widen", runs / "single"
    rows = rows_without_timing(widen / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and rows[0] == rows_without_timing(single / "metrics.jsonl")[0]
    state = torch.load(widen / "checkpoint" / "trainer_state.pt", weights_only=False)
    single_state = torch.load(single / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 2 and len(state["rng"]) == 2 and state["data_order"] == single_state["data_order"]
    assert sorted(os.listdir(runs / "node1" / "widen")) == ["checkpoints"]  # nothing written on node 1

    # 2 -> 1 (here, one process): A's step-1 checkpoint continued for step 2
    full = runs / "node0" / "full"
    shutil.copytree(full, tmp_path / "narrow", ignore=shutil.ignore_patterns("checkpoint", "step_00000[23]"))
    torch.set_num_threads(1)
    with pytest.warns(UserWarning, match="checkpoint written by 2 processes, now 1: fresh RNG seeds"):
        main(stage1_args(str(runs), str(tmp_path / "narrow"), steps=2, resume=True))
    rows = rows_without_timing(tmp_path / "narrow" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and rows[0] == rows_without_timing(full / "metrics.jsonl")[0]
    narrow = torch.load(tmp_path / "narrow" / "checkpoint" / "trainer_state.pt", weights_only=False)
    full_state = torch.load(full / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert narrow["step"] == 2 and len(narrow["rng"]) == 1 and narrow["data_order"] == full_state["data_order"]


def test_resume_refused_when_a_node_cannot_read_the_checkpoint(runs):
    """Node 1 without node 0's checkpoint would start at step 0 while node 0 continues at step 1, and their collective
    calls would no longer pair up (a hang until the 2-hour timeout, seen by hand before the check). Every rank stops
    with the same line instead, and nothing is trained."""
    for node in range(2):
        message = (runs / f"node{node}" / "nodisk.refused").read_text()
        assert message.startswith(REFUSAL) and "(step by rank: [1, None])" in message
    assert [r["step"] for r in rows_without_timing(runs / "node0" / "nodisk" / "metrics.jsonl")] == [1]
    assert not (runs / "node1" / "nodisk" / "checkpoints").exists()
