"""Data parallel on CPU (gloo, 2 processes under torchrun): the synchronised update equals one process's update on the
same global batch, for DDP and FSDP2, and a 2-process train_stage1 run keeps both ranks' weights identical.

One torchrun launch (the module fixture) runs every distributed part; the tests then compare its outputs with
single-process runs of the same functions here.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

import toy.world as toy
from domains.problems import save_problems
from plumbing.common import REPO
from rollout import Rollout
from scale import distributed
from train_stage1 import Args, build_batch, update_policy

ROWS, GROUP, MICRO = 8, 4, 2  # two groups of 4 rollouts: one group per rank; micro-batches of 2 rows


def fixed_rollouts() -> tuple[list[Rollout], list[torch.Tensor], list[bool]]:
    """8 rollouts with different prompt and response lengths (so the ranks hold different token counts), random
    per-token advantages, and rows 6-7 dropped (keep=False): rank 1's second micro-batch has no token to learn from."""
    g = torch.Generator().manual_seed(0)
    rollouts, advantages = [], []
    for i in range(ROWS):
        prompt = torch.randint(5, 90, (3 + i % 3,), generator=g).tolist()
        response = torch.randint(5, 90, (2 + (3 * i) % 7,), generator=g).tolist()
        rollouts.append(Rollout(prompt, response, "", False))
        advantages.append(torch.randn(len(response), generator=g))
    return rollouts, advantages, [True] * 6 + [False] * 2


def tiny_model():
    tokenizer = toy.build_tokenizer()
    return toy.build_tiny_model(tokenizer, hidden_size=64, num_layers=2, seed=0), tokenizer


def fixed_args() -> Args:
    return Args(micro_batch_size=MICRO, kl_coef=0.1, updates_per_step=1, max_grad_norm=1e9, threads=1)


def fixed_batch_update(mode: str, rank: int = 0, world: int = 1) -> tuple[dict, dict]:
    """One update_policy call (the function train_stage1 uses) with plain SGD, so the weight change IS the gradient
    (AdamW's first step would hide a wrong gradient scale). Returns (full weights or {} off rank 0, metrics)."""
    model, tokenizer = tiny_model()
    ref = distributed.wrap_model(
        toy.build_tiny_model(tokenizer, 64, 2, seed=1).requires_grad_(False), mode, trainable=False
    )
    model = distributed.wrap_model(model, mode)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    rollouts, advantages, keep = fixed_rollouts()
    mine = slice(rank * ROWS // world, (rank + 1) * ROWS // world)  # this rank's whole group
    batch = build_batch(rollouts[mine], advantages[mine], keep[mine], tokenizer.pad_token_id)
    metrics = update_policy(fixed_args(), model=model, ref_model=ref, optimizer=optimizer, batch=batch)
    return {k: v.detach().clone() for k, v in distributed.full_state_dict(model).items()}, reduce(metrics, batch)


def reduce(metrics: dict, batch: dict) -> dict:
    """The update's metrics over ranks as plumbing.run.Run.log reduces them: token-weighted means, the loss averaged
    (each rank's is its rows' part of the global loss times the world size)."""
    tokens = int(batch["response_mask"].sum())
    return distributed.reduce_metrics(metrics, {**{k: tokens for k in metrics}, "loss": 1})


def tied_tiny_model(seed: int):
    """The toy model's shape with the LM head tied to the embedding (Qwen3-4B's layout): under FSDP2 both live in the
    root unit, and the head's gradient and the embedding's add up in one parameter."""
    from transformers import LlamaForCausalLM

    config = tiny_model()[0].config
    config.tie_word_embeddings = True
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def chunked_update(mode: str, rank: int = 0, world: int = 1, chunk_size: int | None = 3) -> tuple[dict, dict]:
    """fixed_batch_update's update with chunked log-probs (LossConfig.chunk_size, and the KL reference's log-probs
    chunked too), a tied head, and an entropy bonus: grpo_step directly, since train_stage1.Args has no chunk flag
    here. Returns (full weights or {} off rank 0, metrics)."""
    from grpo import LossConfig, grpo_step, token_logprobs

    _, tokenizer = tiny_model()
    ref = distributed.wrap_model(tied_tiny_model(1).requires_grad_(False), mode, trainable=False)
    model = distributed.wrap_model(tied_tiny_model(0), mode)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    rollouts, advantages, keep = fixed_rollouts()
    mine = slice(rank * ROWS // world, (rank + 1) * ROWS // world)
    batch = build_batch(rollouts[mine], advantages[mine], keep[mine], tokenizer.pad_token_id)
    with torch.no_grad():
        batch["ref_logprobs"] = token_logprobs(
            ref,
            batch["input_ids"],
            batch["attention_mask"],
            batch["response_mask"],
            micro_batch_size=MICRO,
            chunk_size=chunk_size,
        )
    loss = LossConfig(kl_coef=0.1, entropy_coef=0.01, log_entropy=True, temperature=0.9, chunk_size=chunk_size)
    denominator, _ = distributed.global_mini_batch(batch, loss)
    metrics = grpo_step(
        model, optimizer, batch, loss, micro_batch_size=MICRO, max_grad_norm=1e9, denominator=denominator
    )
    return {k: v.detach().clone() for k, v in distributed.full_state_dict(model).items()}, reduce(metrics, batch)


def fsdp_checkpoint_round_trip(out: str) -> bool:
    """Under torchrun: one AdamW step on an FSDP2 model, save_training_checkpoint (gathers the shards; rank 0 writes),
    load it into a fresh sharded model + optimiser (once from the directory, once into an already sharded model with
    scale.distributed.load_full_state_dict, as --resume does), take one more step with all: True when they end
    identical."""
    from transformers import AutoModelForCausalLM

    from plumbing.checkpoint import save_training_checkpoint

    x = torch.randint(5, 90, (2, 12), generator=torch.Generator().manual_seed(distributed.rank()))  # [2, 12]

    def step(model, optimizer):
        model(input_ids=x, labels=x).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    model, tokenizer = tiny_model()
    model = distributed.wrap_model(model, "fsdp")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    step(model, optimizer)
    path = os.path.join(out, "fsdp_checkpoint")
    save_training_checkpoint(path, model, tokenizer, optimizer, step=1, data_order=[1, 0])
    state = torch.load(os.path.join(path, "trainer_state.pt"), weights_only=False)
    again = distributed.wrap_model(AutoModelForCausalLM.from_pretrained(path), "fsdp")
    again_optimizer = torch.optim.AdamW(again.parameters(), lr=1e-2)
    distributed.load_optimizer_state_dict(again, again_optimizer, state["optimizer"])
    resumed = distributed.wrap_model(tiny_model()[0], "fsdp")  # the start weights, sharded, then the checkpoint's
    resumed_optimizer = torch.optim.AdamW(resumed.parameters(), lr=1e-2)
    distributed.load_full_state_dict(resumed, AutoModelForCausalLM.from_pretrained(path).state_dict())
    state = torch.load(os.path.join(path, "trainer_state.pt"), weights_only=False)  # its own copy: shards are views
    distributed.load_optimizer_state_dict(resumed, resumed_optimizer, state["optimizer"])
    for pair in ((model, optimizer), (again, again_optimizer), (resumed, resumed_optimizer)):
        step(*pair)
    a, b, c = (distributed.full_state_dict(m) for m in (model, again, resumed))
    return all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)


WORKER = """
import json, os, sys, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads(1)
import train_stage1
from scale import distributed
from tests.test_distributed import chunked_update, fixed_batch_update, fsdp_checkpoint_round_trip
distributed.init()
rank, world, out = distributed.rank(), distributed.world_size(), {out!r}
# 1. the fixed batch, one update, through DDP and through FSDP2; then the same with chunked log-probs
for name, update in (("", fixed_batch_update), ("chunked_", chunked_update)):
    for mode in ("ddp", "fsdp"):
        weights, metrics = update(mode, rank, world)
        if mode == "ddp":  # every rank holds the full model: save each rank's copy
            torch.save(weights, os.path.join(out, f"{{name}}ddp_rank{{rank}}.pt"))
        elif rank == 0:  # FSDP2 shards it: rank 0 receives the gathered full weights
            torch.save(weights, os.path.join(out, f"{{name}}fsdp_full.pt"))
        if rank == 0:
            json.dump(metrics, open(os.path.join(out, f"{{name}}{{mode}}_metrics.json"), "w"))
same = fsdp_checkpoint_round_trip(out)
if rank == 0:
    json.dump({{"identical": same}}, open(os.path.join(out, "fsdp_round_trip.json"), "w"))
# 2. train_stage1.main end to end, 1 step; keep the wrapped model to compare the ranks' weights afterwards
wrapped, wrap = [], distributed.wrap_model
def wrapping(m, mode="ddp", trainable=True):
    wrapped.append(wrap(m, mode, trainable))
    return wrapped[-1]
distributed.wrap_model = wrapping
args = train_stage1.Args(model="toy", train_data={data!r}, eval_data="", output_dir=os.path.join(out, "run"),
                         group_size=4, prompts_per_step=4, steps=1, max_new_tokens=120, threads=1, save_every=1, seed=0,
                         judge="toy-v3")  # a judge whose groups carry a signal at both steps here (grad_norm > 0)
train_stage1.main(args)
args.steps, args.resume = 2, True  # and --resume under torchrun: one more step from checkpoints/step_000001
train_stage1.main(args)
# [-1]: the ref model
flat = torch.cat([p.detach().flatten() for p in distributed.unwrap(wrapped[-2]).parameters()])
torch.save(flat, os.path.join(out, f"e2e_rank{{rank}}.pt"))
# 3. baselines.train_sft: batches of 3 rows over 4 problems, so rank 1 gets 1 row, then none (the last batch has 1)
import baselines
baselines.train_sft(baselines.SFTArgs(train_data={data!r}, eval_data="", output_dir=os.path.join(out, "sft"), epochs=1,
                                      batch_size=3, micro_batch_size=1, threads=1, lr=1e-3, weight_decay=0.0))
distributed.cleanup()
"""


@pytest.fixture(scope="module")
def torchrun_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    data = out / "hard.jsonl"
    save_problems(toy.make_toy_problems(4, 8, 8, seed=11), str(data))
    (out / "worker.py").write_text(WORKER.format(repo=REPO, out=str(out), data=str(data)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(out / "worker.py"),
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )  # its own process group: a hang is killed with its workers
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, stderr[-4000:]
    return out


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_rank_update_equals_single_process_update(torchrun_outputs, mode):
    torch.set_num_threads(1)
    single_weights, single_metrics = fixed_batch_update(mode)  # world size 1: no wrapping, the whole batch
    if mode == "ddp":
        ranks = [torch.load(torchrun_outputs / f"ddp_rank{r}.pt") for r in range(2)]
        assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # the replicas are bit-identical
        weights = ranks[0]
    else:
        weights = torch.load(torchrun_outputs / "fsdp_full.pt")
    assert set(weights) == set(single_weights)
    base, _ = tiny_model()
    moved = max((single_weights[k] - base.state_dict()[k]).abs().max().item() for k in weights)
    assert moved > 1e-3  # the step really changed the weights (SGD, lr 0.5)
    for k in weights:
        torch.testing.assert_close(weights[k], single_weights[k], atol=1e-6, rtol=0)
    metrics = json.load(open(torchrun_outputs / f"{mode}_metrics.json"))
    # the global token-mean loss and the gradient norm (over the synchronised gradient) match one process's
    for key in ("loss", "grad_norm", "kl_ref", "pg_loss", "entropy"):
        assert metrics[key] == pytest.approx(single_metrics[key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_rank_chunked_update_equals_single_process_unchunked(torchrun_outputs, mode):
    """Chunked log-probs under DDP (the wrapper's forward runs, its gradient hooks fire) and FSDP2 (the head's weight is
    read inside the root's forward, where it is all-gathered; tied to the embedding) give the single-process update
    computed with one logits tensor."""
    torch.set_num_threads(1)
    single_weights, single_metrics = chunked_update(mode, chunk_size=None)
    if mode == "ddp":
        ranks = [torch.load(torchrun_outputs / f"chunked_ddp_rank{r}.pt") for r in range(2)]
        assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
        weights = ranks[0]
    else:
        weights = torch.load(torchrun_outputs / "chunked_fsdp_full.pt")
    assert set(weights) == set(single_weights)
    before = tied_tiny_model(0).state_dict()
    assert max((single_weights[k] - before[k]).abs().max().item() for k in weights) > 1e-3
    for k in weights:
        torch.testing.assert_close(weights[k], single_weights[k], atol=1e-6, rtol=0, msg=k)
    metrics = json.load(open(torchrun_outputs / f"chunked_{mode}_metrics.json"))
    for key in ("loss", "grad_norm", "kl_ref", "pg_loss", "entropy"):
        assert metrics[key] == pytest.approx(single_metrics[key], rel=1e-5, abs=1e-7), key


def test_fsdp2_checkpoint_round_trip(torchrun_outputs):
    """The FSDP2 path of save_training_checkpoint / --resume: gathered weights form a normal save_pretrained model
    (architecture name included), and the gathered AdamW state continues training exactly."""
    config = json.load(open(torchrun_outputs / "fsdp_checkpoint" / "config.json"))
    assert config["architectures"] == ["LlamaForCausalLM"]
    state = torch.load(torchrun_outputs / "fsdp_checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 1 and state["data_order"] == [1, 0] and len(state["rng"]) == 2
    assert len(state["optimizer"]["state"]) > 0  # the AdamW moments were gathered, not left sharded
    assert json.load(open(torchrun_outputs / "fsdp_round_trip.json")) == {"identical": True}


def test_two_rank_stage1_run_keeps_ranks_identical_and_rank0_writes(torchrun_outputs):
    ranks = [torch.load(torchrun_outputs / f"e2e_rank{r}.pt") for r in range(2)]
    assert torch.equal(ranks[0], ranks[1])
    run = torchrun_outputs / "run"
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]  # one row per step, from rank 0 only; step 2 after --resume
    assert all(0.0 <= r["judge_score"] <= 1.0 and r["grad_norm"] > 0 for r in rows)
    assert sorted(os.listdir(run / "checkpoints")) == ["step_000001", "step_000002"]
    state = torch.load(run / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 2 and len(state["rng"]) == 2  # one RNG state per rank
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # ranks sample different streams
    from safetensors.torch import load_file

    saved = load_file(str(run / "checkpoint" / "model.safetensors"))
    assert sum(v.numel() for v in saved.values()) == ranks[0].numel()


def test_shard_and_reduce_metrics_in_one_process():
    assert distributed.shard([1, 2, 3, 4], num_shards=2, index=1) == [3, 4]
    with pytest.raises(ValueError, match="multiple"):
        distributed.shard([1, 2, 3], num_shards=2, index=0)
    metrics = {"judge_score": 0.1 + 0.2}
    assert distributed.reduce_metrics(metrics, {"judge_score": 3}) is metrics  # one process: untouched floats
    assert distributed.choose_mode("auto", "hf") == "ddp" and distributed.choose_mode("auto", "vllm") == "fsdp"
    with pytest.raises(SystemExit, match="hang"):  # FSDP2 under HF generate: refused, with the reason
        distributed.choose_mode("fsdp", "hf")


def test_judge_as_an_http_endpoint(monkeypatch):
    """The 6 + 2 GPU layout: --judge http://host:port/v1 --judge_model NAME reaches the judge server through
    scale.openai_engine.OpenAIEngine (replaced here by a stand-in: the openai client is not installed in this
    environment)."""
    from config import build_judge
    from scale import openai_engine
    from train_stage1 import parse_args

    class FakeEngine:
        def __init__(self, base_url, model):
            self.base_url, self.model = base_url, model

        def chat(self, messages_list, max_tokens):
            return ["Reasoning: fine.\nScore: 4"] * len(messages_list)

    monkeypatch.setattr(openai_engine, "OpenAIEngine", FakeEngine)
    args = parse_args(["--judge", "http://10.0.0.7:8000/v1", "--judge_model", "qwen-judge", "--judge_max_tokens", "64"])
    llm_judge = build_judge(args.judge, max_tokens=args.judge_max_tokens, served_model=args.judge_model)
    assert (llm_judge.engine.base_url, llm_judge.engine.model, llm_judge.max_tokens) == (
        "http://10.0.0.7:8000/v1",
        "qwen-judge",
        64,
    )
    assert llm_judge.score_outcome(["1+1"], ["2"], ["2"]).scores == [0.75]  # Score 4 -> (4 - 1) / 4


def test_two_rank_sft_equals_single_process_sft(torchrun_outputs, tmp_path):
    """SFT under torchrun (uneven rows per rank, one rank idle in the last batch) == one process on the same batches."""
    from safetensors.torch import load_file

    from baselines import SFTArgs, train_sft

    train_sft(
        SFTArgs(
            train_data=str(torchrun_outputs / "hard.jsonl"),
            eval_data="",
            output_dir=str(tmp_path),
            epochs=1,
            batch_size=3,
            micro_batch_size=2,
            threads=1,
            lr=1e-3,
            weight_decay=0.0,
        )
    )
    single = load_file(tmp_path / "checkpoint" / "model.safetensors")
    ranks2 = load_file(torchrun_outputs / "sft" / "checkpoint" / "model.safetensors")
    for name, value in single.items():
        torch.testing.assert_close(ranks2[name], value, atol=1e-5, rtol=0, msg=name)
    rows = [json.loads(line) for line in open(torchrun_outputs / "sft" / "metrics.jsonl")]
    expected = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["tokens"] for r in rows] == [r["tokens"] for r in expected]  # the global token count, summed over ranks
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in expected], rel=1e-5)
