"""One GPU, FSDP2 at world size 1: peak memory and time of a GRPO update on long responses, next to the arithmetic.

    python -m scripts.fsdp_memory                              # Qwen3-0.6B shape, 4k / 8k / 16k response tokens
    python -m scripts.fsdp_memory --tokens 16384 --chunks 1024 0 --out results/fsdp_memory.json

A random-init model of the Qwen3-0.6B shape (596M parameters, vocabulary 151,936, tied head; nothing downloaded) in fp32
master weights, sharded with scale.distributed.wrap_model(..., "fsdp") (bf16 compute, fp32 gradient reduce, one unit per
decoder layer + the root), gradient checkpointing on, AdamW. For each response length and chunk size: one warm-up update
(AdamW creates its states), then one measured grpo.grpo_step on 1 row of `--prompt` + R tokens: its wall time and
torch.cuda.max_memory_allocated, beside scripts.memory_budget.budget() for the same setting (1 rank, no KL reference, no
vLLM). Needs CUDA; starts a 1-process nccl group itself when not under torchrun. (`measure` also runs on a CPU with gloo
and a tiny shape: tests/test_gpu.py checks the code path there, without memory numbers.)
"""

import argparse
import json
import socket
import sys
import time

import torch


def init_single_process_group(device: str) -> None:
    """A world-size-1 process group (FSDP2 needs one), nccl on a GPU and gloo on a CPU: a free local port, passed to
    init_process_group directly (the environment stays as it was)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if device == "cuda":
        torch.cuda.set_device(0)
    dist.init_process_group(
        "nccl" if device == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1
    )


def build_model(shape, device: str):
    """A random-init Qwen3 (LlamaForCausalLM if this transformers has no Qwen3) of `shape`, fp32, on `device`."""
    try:
        from transformers import Qwen3Config as Config
        from transformers import Qwen3ForCausalLM as Model
    except ImportError:  # transformers < 4.51
        from transformers import LlamaConfig as Config
        from transformers import LlamaForCausalLM as Model
    config = Config(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.q_heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        tie_word_embeddings=shape.tied,
        max_position_embeddings=40960,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = Model(config)
    return model


def random_batch(prompt: int, response: int, vocab: int, device: str) -> dict:
    """1 row: `prompt` + `response` random tokens, advantages +-1 on the response ([1, L] each, on `device`)."""
    g = torch.Generator().manual_seed(response)
    L = prompt + response
    response_mask = torch.zeros(1, L, dtype=torch.long)
    response_mask[:, prompt:] = 1
    advantages = torch.where(torch.rand(1, L, generator=g) < 0.5, -1.0, 1.0) * response_mask
    batch = {
        "input_ids": torch.randint(0, vocab, (1, L), generator=g),
        "attention_mask": torch.ones(1, L, dtype=torch.long),
        "response_mask": response_mask,
        "advantages": advantages,
    }
    return {k: v.to(device) for k, v in batch.items()}


def measure(shape, tokens: list[int], chunks: list[int], prompt: int, device: str = "cuda", lr: float = 1e-6):
    """One row per (response tokens, chunk size): measured peak (0 on a CPU) and time, predicted peak (GB = 1e9 B).
    Joins (or starts) a process group; the caller destroys it."""
    from grpo import LossConfig, grpo_step
    from scale import distributed
    from scripts.memory_budget import budget

    cuda = device == "cuda"
    init_single_process_group(device)
    model = build_model(shape, device)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    model = distributed.wrap_model(model, "fsdp")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    rows = []
    for response in tokens:
        batch = random_batch(prompt, response, shape.vocab, device)
        for chunk in chunks:
            loss = LossConfig(log_entropy=True, chunk_size=chunk or None)
            grpo_step(model, optimizer, batch, loss, micro_batch_size=1)  # warm-up (AdamW states, kernels)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            metrics = grpo_step(model, optimizer, batch, loss, micro_batch_size=1)
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            predicted = budget(
                shape, response, prompt, chunk or None, ranks=1, vllm_fraction=0.0, gpu_gb=0.0, kl_reference=False
            )
            rows.append(
                {
                    "model": shape.name,
                    "params": shape.params,
                    "response_tokens": response,
                    "prompt_tokens": prompt,
                    "chunk_size": chunk or None,
                    "seconds": seconds,
                    "max_allocated_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else 0.0,
                    "max_reserved_gb": torch.cuda.max_memory_reserved() / 1e9 if cuda else 0.0,
                    "predicted_gb": sum(predicted.values()),
                    "predicted_items": predicted,
                    "loss": metrics["loss"],
                    "grad_norm": metrics["grad_norm"],
                    "entropy": metrics["entropy"],
                }
            )
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "predicted_items"}), file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        f"{rows[0]['model']} ({rows[0]['params'] / 1e6:,.0f}M parameters), FSDP2 world size 1, bf16 compute, "
        f"gradient checkpointing, AdamW, 1 row of {rows[0]['prompt_tokens']} prompt + R response tokens",
        "",
        "| R | chunk_size | step s | max allocated GB | predicted GB | measured / predicted | max reserved GB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["max_allocated_gb"] / r["predicted_gb"]
        lines.append(
            f"| {r['response_tokens']:,} | {r['chunk_size']} | {r['seconds']:.2f} | {r['max_allocated_gb']:.2f} "
            f"| {r['predicted_gb']:.2f} | {ratio:.2f} | {r['max_reserved_gb']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 8192, 16384], help="response lengths")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1024, 0], help="chunk sizes; 0 = unchunked")
    parser.add_argument("--prompt", type=int, default=512, help="prompt tokens")
    parser.add_argument("--model", choices=["0.6b", "4b"], default="0.6b", help="the shape (random init)")
    parser.add_argument("--out", default="", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("scripts.fsdp_memory needs a CUDA GPU")
    from scripts.memory_budget import QWEN3_06B, QWEN3_4B

    try:
        rows = measure(QWEN3_06B if args.model == "0.6b" else QWEN3_4B, args.tokens, args.chunks, args.prompt)
    finally:
        torch.distributed.destroy_process_group()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    print(table(rows))


if __name__ == "__main__":
    main()
