"""Peak memory and time of grpo.token_logprobs + backward on long responses, with and without chunked log-probs.

    python -m scripts.logprob_memory                                   # vocab 49,152, responses of 1k / 4k / 8k tokens
    python -m scripts.logprob_memory --lengths 4096 --chunks 0 256 1024 --vocab 151936
    python -m scripts.logprob_memory --toy_step                      # the toy world's update: does chunking cost time?

Each configuration runs in a FRESH subprocess (peak memory is a per-process high-water mark): it builds a
random-init Llama-style model from a config (fp32, CPU), one row of `--prompt` prompt tokens plus R response tokens,
notes its peak resident set size (ru_maxrss) after building everything (the baseline: interpreter, torch,
transformers, model, batch), then runs token_logprobs(with_entropy=True) and the backward of a loss on log-probs and
entropies `--repeats` times, and reports the peak RSS again. "above baseline" is what the log-probs and their
gradient cost. Times are medians over the repeats (the first included: it allocates fresh memory), as process CPU
seconds (all threads; steadier than wall time on a shared machine) and wall seconds.
Prints a markdown table; chunk 0 means chunk_size=None (one [1, R, V] logits tensor).

--toy_step instead times grpo.grpo_step on a toy-world update in this process: the committed toy base (vocabulary 99),
64 rows = 8 groups of 8 sharing a 28-token prompt, responses of 40-120 tokens, entropy logged; the chunk sizes
interleaved, `--repeats` rounds, median process CPU seconds.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> dict:
    """One configuration in this process: build, baseline, token_logprobs + backward x repeats, peak."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from grpo import token_logprobs

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64,
        num_key_value_heads=args.hidden // 64,
        max_position_embeddings=args.prompt + args.length,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    L = args.prompt + args.length
    input_ids = torch.randint(0, args.vocab, (1, L))  # [1, L]
    attention_mask = torch.ones(1, L, dtype=torch.long)  # [1, L]
    response_mask = torch.zeros(1, L, dtype=torch.long)  # [1, L]
    response_mask[:, args.prompt :] = 1
    baseline = rss_mb()
    chunk = args.chunk or None
    cpu, wall = [], []
    for _ in range(args.repeats):
        model.zero_grad(set_to_none=True)
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        lp, ent = token_logprobs(
            model, input_ids, attention_mask, response_mask, micro_batch_size=1, with_entropy=True, chunk_size=chunk
        )  # [1, L] each
        (-(lp.sum()) - 0.01 * ent.sum()).backward()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
        del lp, ent
    return {
        "length": args.length,
        "chunk": args.chunk,
        "baseline_mb": baseline,
        "peak_mb": rss_mb(),
        "cpu_seconds": statistics.median(cpu),
        "wall_seconds": statistics.median(wall),
        "all_cpu": cpu,
        "all_wall": wall,
    }


def run_one(args, length: int, chunk: int) -> dict:
    """The worker for one (length, chunk) in a fresh Python process; its JSON line back."""
    flags = {
        "length": length,
        "chunk": chunk,
        "vocab": args.vocab,
        "hidden": args.hidden,
        "layers": args.layers,
        "prompt": args.prompt,
        "repeats": args.repeats,
        "threads": args.threads,
    }
    cmd = [sys.executable, "-m", "scripts.logprob_memory", "--worker"]
    cmd += [item for name, value in flags.items() for item in (f"--{name}", str(value))]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def toy_step(args) -> str:
    """Median CPU seconds of one grpo_step on a toy-sized batch per chunk size (see the module docstring)."""
    import torch

    from grpo import LossConfig, grpo_step
    from plumbing.common import load_model

    torch.set_num_threads(args.threads)
    model, _ = load_model("toy")
    g = torch.Generator().manual_seed(0)
    B, P, R = 64, 28, 120
    input_ids = torch.randint(5, 90, (B, P + R), generator=g)  # [B, L]
    input_ids[:, :P] = input_ids[::8, :P].repeat_interleave(8, dim=0)  # 8 groups of 8 rows share a prompt
    lengths = torch.randint(40, R + 1, (B,), generator=g).tolist()
    attention_mask = torch.ones(B, P + R, dtype=torch.long)  # [B, L]
    response_mask = torch.zeros(B, P + R, dtype=torch.long)  # [B, L]
    for i, n in enumerate(lengths):
        attention_mask[i, P + n :] = 0
        response_mask[i, P : P + n] = 1
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "response_mask": response_mask,
        "advantages": torch.randn(B, P + R, generator=g) * response_mask,
    }
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the weights stay the same for every round
    seconds = {chunk: [] for chunk in args.chunks}
    for _ in range(args.repeats):
        for chunk in args.chunks:
            start = time.process_time()
            grpo_step(
                model, optimizer, batch, LossConfig(log_entropy=True, chunk_size=chunk or None), micro_batch_size=B
            )
            seconds[chunk].append(time.process_time() - start)
    lines = [
        f"toy grpo_step, {B} rows, {sum(lengths)} response tokens, {args.threads} thread(s), median of {args.repeats}",
        "",
        "| chunk_size | CPU s | vs None |",
        "|---:|---:|---:|",
    ]
    base = statistics.median(seconds[0]) if 0 in seconds else None
    for chunk, values in seconds.items():
        ratio = f"{statistics.median(values) / base:.2f}x" if base and chunk else ""
        lines.append(f"| {chunk or 'None'} | {statistics.median(values):.3f} | {ratio} |")
    return "\n".join(lines)


def table(rows: list[dict], args) -> str:
    """Markdown: one line per configuration, the chunked ones compared with chunk_size=None at the same length."""
    plain = {r["length"]: r for r in rows if r["chunk"] == 0}
    lines = [
        f"vocab {args.vocab:,}, hidden {args.hidden}, {args.layers} layers, 1 row, prompt {args.prompt} tokens, "
        f"fp32, {args.threads} thread(s), median of {args.repeats}",
        "",
        "| response tokens | chunk_size | peak RSS MB | above baseline MB | vs None | CPU s | vs None | wall s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        above = r["peak_mb"] - r["baseline_mb"]
        ref = plain.get(r["length"])
        mem_ratio = f"{above / (ref['peak_mb'] - ref['baseline_mb']):.2f}x" if ref and r["chunk"] else ""
        time_ratio = f"{r['cpu_seconds'] / ref['cpu_seconds']:.2f}x" if ref and r["chunk"] else ""
        lines.append(
            f"| {r['length']:,} | {r['chunk'] or 'None'} | {r['peak_mb']:,.0f} | {above:,.0f} | {mem_ratio} "
            f"| {r['cpu_seconds']:.2f} | {time_ratio} | {r['wall_seconds']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8192], help="response tokens")
    parser.add_argument(
        "--chunks", type=int, nargs="+", default=[0, 256, 1024], help="chunk sizes; 0 = None (unchunked)"
    )
    parser.add_argument("--vocab", type=int, default=49152, help="vocabulary (Qwen3: 151,936)")
    parser.add_argument("--hidden", type=int, default=128, help="model width")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers")
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens")
    parser.add_argument("--repeats", type=int, default=3, help="timed forward + backward runs per configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--toy_step", action="store_true", help="time grpo_step on a toy-world batch instead")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.toy_step:
        print(toy_step(args))
        return
    rows = []
    for length in args.lengths:
        for chunk in args.chunks:
            rows.append(run_one(args, length, chunk))
            print(
                f"# R={length} chunk={chunk or None}: peak {rows[-1]['peak_mb']:.0f} MB, "
                f"{rows[-1]['cpu_seconds']:.2f} CPU s",
                file=sys.stderr,
            )
    print(table(rows, args))


if __name__ == "__main__":
    main()
