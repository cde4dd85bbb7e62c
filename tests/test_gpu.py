"""GPU checks (marker `gpu`; they skip without CUDA, so they sit in the default suite): a toy Stage-I step on CUDA, and
FSDP2 updates of a Qwen3-0.6B-shaped model with chunked log-probs at 4k / 8k / 16k response tokens, measured against
the memory arithmetic (scripts/memory_budget.py). scripts/gpu_check.sh runs them and collects their measurements
(written as JSON into $GPU_CHECK_DIR when set). The CPU test at the end runs the same FSDP2 measurement code on a
tiny model with gloo, so the code path is checked on every machine."""

import json
import math
import os
import time

import pytest
import torch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def record(name: str, value) -> None:
    """Keep a measurement for scripts/gpu_check.sh (a JSON file in $GPU_CHECK_DIR; nothing without it)."""
    folder = os.environ.get("GPU_CHECK_DIR")
    if folder:
        with open(os.path.join(folder, f"{name}.json"), "w") as f:
            json.dump(value, f, indent=1)


@pytest.mark.gpu
@needs_cuda
def test_toy_stage1_step_on_cuda(tmp_path):
    import train_stage1

    args = train_stage1.Args(device="cuda", steps=1, eval_data="", output_dir=str(tmp_path), threads=1, seed=0)
    start = time.perf_counter()
    result = train_stage1.main(args)
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    record("stage1_cuda", {"seconds": seconds, "result": result, "metrics": rows})
    assert [r["step"] for r in rows] == [1]
    assert math.isfinite(rows[0]["loss"]) and math.isfinite(rows[0]["grad_norm"])
    assert (tmp_path / "checkpoint" / "model.safetensors").exists()


@pytest.mark.gpu
@needs_cuda
def test_fsdp2_long_responses_fit_and_match_the_arithmetic():
    """Qwen3-0.6B shape, FSDP2 world size 1, bf16, gradient checkpointing: chunk 1024 at 4k / 8k / 16k response tokens,
    and unchunked at the same lengths for comparison (an H200 holds the 16k unchunked logits, ~35 GB)."""
    from scripts.fsdp_memory import measure, table
    from scripts.memory_budget import QWEN3_06B

    try:
        rows = measure(QWEN3_06B, [4096, 8192, 16384], [1024, 0], prompt=512)
    finally:
        torch.distributed.destroy_process_group()
    record("fsdp_memory", rows)
    print(table(rows))
    by = {(r["response_tokens"], r["chunk_size"]): r for r in rows}
    for r in rows:
        assert math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) and r["entropy"] > 0
    # chunking removes the logits term (16,384 x 151,936 x 14 B = 34.9 GB predicted) from the peak; at least half of
    # it must show up in the measurement, and the chunked peak at 16k must stay within 1.5x of the arithmetic.
    saved = by[16384, None]["max_allocated_gb"] - by[16384, 1024]["max_allocated_gb"]
    predicted_saving = by[16384, None]["predicted_gb"] - by[16384, 1024]["predicted_gb"]
    assert saved > 0.5 * predicted_saving
    assert by[16384, 1024]["max_allocated_gb"] < 1.5 * by[16384, 1024]["predicted_gb"]


def test_fsdp_measurement_code_on_cpu():
    """scripts.fsdp_memory.measure on a CPU: gloo, a 2-layer tiny Qwen3 shape, lr 0 so every update sees the same
    weights: the chunked (k = 5, 17 response tokens: 5 + 5 + 5 + 2) and unchunked updates give the same loss, gradient
    norm and entropy, and the prediction has the chunked items."""
    from scripts.fsdp_memory import measure
    from scripts.memory_budget import Shape

    tiny = Shape("tiny", layers=2, hidden=64, intermediate=128, q_heads=2, kv_heads=1, head_dim=32, vocab=97)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = measure(tiny, [17], [5, 0], prompt=6, device="cpu", lr=0.0)
    finally:
        torch.distributed.destroy_process_group()
        torch.set_num_threads(threads)
    chunked, plain = rows
    assert (chunked["chunk_size"], plain["chunk_size"]) == (5, None)
    for key in ("loss", "grad_norm", "entropy"):
        assert chunked[key] == pytest.approx(plain[key], rel=1e-5), key
    assert "head: weight-gradient fp32 sum + bf16 product" in chunked["predicted_items"]
    assert "response logits: bf16 + 3 fp32 copies" in plain["predicted_items"]
    assert tiny.params == 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64 + 2 * 32) + 97 * 64 + 64
