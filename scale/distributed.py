"""Data parallelism on one node with PyTorch's own tools: torchrun starts the processes, this file reads its env vars.

    torchrun --nproc_per_node N train_stage1.py ...   # N ranks, one per GPU (nccl) or per CPU process (gloo)
    python train_stage1.py ...                        # world size 1: every helper below is a no-op

How a step splits (train_stage1.py): every rank holds the same global prompt order; rank r takes the r-th contiguous
block of the step's prompts (`shard`: whole groups stay on one rank), samples and judges it. The loss of the GLOBAL
mini-batch is a token-mean, so each rank divides its summed token losses by (the global token count / world), because
both wrappers AVERAGE gradients over ranks (`global_mini_batch`, whose denominator goes to grpo.grpo_step). The average
is then the single-process gradient over the same global batch. A rank whose micro-batch holds only dropped rollouts
still runs its forward/backward (grpo.py computes a zero loss for it), so every rank makes the same collective calls.

Which wrapper (`wrap_model`), and why:
- "ddp" (DistributedDataParallel): every rank keeps the full model, optimiser state and gradients; gradients are
  all-reduced in backward. Used with the HF engine (CPU, tests): sampling calls `generate` on the training model
  itself, and ranks decode different numbers of tokens. FSDP2 all-gathers the weights inside every forward call, a
  collective all ranks must join, so ranks that decode different lengths would wait for each other forever; and rank
  0 evaluates alone. DDP's forward passes need no collective on the unwrapped module, so generation stays local.
- "fsdp" (FSDP2, `torch.distributed.fsdp.fully_shard`): parameters, gradients and AdamW states sharded over ranks
  (each decoder layer one unit), so a 4B policy fits next to its vLLM engine. Used with `--engine vllm` (GPU), where
  sampling and evaluation run in the engine and the training model only runs the update, whose forward/backward count
  is the same on every rank. It works on CPU with gloo in torch 2.13: tests/test_distributed.py checks that both
  wrappers give the single-process update. It has NOT been run on GPUs (nccl) in this project.
"""

import datetime
import os

import torch
import torch.distributed as dist


# ---------------------------------------------------------------------------------------------------------- process
def setup(data_parallel: str, engine: str, prompts_per_step: int) -> str:
    """Join torchrun's process group (a plain process: nothing happens) and check, before anything loads, that the
    run can split: the wrapper (choose_mode) and prompts_per_step a multiple of the world size. Returns "ddp" | "fsdp".
    """
    init()
    mode = choose_mode(data_parallel, engine)
    shard(list(range(prompts_per_step)))  # fail now, not at step 1, unless prompts split evenly
    return mode


def init() -> None:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); nccl with one GPU per rank, else gloo on the
    CPU. Idempotent."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    # Rank 0 evaluates and writes checkpoints while the others wait at their next collective: allow it 2 hours.
    timeout = datetime.timedelta(hours=2)
    if torch.cuda.device_count() >= int(os.environ.get("LOCAL_WORLD_SIZE", "1")):  # one GPU per rank: nccl
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl", timeout=timeout)
    else:  # no GPU, or fewer GPUs than ranks (e.g. the 2-process CPU tests on a 1-GPU machine): gloo on the CPU
        dist.init_process_group("gloo", timeout=timeout)


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def local_rank() -> int:
    """This process's index on its node (its GPU), from torchrun's LOCAL_RANK."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_seed(seed: int) -> int:
    """One random stream per rank: seed * world + rank (the seed itself in one process)."""
    return seed * world_size() + rank()


def is_main() -> bool:
    """Rank 0 logs, evaluates and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group together: a barrier first, so no rank tears its connections down while another is
    still in a collective (under a loaded CPU, gloo aborted a rank that was still finishing)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------- data
def shard(items: list, num_shards: int | None = None, index: int | None = None) -> list:
    """This rank's contiguous block of `items`; the length must divide evenly (equal work, equal collective calls).

    Example: shard([a, b, c, d], num_shards=2, index=1) -> [c, d]
    """
    num_shards = world_size() if num_shards is None else num_shards
    index = rank() if index is None else index
    if len(items) % num_shards:
        raise ValueError(
            f"{len(items)} items do not split evenly over {num_shards} ranks "
            "(make --prompts_per_step a multiple of the number of processes)"
        )
    size = len(items) // num_shards
    return items[index * size : (index + 1) * size]


def all_reduce_sum(value: float) -> float:
    """Sum of a number over ranks (e.g. a mini-batch's token count); the number itself in a single process."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return type(value)(t.item())


def global_mini_batch(mini: dict, loss) -> tuple[float | None, bool]:
    """This rank's rows as part of the GLOBAL mini-batch (all ranks' rows): (the `denominator` for grpo.grpo_step,
    whether any rank's rows carry a non-zero advantage). `loss` is the grpo.LossConfig. Collective: every rank must
    call it. One process: (None, i.e. grpo_step's own denominator, whether this batch has an advantage).

    Both wrappers AVERAGE gradients over ranks, so each rank divides its summed token losses by N / world, N = the
    denominator summed over ranks (response tokens for a token-mean, non-empty rows for seq-mean-token-mean): averaged,
    the gradient is the single-process gradient of the global mini-batch. seq-mean-token-sum-norm's constant is the
    same on every rank and is kept (None), so its synchronised gradient is the ranks' mean, 1/world of the
    single-process sum.

    Example: 2 ranks with 30 and 10 tokens: N = 40, both divide by 40 / 2 = 20; the average of sum_0 / 20 and
    sum_1 / 20 is (sum_0 + sum_1) / 40, the token-mean of the global mini-batch.
    """
    signal = all_reduce_sum(float((mini["advantages"] * mini["response_mask"]).abs().sum()))
    if not dist.is_initialized() or loss.agg == "seq-mean-token-sum-norm":
        return None, signal != 0.0
    total = all_reduce_sum(float(loss.denominator(mini["response_mask"])))
    return max(total, 1.0) / world_size(), signal != 0.0


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (e.g. the data order, so all ranks cut the same global batches)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (e.g. per-rank RNG states for a checkpoint)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def reduce_metrics(
    metrics: dict, weights: dict | None = None, default_weight: float = 1.0, sums: tuple = (), maxes: tuple = ()
) -> dict:
    """One step's metrics over all ranks: weighted means, except `sums` (counts) and `maxes` (e.g. wall times).

    weights[key] is this rank's weight for a mean metric (e.g. its number of rollouts, or response tokens for
    token-mean metrics); keys not in `weights` get `default_weight`. Every rank must pass the same keys. In a single
    process the dict comes back unchanged (same floats, so single-process logs do not change).
    Example: ranks with judge_score 0.5 over 8 rollouts and 0.2 over 2 -> (0.5 * 8 + 0.2 * 2) / 10 = 0.44.
    """
    if not dist.is_initialized():
        return metrics
    weights = weights or {}
    keys = sorted(metrics)
    w = [0.0 if k in sums or k in maxes else float(weights.get(k, default_weight)) for k in keys]
    packed = [metrics[k] if k in sums else (0.0 if k in maxes else metrics[k] * wk) for k, wk in zip(keys, w)]
    total = torch.tensor(packed + w, dtype=torch.float64, device=_comm_device())  # [2K]
    dist.all_reduce(total)
    biggest = torch.tensor(
        [float(metrics[k]) if k in maxes else 0.0 for k in keys], dtype=torch.float64, device=_comm_device()
    )  # [K]
    dist.all_reduce(biggest, op=dist.ReduceOp.MAX)
    out = {}
    for i, k in enumerate(keys):
        if k in sums:
            out[k] = type(metrics[k])(total[i].item())  # a count stays an int
        elif k in maxes:
            out[k] = biggest[i].item()
        else:
            out[k] = total[i].item() / max(total[len(keys) + i].item(), 1e-12)
    return {k: out[k] for k in metrics}  # the caller's key order


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# ---------------------------------------------------------------------------------------------------------- model
def choose_mode(requested: str, engine: str) -> str:
    """--data_parallel auto|ddp|fsdp -> "ddp" or "fsdp": FSDP2 with the vLLM engine, DDP with HF generate (see the
    module docstring); fsdp with HF generate is refused, because it would hang."""
    mode = requested if requested != "auto" else ("fsdp" if engine == "vllm" else "ddp")
    if mode == "fsdp" and engine != "vllm":
        raise SystemExit(
            "--data_parallel fsdp needs --engine vllm: FSDP2 all-gathers the weights in every forward, so "
            "HF generate on the sharded model would hang once ranks decode different lengths"
        )
    if mode not in ("ddp", "fsdp"):
        raise SystemExit(f"--data_parallel must be auto, ddp or fsdp, got {requested!r}")
    return mode


def wrap_model(model: torch.nn.Module, mode: str = "ddp", trainable: bool = True) -> torch.nn.Module:
    """Wrap a model for data-parallel training (see the module docstring for which mode where); no-op at world size 1.

    "ddp" returns a DistributedDataParallel (the model is `.module`); "fsdp" shards the model in place with FSDP2,
    one unit per decoder layer (`model.model.layers`, the Hugging Face layout) plus the root (embeddings, final norm,
    lm_head), bf16 compute on GPUs, and returns it.
    Both average gradients over ranks (PyTorch's default; see the module docstring).
    trainable=False (a frozen reference model): "ddp" returns the
    model unwrapped (a full copy per rank, forward only); "fsdp" shards it too (4B: 8 GB of bf16 weights -> 1.3 GB per
    rank on 6 ranks).
    """
    if not dist.is_initialized():
        return model
    if mode == "ddp":
        if not trainable:
            return model
        device_ids = [local_rank()] if dist.get_backend() == "nccl" else None
        # No buffer sync in forward: the only buffers (rotary frequencies) are identical constants, and without it a
        # forward pass is no collective, so a rank may skip one (e.g. a micro-batch of dropped rollouts).
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)
    if mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # GPUs (nccl): compute in bf16 from the fp32 master shards, reduce gradients in fp32 (the usual FSDP2 setting).
        # CPU (gloo, the tests): all fp32, so the update can be compared with one process to float tolerance.
        mp = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            if dist.get_backend() == "nccl"
            else MixedPrecisionPolicy()
        )
        for layer in model.model.layers:
            fully_shard(layer, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        return model
    raise ValueError(f"data-parallel mode must be 'ddp' or 'fsdp', got {mode!r}")


def wrap_models(policy: torch.nn.Module, ref_model: torch.nn.Module | None, mode: str):
    """(the policy wrapped to train, the frozen reference wrapped or None) by wrap_model; one process: unchanged."""
    return wrap_model(policy, mode), (wrap_model(ref_model, mode, trainable=False) if ref_model is not None else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a DDP wrapper (FSDP2 shards in place: the model is itself)."""
    return getattr(model, "module", model)


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model: torch.nn.Module) -> dict:
    """The full (unsharded) weights on CPU, for save_pretrained. Collective under FSDP2: every rank must call it;
    only rank 0 receives the tensors (the others get {})."""
    if not is_sharded(model):
        return unwrap(model).state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state_dict(model: torch.nn.Module, state: dict) -> None:
    """Inverse of full_state_dict: every rank passes the full weights; under FSDP2 each keeps its own shard."""
    if not is_sharded(model):
        unwrap(model).load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def optimizer_state_dict(model: torch.nn.Module, optimizer) -> dict:
    """The optimiser state to checkpoint: plain (identical on every DDP rank), or gathered in full under FSDP2
    (collective; rank 0 receives it)."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state_dict(model: torch.nn.Module, optimizer, state: dict) -> None:
    """Inverse of optimizer_state_dict; under FSDP2 every rank passes the full state and keeps its own shard."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
