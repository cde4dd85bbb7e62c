"""Per-rank GPU memory of a Stage-I update under FSDP2, on paper: the arithmetic behind docs/memory-budget.md.

    python -m scripts.memory_budget                         # Qwen3-4B, 6 policy ranks, 16,384 response tokens
    python -m scripts.memory_budget --response_tokens 8192 --chunk_size 0     # 0 = unchunked log-probs

`budget()` returns one number (GB = 1e9 bytes) per item alive at the peak of the update's backward; the GPU check
(scripts/fsdp_memory.py, tests/test_gpu.py) prints the same prediction next to torch.cuda.max_memory_allocated.
It is arithmetic, not a measurement: CUDA context (~0.5-1 GB) and allocator fragmentation are not in it.
"""

import argparse
from dataclasses import dataclass

# Bytes autograd keeps per token and per unit of hidden size while ONE decoder layer is recomputed in backward
# (gradient checkpointing), bf16: RMSNorms in float32, q/k/v, rotary, attention output and log-sum-exp, SwiGLU's four
# [I]-wide tensors. Counted with torch.autograd.graph.saved_tensors_hooks over a bf16 Qwen3 layer (unique storages,
# 256 tokens): 66.7 x hidden for the Qwen3-4B shape, 70.7 x hidden for Qwen3-0.6B. (Korthikanti et al. 2022 count
# 34 x hidden for a GPT layer with fused kernels; Hugging Face's float32 norms cost more.)
LAYER_BYTES_PER_TOKEN_PER_HIDDEN = 70
HEAD_CHUNK_COPIES = 4  # float32 [k, V] tensors alive at once in _ChunkedHead.backward: log p, p, g_z, + bf16 g_z


@dataclass(frozen=True)
class Shape:
    """A Qwen3/Llama-style decoder: what the arithmetic needs."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    q_heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool = True

    @property
    def layer_params(self) -> int:
        """q, o: 2 H (q_heads d); k, v: 2 H (kv_heads d); SwiGLU: 3 H I; norms: 2 H + q_norm, k_norm 2 d (Qwen3)."""
        H, d = self.hidden, self.head_dim
        return 2 * H * self.q_heads * d + 2 * H * self.kv_heads * d + 3 * H * self.intermediate + 2 * H + 2 * d

    @property
    def root_params(self) -> int:
        """What FSDP2's root unit holds: the embedding (and an untied LM head) and the final norm."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.root_params


QWEN3_4B = Shape(
    "Qwen3-4B", layers=36, hidden=2560, intermediate=9728, q_heads=32, kv_heads=8, head_dim=128, vocab=151936
)
QWEN3_06B = Shape(
    "Qwen3-0.6B", layers=28, hidden=1024, intermediate=3072, q_heads=16, kv_heads=8, head_dim=128, vocab=151936
)


def logits_gb(response_tokens: int, vocab: int) -> float:
    """The unchunked path's response logits: bf16 logits + 3 float32 copies (the float cast, the softmax for the
    entropy, the gradient), 2 + 3 x 4 = 14 bytes per token per vocabulary entry.

    Example: 16,384 x 151,936 x 14 B = 34.85 GB (Qwen3-4B at the paper's response limit).
    """
    return response_tokens * vocab * 14 / 1e9


def budget(
    shape: Shape,
    response_tokens: int,
    prompt_tokens: int,
    chunk_size: int | None,
    ranks: int,
    vllm_fraction: float,
    gpu_gb: float,
    kl_reference: bool = True,
    rows: int = 1,
) -> dict[str, float]:
    """GB per rank for a micro-batch of `rows` rows of prompt + response tokens, FSDP2 over `ranks`, bf16 compute,
    fp32 master weights and AdamW, gradient checkpointing, log-probs chunked by chunk_size (None: one logits tensor).
    The chunks run over the micro-batch's response tokens flattened, so their memory does not grow with `rows`.

    Example (tests/test_chunked.py): Qwen3-4B, 1 row of 16,384 + 512 tokens, k = 1024, 6 ranks, vLLM 0.3 of 80 GB:
    51.3 GB; unchunked 81.3 GB (the response logits alone 34.85 GB).
    """
    P, L, E, H, V = shape.params, shape.layer_params, shape.root_params, shape.hidden, shape.vocab
    T, R = rows * (prompt_tokens + response_tokens), rows * response_tokens
    items = {
        "fp32 weights + grads + AdamW m, v (sharded)": P * (4 + 4 + 8) / ranks / 1e9,
        "KL reference, fp32 (sharded)": P * 4 / ranks / 1e9 if kl_reference else 0.0,
        "bf16 all-gathered: root (embedding/head) + 2 layers": (E + 2 * L) * 2 / 1e9,
        "bf16 unsharded grads: root + 1 layer, and its fp32 reduce copy": (E * 2 + L * (2 + 4)) / 1e9,
        "checkpointed layer inputs, bf16": shape.layers * T * H * 2 / 1e9,
        "one layer recomputed in backward": LAYER_BYTES_PER_TOKEN_PER_HIDDEN * T * H / 1e9,
        "final hidden states: output, gathered copy, 2 gradients, bf16": 4 * R * H * 2 / 1e9,
    }
    if chunk_size is None:
        items["response logits: bf16 + 3 fp32 copies"] = logits_gb(R, V)
    else:
        items["head chunk: logits and softmax, 4 fp32 copies"] = min(chunk_size, R) * V * 4 * HEAD_CHUNK_COPIES / 1e9
        items["head: weight-gradient fp32 sum + bf16 product"] = V * H * (4 + 2) / 1e9
    items["vLLM engine (gpu_memory_utilization)"] = vllm_fraction * gpu_gb
    return items


def table(items: dict[str, float]) -> str:
    lines = ["| item | GB |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in items.items()]
    lines.append(f"| **total** | **{sum(items.values()):.1f}** |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--response_tokens", type=int, default=16384)
    parser.add_argument("--prompt_tokens", type=int, default=512)
    parser.add_argument("--chunk_size", type=int, default=1024, help="0 = unchunked")
    parser.add_argument("--ranks", type=int, default=6, help="FSDP2 policy ranks")
    parser.add_argument("--vllm_memory", type=float, default=0.3, help="the colocated engine's share of the GPU")
    parser.add_argument("--gpu_gb", type=float, default=80.0)
    parser.add_argument("--rows", type=int, default=1, help="micro-batch rows (--micro_batch_size)")
    parser.add_argument("--model", choices=["4b", "0.6b"], default="4b")
    args = parser.parse_args(argv)
    shape = QWEN3_4B if args.model == "4b" else QWEN3_06B
    items = budget(
        shape,
        response_tokens=args.response_tokens,
        prompt_tokens=args.prompt_tokens,
        chunk_size=args.chunk_size or None,
        ranks=args.ranks,
        vllm_fraction=args.vllm_memory,
        gpu_gb=args.gpu_gb,
        rows=args.rows,
    )
    print(
        f"{shape.name} ({shape.params / 1e6:,.1f}M parameters), {args.rows} x ({args.response_tokens:,} response + "
        f"{args.prompt_tokens} prompt) tokens, chunk_size {args.chunk_size or None}, {args.ranks} ranks\n"
    )
    print(table(items))


if __name__ == "__main__":
    main()
