"""Chunked response log-probs (grpo.token_logprobs(..., chunk_size=k)): the same log-probs, entropies and parameter
gradients as one [b, R, V] logits tensor, for Llama (tied and untied head) and GPT-2, chunk sizes that do and do not
divide the response length, ragged rows, temperature != 1, prompt sharing; the hand-worked gradient of _ChunkedHead;
no vocabulary-sized tensor kept for backward; models that change their logits after the head are refused.
The 2-process DDP / FSDP2 versions are in tests/test_distributed.py; the memory-budget arithmetic is tested here too."""

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

import toy.world as toy
from grpo import LossConfig, grpo_step
from logprobs import token_logprobs
from scale.logprobs_fast import _ChunkedHead
from tests.test_grpo import GROUP_PROMPTS, GROUP_RESPONSES, GradRecorder, make_batch, training_batch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def llama_untied():
    """The toy world's model (untied head, 99-token vocabulary)."""
    return toy.build_tiny_model(toy.build_tokenizer(), hidden_size=64, num_layers=1, seed=0)


def llama_tied():
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=40,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            tie_word_embeddings=True,
        )
    )


def gpt2():
    """Absolute positions, tied head, biases in every layer (none in the head)."""
    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=2)
    ).eval()


MODELS = {"llama-untied": llama_untied, "llama-tied": llama_tied, "gpt2": gpt2}


def logprobs_and_grads(model, batch, chunk_size, share, temperature=0.7, with_entropy=True, micro=6):
    """token_logprobs on the batch, then the backward of a loss that weighs every token differently."""
    model.zero_grad(set_to_none=True)
    out = token_logprobs(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        batch["response_mask"],
        micro_batch_size=micro,
        with_entropy=with_entropy,
        temperature=temperature,
        share_prompts=share,
        chunk_size=chunk_size,
    )
    lp, ent = out if with_entropy else (out, None)
    weights = torch.linspace(-1.0, 2.0, lp.numel()).view_as(lp)  # [B, L]
    loss = (weights * lp).sum() + (0.3 * (weights * ent).sum() if with_entropy else 0.0)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return lp.detach(), (ent.detach() if with_entropy else None), grads


def assert_same(got, want):
    (lp, ent, grads), (lp0, ent0, grads0) = got, want
    torch.testing.assert_close(lp, lp0, atol=1e-6, rtol=1e-6)
    if ent0 is not None:
        torch.testing.assert_close(ent, ent0, atol=1e-6, rtol=1e-6)
    assert grads.keys() == grads0.keys()
    for name in grads0:
        torch.testing.assert_close(grads[name], grads0[name], atol=2e-6, rtol=1e-5, msg=name)


# The batch: 3 groups (prompts of 2, 4 and 3 tokens, left-padded to 4), responses of 3, 1, 0, 2, 4 and 1 tokens
# right-padded to R = 4; the empty row is a dropped rollout. Chunks run over the 11 real response tokens (flattened),
# so k = 1, 3, 7 leave 11, 4 (3 + 3 + 3 + 2) and 2 (7 + 4) chunks, and 50 is larger than everything.
@pytest.mark.parametrize("share", [False, True], ids=["plain", "shared-prompts"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_chunked_equals_unchunked(kind, share):
    model = MODELS[kind]()
    batch = make_batch(GROUP_PROMPTS, GROUP_RESPONSES)
    assert int(batch["response_mask"].sum()) == 3 + 1 + 0 + 2 + 4 + 1 == 11
    want = logprobs_and_grads(model, batch, None, share)
    assert want[1][batch["response_mask"].bool()].min() > 0  # real entropies, and
    assert len(want[2]) == len(list(model.parameters()))  # every parameter gets a gradient
    for chunk_size in (1, 3, 7, 50):
        assert_same(logprobs_and_grads(model, batch, chunk_size, share), want)


def test_chunked_without_entropy_and_at_temperature_one():
    model = llama_tied()
    batch = make_batch(GROUP_PROMPTS, GROUP_RESPONSES)
    want = logprobs_and_grads(model, batch, None, False, temperature=1.0, with_entropy=False, micro=4)
    assert_same(logprobs_and_grads(model, batch, 2, False, temperature=1.0, with_entropy=False, micro=4), want)


def test_chunked_with_gradient_checkpointing():
    model = llama_untied()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    batch = make_batch(GROUP_PROMPTS, GROUP_RESPONSES)
    want = logprobs_and_grads(model, batch, None, True)
    assert_same(logprobs_and_grads(model, batch, 3, True), want)


def test_chunked_grpo_step_equals_unchunked():
    # The whole update (clip, dual clip, k3 KL, entropy bonus, micro-batches of 1 and 4 rows): LossConfig.chunk_size.
    batch = training_batch(llama_tied())
    results = []
    for chunk_size, micro in ((None, 4), (3, 4), (1, 1)):
        model = llama_tied()
        recorder = GradRecorder(model)
        loss = LossConfig(kl_coef=0.1, entropy_coef=0.01, temperature=0.8, chunk_size=chunk_size)
        metrics = grpo_step(model, recorder, batch, loss, micro_batch_size=micro, max_grad_norm=None)
        results.append((metrics, recorder.grads))
    (m0, g0), *others = results
    assert m0["clipfrac_low"] + m0["clipfrac_high"] > 0 and m0["kl_ref"] > 0 and m0["entropy"] > 0
    for metrics, grads in others:
        assert metrics.keys() == m0.keys()
        for key in m0:
            assert metrics[key] == pytest.approx(m0[key], rel=1e-5, abs=1e-7), key
        for a, b in zip(grads, g0):
            torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)


def test_chunked_head_gradient_hand_computed():
    # One position, hidden size 1, V = 2, W = [[0], [0]]: z = (0, 0), p = (1/2, 1/2).
    # lp = log 1/2 for the target y = 0; H = log 2.
    # d lp / d z = ([v = y] - p) = (1/2, -1/2); dL/dW = g_z^T h = [[0.5], [-0.5]] for h = [[1]]; dL/dh = g_z W = 0.
    h = torch.ones(1, 1, requires_grad=True)
    w = torch.zeros(2, 1, requires_grad=True)
    lp, ent = _ChunkedHead.apply(h, w, None, torch.tensor([0]), 1.0, True, 1)
    assert lp.item() == pytest.approx(math.log(0.5)) and ent.item() == pytest.approx(math.log(2))
    lp.sum().backward()
    assert w.grad.flatten().tolist() == [0.5, -0.5] and h.grad.item() == 0.0
    # The entropy's gradient at the uniform distribution (its maximum): -p (log p + H) = -(1/2)(log 1/2 + log 2) = 0.
    w.grad = None
    lp, ent = _ChunkedHead.apply(h, w, None, torch.tensor([0]), 1.0, True, 1)
    ent.sum().backward()
    assert w.grad.abs().max().item() < 1e-7
    # Temperature 2 with W = [[1], [0]], h = [[2]]: z = (2, 0) / 2 = (1, 0); p_0 = e / (e + 1) = 0.731059;
    # d lp_0 / d W_0 = (1 - p_0) * h / T = 0.268941 * 2 / 2 = 0.268941, d lp_0 / d W_1 = -(1 - p_0) = -0.268941.
    h = torch.full((1, 1), 2.0)
    w = torch.tensor([[1.0], [0.0]], requires_grad=True)
    lp, _ = _ChunkedHead.apply(h, w, None, torch.tensor([0]), 2.0, False, 1)
    lp.sum().backward()
    p0 = math.e / (math.e + 1)
    assert lp.item() == pytest.approx(math.log(p0)) and w.grad.flatten().tolist() == pytest.approx([1 - p0, p0 - 1])


def vocabulary_sized_saved_tensors(model, batch, chunk_size) -> list[tuple]:
    """Shapes of the tensors with a vocabulary-sized dimension that autograd keeps for backward in token_logprobs,
    except views of the head's weight itself (which the model holds anyway)."""
    vocab, shapes = model.config.vocab_size, []
    weight = model.get_output_embeddings().weight

    def pack(t):
        if vocab in t.shape and t.untyped_storage().data_ptr() != weight.untyped_storage().data_ptr():
            shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        token_logprobs(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["response_mask"],
            micro_batch_size=6,
            with_entropy=True,
            share_prompts=False,
            chunk_size=chunk_size,
        )
    return shapes


def test_chunked_keeps_no_vocabulary_sized_tensor_for_backward():
    # 12 rows of 4 prompt + 20 response tokens in micro-batches of 6 rows, V = 99, hidden 64. Unchunked, autograd keeps
    # each micro-batch's [6, 20, 99] response logits (and float32 copies of them); chunked, none besides the head's
    # weight [99, 64]: what backward keeps grows with tokens x hidden size, never tokens x vocabulary.
    model = llama_untied()
    torch.manual_seed(0)
    prompts = [torch.randint(5, 90, (4,)).tolist() for _ in range(12)]
    responses = [torch.randint(5, 90, (20,)).tolist() for _ in range(12)]
    batch = make_batch(prompts, responses)
    assert (6, 20, 99) in vocabulary_sized_saved_tensors(model, batch, None)
    assert vocabulary_sized_saved_tensors(model, batch, 4) == []


def test_chunked_refuses_models_that_change_their_logits():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    batch = make_batch(GROUP_PROMPTS, GROUP_RESPONSES)
    args = (batch["input_ids"], batch["attention_mask"], batch["response_mask"], 6)
    gemma = Gemma2ForCausalLM(
        Gemma2Config(
            vocab_size=40,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
        )
    )
    assert gemma.config.final_logit_softcapping == 30.0  # logits -> 30 tanh(logits / 30) after the head
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        token_logprobs(gemma, *args, chunk_size=4)
    token_logprobs(gemma, *args)  # unchunked: fine

    class ScaledLogits(LlamaForCausalLM):  # a logit scale applied in forward, not announced in the config
        def forward(self, *a, **kw):
            out = super().forward(*a, **kw)
            out.logits = out.logits * 2.0
            return out

    torch.manual_seed(0)
    scaled = ScaledLogits(llama_tied().config)
    with pytest.raises(ValueError, match="does not return the LM head's output unchanged"):
        token_logprobs(scaled, *args, chunk_size=4)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        token_logprobs(llama_tied(), *args, chunk_size=0)


# ----------------------------------------------------------------------------------------------------------------------
# the memory budget arithmetic (scripts/memory_budget.py, docs/memory-budget.md)
# ----------------------------------------------------------------------------------------------------------------------


def test_memory_budget_arithmetic():
    from scripts.memory_budget import QWEN3_4B, budget, logits_gb

    # The old (unchunked) logits term: 16,384 x 151,936 x (2 bf16 + 3 x 4 fp32) B = 34.85 GB.
    assert logits_gb(16384, 151936) == pytest.approx(16384 * 151936 * 14 / 1e9) == pytest.approx(34.85, abs=0.01)
    # Chunked, k = 1024: 1024 x 151,936 x 4 B x 4 copies = 2.49 GB, plus the head's weight gradient: a float32 sum and
    # a bf16 buffer for one chunk's product, 151,936 x 2560 x (4 + 2) B = 2.33 GB.
    items = budget(
        QWEN3_4B, response_tokens=16384, prompt_tokens=512, chunk_size=1024, ranks=6, vllm_fraction=0.3, gpu_gb=80
    )
    assert items["head chunk: logits and softmax, 4 fp32 copies"] == pytest.approx(1024 * 151936 * 16 / 1e9)
    assert items["head: weight-gradient fp32 sum + bf16 product"] == pytest.approx(151936 * 2560 * 6 / 1e9)
    # Sharded fp32 weights + grads + AdamW: 4,022M x 16 B / 6 = 10.7 GB; the vLLM engine 0.3 x 80 = 24 GB.
    assert QWEN3_4B.params == pytest.approx(4.022e9, rel=1e-3)
    assert items["fp32 weights + grads + AdamW m, v (sharded)"] == pytest.approx(QWEN3_4B.params * 16 / 6 / 1e9)
    assert items["vLLM engine (gpu_memory_utilization)"] == 24.0
    assert sum(items.values()) == pytest.approx(51.3, abs=0.05)  # docs/memory-budget.md's total
    paper = dict(response_tokens=16384, prompt_tokens=512, ranks=6, vllm_fraction=0.3, gpu_gb=80)
    unchunked = budget(QWEN3_4B, chunk_size=None, **paper)
    assert sum(unchunked.values()) - sum(items.values()) == pytest.approx(34.85 - 2.49 - 2.33, abs=0.01)
    # 4 rows: the activations (and final hidden states) x 4, the head chunk unchanged (tokens are flattened).
    four = budget(QWEN3_4B, chunk_size=1024, rows=4, **paper)
    assert (
        four["head chunk: logits and softmax, 4 fp32 copies"] == items["head chunk: logits and softmax, 4 fp32 copies"]
    )
    assert four["checkpointed layer inputs, bf16"] == pytest.approx(4 * 36 * 16896 * 2560 * 2 / 1e9)
