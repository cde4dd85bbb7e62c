#!/usr/bin/env bash
# The GPU check: one command on a CUDA machine, one results file.
#
#     bash scripts/gpu_check.sh                 # writes results/gpu_check.md (or: bash scripts/gpu_check.sh OUT.md)
#
# 1. the `gpu` tests (tests/test_gpu.py): a toy Stage-I step on CUDA; FSDP2 (world size 1, bf16, gradient
#    checkpointing) updates of a random-init Qwen3-0.6B-shaped model with chunked and unchunked log-probs at 4k / 8k /
#    16k response tokens, torch.cuda.max_memory_allocated and step time next to scripts/memory_budget.py's prediction;
# 2. the default suite without the `gpu` tests (they ran in 1), as `python -m pytest -q` runs it on that machine.
# Nothing is downloaded and nothing goes into the machine's own Python (PyTorch, transformers), which it uses as it is.
# Packages of requirements.txt missing there are listed at the top of the results (the tests needing them fail). About 8 minutes at most: each part has its own time limit. Exit status 0 unless the results file is missing.
# GPU_CHECK_SUITE=0 skips part 2 (a quick rerun of the GPU measurements).
#
# A GPU image without math-verify fails the Stage-I step (every rollout's answer reward imports it). Wheels in .whl/
# are installed into a temporary directory first, without the network; to bring math-verify along, run this on a
# machine with pip access, in the repository root (and carry .whl to the GPU machine):
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#         math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
if compgen -G ".whl/*.whl" > /dev/null; then
    SITE=$(mktemp -d)
    ${PYTHON:-python3} -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl \
        && export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
OUT_FILE=${1:-results/gpu_check.md}
mkdir -p "$(dirname "$OUT_FILE")"
GPU_CHECK_DIR=$(mktemp -d)
export GPU_CHECK_DIR
PY=${PYTHON:-python3}
start=$(date +%s)

echo "== environment"
{
    date -u +"%Y-%m-%d %H:%M UTC"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 4
    "$PY" -c "import sys, torch, transformers; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| transformers', transformers.__version__, '| cuda available:', torch.cuda.is_available())"
    "$PY" - <<'EOF'
import importlib.util
modules = {"torch": "torch", "transformers": "transformers", "numpy": "numpy", "math_verify": "math-verify",
           "datasets": "datasets", "matplotlib": "matplotlib", "tqdm": "tqdm", "pytest": "pytest", "openai": "openai"}
missing = [package for module, package in modules.items() if importlib.util.find_spec(module) is None]
print("missing from requirements.txt:", ", ".join(missing) if missing else "none")
EOF
} > "$GPU_CHECK_DIR/environment.txt" 2>&1
cat "$GPU_CHECK_DIR/environment.txt"

echo "== 1. gpu tests"
timeout 240 "$PY" -m pytest -q -s -m gpu tests/test_gpu.py -p no:cacheprovider > "$GPU_CHECK_DIR/gpu_tests.txt" 2>&1
echo "exit status $?" >> "$GPU_CHECK_DIR/gpu_tests.txt"
tail -n 5 "$GPU_CHECK_DIR/gpu_tests.txt"

echo "== 2. default suite (without the gpu tests)"
if [ "${GPU_CHECK_SUITE:-1}" != 0 ]; then
    timeout 240 "$PY" -m pytest -q -m "not slow and not vllm and not gpu" -p no:cacheprovider \
        > "$GPU_CHECK_DIR/suite.txt" 2>&1
    echo "exit status $? (124: stopped at the 240 s limit)" >> "$GPU_CHECK_DIR/suite.txt"
else
    echo "(skipped: GPU_CHECK_SUITE=0)" > "$GPU_CHECK_DIR/suite.txt"
fi
tail -n 5 "$GPU_CHECK_DIR/suite.txt"

SECONDS_TOTAL=$(( $(date +%s) - start )) "$PY" - "$OUT_FILE" <<'EOF'
import json, os, sys
from scripts.fsdp_memory import table

folder, out = os.environ["GPU_CHECK_DIR"], sys.argv[1]


def text(name, last=None):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return "(missing)"
    lines = open(path, errors="replace").read().rstrip().splitlines()
    return "\n".join(lines[-last:] if last else lines)


def data(name):
    path = os.path.join(folder, name)
    return json.load(open(path)) if os.path.exists(path) else None


parts = ["# GPU check (scripts/gpu_check.sh)", "", f"Total {os.environ['SECONDS_TOTAL']} s.", "", "```",
         text("environment.txt"), "```", "", "## FSDP2 updates on long responses (tests/test_gpu.py)", ""]
fsdp = data("fsdp_memory.json")
if fsdp:
    parts += [table(fsdp), "", "Predicted items (GB) per row, from scripts/memory_budget.py:", "", "```"]
    for r in fsdp:
        items = ", ".join(f"{k} {v:.2f}" for k, v in r["predicted_items"].items() if v)
        parts.append(f"R={r['response_tokens']} chunk={r['chunk_size']}: {items}")
    parts += ["```"]
else:
    parts += ["(no measurement: see the test output below)"]
stage1 = data("stage1_cuda.json")
parts += ["", "## Toy Stage-I step on CUDA", ""]
if stage1:
    m = stage1["metrics"][0]
    keys = [k for k in ("loss", "grad_norm", "judge_score", "entropy", "kl_ref", "time_sample", "time_judge",
                        "time_update", "time_step") if k in m]
    parts += [f"train_stage1.main, 1 step: {stage1['seconds']:.1f} s in all; " +
              ", ".join(f"{k} {m[k]:.4g}" for k in keys)]
else:
    parts += ["(no measurement: see the test output below)"]
parts += ["", "## `pytest -m gpu tests/test_gpu.py` (tail)", "", "```", text("gpu_tests.txt", 60), "```", "",
          "## The default suite without the gpu tests: `pytest -q -m \"not slow and not vllm and not gpu\"` (tail)", "",
          "```", text("suite.txt", 80), "```", ""]
with open(out, "w") as f:
    f.write("\n".join(parts))
print(f"results: {os.path.abspath(out)}")
EOF
test -s "$OUT_FILE"
