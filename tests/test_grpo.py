"""Tests for grpo.py: hand-computed loss values (arithmetic in comments), log-probs against a naive computation,
and exact gradient equality under micro-batching. A tiny Llama built from a config; nothing is downloaded."""

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from grpo import LossConfig, grpo_step, kl_k3, policy_loss, token_logprobs

AGGS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: thread start-up costs more than the maths on a busy 2-core machine. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config)


def gpt2_model():
    """GPT-2 has learned ABSOLUTE position embeddings, so wrong positions under left padding change its outputs."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(config).eval()  # eval: GPT-2 has dropout


PROMPTS = [[5, 6], [7, 8, 9, 10], [11, 12, 13], [14, 15, 16]]  # different lengths -> different left padding
RESPONSES = [[20, 21, 22], [23], [24, 25], []]  # different lengths; the last trajectory is dropped (no tokens)


def make_batch(prompts=PROMPTS, responses=RESPONSES, pad=0):
    """The project's layout: prompt left-padded to P, response right-padded to R."""
    P, R = max(map(len, prompts)), max(map(len, responses))
    rows, attn, resp = [], [], []
    for p, r in zip(prompts, responses):
        rows.append([pad] * (P - len(p)) + p + r + [pad] * (R - len(r)))
        attn.append([0] * (P - len(p)) + [1] * (len(p) + len(r)) + [0] * (R - len(r)))
        resp.append([0] * P + [1] * len(r) + [0] * (R - len(r)))
    return {"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(attn), "response_mask": torch.tensor(resp)}


class GradRecorder:
    """Stands in for an optimiser: keeps a copy of the gradients grpo_step would apply."""

    def __init__(self, model):
        self.model, self.grads = model, None

    def step(self):
        self.grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in self.model.parameters()]

    def zero_grad(self):
        for p in self.model.parameters():
            p.grad = None


def one_token_loss(ratio, adv, **kwargs):
    """policy_loss on a single token with lp_old = 0, lp = log(ratio); returns (loss, d loss / d lp, metrics)."""
    lp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, metrics = policy_loss(lp, torch.zeros(1, 1), torch.tensor([[adv]]), torch.ones(1, 1), **kwargs)
    loss.backward()
    return loss.item(), lp.grad.item(), metrics


# ----------------------------------------------------------------------------------------------------------------------
# policy_loss: clipping
# ----------------------------------------------------------------------------------------------------------------------


def test_positive_advantage_clip_high():
    # A = 1, ratio 1.27 < 1 + 0.28: loss = -A * ratio = -1.27; d/dlp (-ratio) = -ratio = -1.27
    loss, grad, m = one_token_loss(1.27, 1.0)
    assert loss == pytest.approx(-1.27) and grad == pytest.approx(-1.27) and m["clipfrac_high"] == 0.0
    # ratio 1.29 > 1.28: loss = -A * 1.28, constant in lp -> zero gradient
    loss, grad, m = one_token_loss(1.29, 1.0)
    assert loss == pytest.approx(-1.28) and grad == 0.0 and m["clipfrac_high"] == 1.0


def test_positive_advantage_below_low_bound_is_not_clipped():
    # A = 1, ratio 0.7: max(-0.7, -0.8) = -0.7, the unclipped (pessimistic) term; gradient -0.7 flows
    loss, grad, m = one_token_loss(0.7, 1.0)
    assert loss == pytest.approx(-0.7) and grad == pytest.approx(-0.7) and m["clipfrac_low"] == 0.0


def test_negative_advantage_clip_low():
    # A = -1, ratio 0.81 > 1 - 0.2: loss = -A * ratio = 0.81, gradient +0.81
    loss, grad, m = one_token_loss(0.81, -1.0)
    assert loss == pytest.approx(0.81) and grad == pytest.approx(0.81) and m["clipfrac_low"] == 0.0
    # ratio 0.79 < 0.8: max(0.79, 0.8) = 0.8, constant -> zero gradient
    loss, grad, m = one_token_loss(0.79, -1.0)
    assert loss == pytest.approx(0.8) and grad == 0.0 and m["clipfrac_low"] == 1.0


def test_negative_advantage_above_high_bound_is_not_clipped():
    # A = -1, ratio 1.5: max(1.5, 1.28) = 1.5 (< dual cap 3); gradient 1.5
    loss, grad, _ = one_token_loss(1.5, -1.0)
    assert loss == pytest.approx(1.5) and grad == pytest.approx(1.5)


def test_dual_clip():
    # A = -2, ratio 4: pg = max(2 * 4, 2 * 1.28) = 8; dual cap -A * 3 = 6 -> loss 6, zero gradient
    loss, grad, m = one_token_loss(4.0, -2.0)
    assert loss == pytest.approx(6.0) and grad == 0.0 and m["dual_clip_frac"] == 1.0
    # ratio 2.9 < 3: pg = 2 * 2.9 = 5.8 under the cap; gradient -A * ratio = 5.8
    loss, grad, m = one_token_loss(2.9, -2.0)
    assert loss == pytest.approx(5.8) and grad == pytest.approx(5.8) and m["dual_clip_frac"] == 0.0
    # dual_clip=None: plain PPO, loss 8
    loss, _, _ = one_token_loss(4.0, -2.0, dual_clip=None)
    assert loss == pytest.approx(8.0)


def test_clip_bounds_are_arguments():
    # Process setting clip_high = 0.26: ratio 1.27 is now clipped -> -1.26
    loss, grad, _ = one_token_loss(1.27, 1.0, clip_high=0.26)
    assert loss == pytest.approx(-1.26) and grad == 0.0


# ----------------------------------------------------------------------------------------------------------------------
# k3 KL, KL and entropy terms
# ----------------------------------------------------------------------------------------------------------------------


def test_kl_k3_hand_computed():
    # lp = 0, ref = log 0.5: exp(log 0.5) - log 0.5 - 1 = 0.5 + 0.693147 - 1 = 0.193147
    # lp = log 0.5, ref = 0: exp(log 2) - log 2 - 1 = 2 - 0.693147 - 1 = 0.306853
    lp = torch.tensor([0.0, math.log(0.5), -1.3])
    ref = torch.tensor([math.log(0.5), 0.0, -1.3])
    k = kl_k3(lp, ref)
    assert torch.allclose(k, torch.tensor([0.5 + math.log(2) - 1, 2 - math.log(2) - 1, 0.0]), atol=1e-6)
    # verl's low_var_kl: k3 is clamped to [-10, 10]. lp = 0, ref = 3: e^3 - 3 - 1 = 16.09 -> 10, and no gradient
    lp = torch.tensor([0.0, 0.0, 0.0], requires_grad=True)
    k = kl_k3(lp, torch.tensor([3.0, 100.0, 1.0]))
    assert k[:2].tolist() == [10.0, 10.0] and k[2].item() == pytest.approx(math.e - 2, abs=1e-6)
    k.sum().backward()
    # d/dlp of e^(ref - lp) - (ref - lp) - 1 = 1 - e^(ref - lp): 0 where clamped, 1 - e = -1.718 at ref - lp = 1
    assert lp.grad[:2].tolist() == [0.0, 0.0] and lp.grad[2].item() == pytest.approx(1 - math.e, abs=1e-6)


def test_kl_and_entropy_terms_enter_the_loss():
    # one token, on-policy (ratio 1), A = 0: pg = 0; loss = 0.1 * k3 - 0.01 * H
    # lp = 0, ref = log 0.5 -> k3 = 0.193147; H = 2 -> loss = 0.0193147 - 0.02
    one = torch.ones(1, 1)
    loss, m = policy_loss(
        torch.zeros(1, 1),
        torch.zeros(1, 1),
        torch.zeros(1, 1),
        one,
        ref_logprobs=torch.full((1, 1), math.log(0.5)),
        kl_coef=0.1,
        entropy=torch.full((1, 1), 2.0),
        entropy_coef=0.01,
    )
    assert loss.item() == pytest.approx(0.1 * (math.log(2) - 0.5) - 0.02, abs=1e-7)
    assert m["kl_ref"] == pytest.approx(math.log(2) - 0.5, abs=1e-6) and m["entropy"] == 2.0
    assert m["approx_kl"] == 0.0 and m["pg_loss"] == 0.0


# ----------------------------------------------------------------------------------------------------------------------
# aggregation and masking
# ----------------------------------------------------------------------------------------------------------------------

MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])
ADV = torch.tensor([[-1.0, -2.0, 0.0], [-4.0, 0.0, 0.0]])  # on-policy (ratio 1): per-token loss = -A = [[1, 2], [4]]


def test_seq_mean_token_sum_norm_is_verls_definition():
    # B = 2, L = 1, lp = old = 0, A = -1: per-token loss 1 on both rows -> (1 + 1) / L = 2.0 (a row mean would give 1.0)
    loss, _ = policy_loss(
        torch.zeros(2, 1), torch.zeros(2, 1), -torch.ones(2, 1), torch.ones(2, 1), agg="seq-mean-token-sum-norm"
    )
    assert loss.item() == 2.0


@pytest.mark.parametrize(
    "agg, kwargs, expected",
    [
        ("token-mean", {}, 7 / 3),  # (1 + 2 + 4) / 3 tokens
        ("seq-mean-token-mean", {}, 2.75),  # ((1 + 2) / 2 + 4 / 1) / 2 rows
        ("seq-mean-token-sum-norm", {}, 7 / 3),  # (1 + 2 + 4) / L, L = 3: verl sums rows, it does not average them
        ("seq-mean-token-sum-norm", {"norm_length": 2}, 3.5),  # (1 + 2 + 4) / 2
    ],
)
def test_aggregations_hand_computed(agg, kwargs, expected):
    zeros = torch.zeros(2, 3)
    loss, m = policy_loss(zeros, zeros, ADV, MASK, agg=agg, **kwargs)
    assert loss.item() == pytest.approx(expected)
    assert m["pg_loss"] == pytest.approx(expected)


def test_unknown_aggregation():
    with pytest.raises(ValueError, match="token-mean"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), agg="mean")


def test_masked_garbage_does_not_leak():
    # Off-mask entries hold inf / NaN in every input; loss and gradients must equal the clean example's.
    bad = torch.tensor([[0.0, 0.0, float("nan")], [0.0, float("inf"), -float("inf")]])
    lp = bad.clone().requires_grad_(True)
    old = torch.where(MASK.bool(), torch.zeros(2, 3), torch.full((2, 3), -float("inf")))
    adv = torch.where(MASK.bool(), ADV, torch.full((2, 3), float("inf")))
    ref = torch.where(MASK.bool(), torch.zeros(2, 3), torch.full((2, 3), float("nan")))
    ent = torch.where(MASK.bool(), torch.ones(2, 3), torch.full((2, 3), float("inf")))
    for agg in AGGS:
        lp.grad = None
        loss, m = policy_loss(lp, old, adv, MASK, ref_logprobs=ref, kl_coef=0.5, entropy=ent, entropy_coef=0.1, agg=agg)
        loss.backward()
        assert torch.isfinite(loss) and all(math.isfinite(v) for v in m.values())
        assert torch.isfinite(lp.grad).all()
        assert (lp.grad[~MASK.bool()] == 0).all()
    # token-mean: per-token loss = -A + 0 (k3 at ratio 1) - 0.1 * 1 -> (1 + 2 + 4) / 3 - 0.1
    loss, _ = policy_loss(lp, old, adv, MASK, ref_logprobs=ref, kl_coef=0.5, entropy=ent, entropy_coef=0.1)
    assert loss.item() == pytest.approx(7 / 3 - 0.1)


# ----------------------------------------------------------------------------------------------------------------------
# token_logprobs
# ----------------------------------------------------------------------------------------------------------------------


def naive_row(model, prompt, response):
    """Unpadded, full-logits reference: log p and entropy of each response token of one sequence."""
    ids = torch.tensor([prompt + response])
    logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)  # [len, V]
    rows = range(len(prompt) - 1, len(prompt) + len(response) - 1)  # logits at t - 1 predict token t
    lp = torch.stack([logp[i, tok] for i, tok in zip(rows, response)]) if response else torch.zeros(0)
    ent = torch.stack([-(logp[i].exp() * logp[i]).sum() for i in rows]) if response else torch.zeros(0)
    return lp, ent


@pytest.mark.parametrize("micro_batch_size", [1, 3, 4])
def test_token_logprobs_matches_naive_unpadded(micro_batch_size):
    model = tiny_model()
    batch = make_batch()
    P = batch["input_ids"].shape[1] - max(map(len, RESPONSES))
    with torch.no_grad():
        lp, ent = token_logprobs(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["response_mask"],
            micro_batch_size=micro_batch_size,
            with_entropy=True,
        )
        only_lp = token_logprobs(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["response_mask"],
            micro_batch_size=micro_batch_size,
        )
    assert lp.shape == ent.shape == batch["input_ids"].shape and torch.equal(lp, only_lp)
    for b, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        want_lp, want_ent = naive_row(model, prompt, response)
        n = len(response)
        assert torch.allclose(lp[b, P : P + n], want_lp, atol=1e-5)
        assert torch.allclose(ent[b, P : P + n], want_ent, atol=1e-5)
    off = batch["response_mask"] == 0
    assert (lp[off] == 0).all() and (ent[off] == 0).all()


def test_token_logprobs_left_padding_with_absolute_positions():
    # Llama's RoPE only sees position DIFFERENCES, so it cannot tell whether left-padded rows got the right positions;
    # GPT-2's learned absolute position embeddings can: the first real token must get position 0, as in generate().
    model = gpt2_model()
    batch = make_batch()
    P = batch["input_ids"].shape[1] - max(map(len, RESPONSES))
    with torch.no_grad():
        lp = token_logprobs(
            model, batch["input_ids"], batch["attention_mask"], batch["response_mask"], micro_batch_size=4
        )
    for b, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        want, _ = naive_row(model, prompt, response)
        assert torch.allclose(lp[b, P : P + len(response)], want, atol=1e-5)


def test_token_logprobs_temperature():
    # logits / 0.5: compare with the naive computation on doubled logits
    model = tiny_model()
    batch = make_batch(PROMPTS[:1], RESPONSES[:1])
    with torch.no_grad():
        lp = token_logprobs(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["response_mask"],
            micro_batch_size=1,
            temperature=0.5,
        )
        logp = torch.log_softmax(model(torch.tensor([PROMPTS[0] + RESPONSES[0]])).logits[0] / 0.5, dim=-1)
    want = torch.stack([logp[1 + i, tok] for i, tok in enumerate(RESPONSES[0])])
    assert torch.allclose(lp[0, 2:], want, atol=1e-5)


GROUP_PROMPTS = [[5, 6]] * 3 + [[7, 8, 9, 10]] * 2 + [[11, 12, 13]]  # three groups, different left padding
GROUP_RESPONSES = [[20, 21, 22], [23], [], [24, 25], [26, 27, 28, 29], [30]]  # ragged; one dropped row


@pytest.mark.parametrize("make_model", [tiny_model, gpt2_model], ids=["llama", "gpt2-absolute-positions"])
def test_shared_prompts_same_logprobs_and_gradients_less_work(make_model):
    # A GRPO batch repeats each prompt G times: the repeated prompt runs once (KV cache copied to its rows). Log-probs,
    # entropies and gradients must equal the plain forward and the unpadded naive one, with fewer positions computed.
    model = make_model()
    batch = make_batch(GROUP_PROMPTS, GROUP_RESPONSES)
    B, L = batch["input_ids"].shape
    P = L - max(map(len, GROUP_RESPONSES))
    positions = []
    embed = model.get_input_embeddings()
    hook = embed.register_forward_hook(lambda module, args, out: positions.append(args[0].numel()))
    results = {}
    for share in (False, True):
        model.zero_grad()
        positions.clear()
        lp, ent = token_logprobs(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["response_mask"],
            micro_batch_size=B,
            with_entropy=True,
            share_prompts=share,
        )
        (lp.sum() + 0.1 * ent.sum()).backward()
        results[share] = (lp.detach(), ent.detach(), [p.grad.clone() for p in model.parameters()], sum(positions))
    hook.remove()
    (lp0, ent0, grads0, work0), (lp1, ent1, grads1, work1) = results[False], results[True]
    assert work0 == B * L == 6 * 8 and work1 == 3 * P + B * (L - P) == 3 * 4 + 6 * 4  # 48 -> 36 positions
    assert torch.allclose(lp1, lp0, atol=1e-5) and torch.allclose(ent1, ent0, atol=1e-5)
    for g0, g1 in zip(grads0, grads1):
        assert torch.allclose(g1, g0, atol=1e-5, rtol=1e-4)
    for b, (prompt, response) in enumerate(zip(GROUP_PROMPTS, GROUP_RESPONSES)):
        with torch.no_grad():
            want, _ = naive_row(model, prompt, response)
        assert torch.allclose(lp1[b, P : P + len(response)], want, atol=1e-5)
    assert (lp1[batch["response_mask"] == 0] == 0).all()


def test_shared_prompts_off_with_gradient_checkpointing():
    # transformers disables the KV cache while training with gradient checkpointing, so sharing must not be tried.
    model = tiny_model()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    batch = make_batch(GROUP_PROMPTS, GROUP_RESPONSES)
    lp = token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"], micro_batch_size=6)
    model.gradient_checkpointing_disable()
    with torch.no_grad():
        want = token_logprobs(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["response_mask"],
            micro_batch_size=6,
            share_prompts=False,
        )
    assert torch.allclose(lp.detach(), want, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# grpo_step
# ----------------------------------------------------------------------------------------------------------------------


def training_batch(model):
    """The shared batch with advantages, and old/ref log-probs perturbed so clipping and KL are active."""
    batch = make_batch()
    torch.manual_seed(1)
    mask = batch["response_mask"].float()
    with torch.no_grad():
        lp = token_logprobs(
            model, batch["input_ids"], batch["attention_mask"], batch["response_mask"], micro_batch_size=4
        )
    batch["advantages"] = torch.randn(mask.shape) * mask  # [B, L]
    batch["old_logprobs"] = (lp + 0.3 * torch.randn(mask.shape)) * mask
    batch["ref_logprobs"] = (lp + 0.3 * torch.randn(mask.shape)) * mask
    return batch


def step_grads(batch, micro_batch_size, agg):
    model = tiny_model()
    recorder = GradRecorder(model)
    metrics = grpo_step(
        model,
        recorder,
        batch,
        LossConfig(kl_coef=0.1, agg=agg, entropy_coef=0.01),
        micro_batch_size=micro_batch_size,
        max_grad_norm=None,
    )
    return recorder.grads, metrics


@pytest.mark.parametrize("agg", AGGS)
def test_micro_batching_gives_the_full_batch_gradient(agg):
    # Responses have 3, 1, 2 and 0 tokens, so micro-batches of one row have different token counts: averaging
    # per-micro-batch losses would weight tokens unequally; grpo_step must reproduce the unsplit batch exactly.
    batch = training_batch(tiny_model())
    full, m_full = step_grads(batch, 4, agg)
    split, m_split = step_grads(batch, 1, agg)
    for g_full, g_split in zip(full, split):
        assert torch.allclose(g_full, g_split, atol=1e-6, rtol=0)
    assert m_full["loss"] == pytest.approx(m_split["loss"], abs=1e-6)
    assert m_full["clipfrac_low"] + m_full["clipfrac_high"] > 0  # the perturbed old log-probs do clip some tokens


def test_naive_micro_batch_averaging_would_fail_the_test_above():
    # Mean of the three non-empty one-row token-mean losses (3, 1 and 2 tokens) differs from the batch token-mean,
    # so the equality test above can fail.
    batch = training_batch(tiny_model())
    full, _ = step_grads(batch, 4, "token-mean")
    model = tiny_model()
    for b in range(3):
        rows = slice(b, b + 1)
        lp = token_logprobs(
            model,
            batch["input_ids"][rows],
            batch["attention_mask"][rows],
            batch["response_mask"][rows],
            micro_batch_size=1,
        )
        loss, _ = policy_loss(
            lp,
            batch["old_logprobs"][rows],
            batch["advantages"][rows],
            batch["response_mask"][rows],
            ref_logprobs=batch["ref_logprobs"][rows],
            kl_coef=0.1,
        )
        (loss / 3).backward()
    naive = [p.grad for p in model.parameters()]
    assert max((a - b).abs().max().item() for a, b in zip(full, naive)) > 1e-4


def test_on_policy_step_changes_weights():
    model = tiny_model()
    batch = make_batch()
    batch["advantages"] = batch["response_mask"].float()  # every response token is good: push its log-prob up
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        lp_before = token_logprobs(
            model, batch["input_ids"], batch["attention_mask"], batch["response_mask"], micro_batch_size=4
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    metrics = grpo_step(model, optimizer, batch, LossConfig(log_entropy=True), micro_batch_size=2)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None or (p.grad == 0).all() for p in model.parameters())  # zero_grad was called
    # no old_logprobs: old = current, so ratio = 1, nothing clipped, approx_kl = 0
    assert metrics["approx_kl"] == 0.0 and metrics["clipfrac_high"] == 0.0 and metrics["entropy"] > 0
    with torch.no_grad():
        lp_after = token_logprobs(
            model, batch["input_ids"], batch["attention_mask"], batch["response_mask"], micro_batch_size=4
        )
    assert lp_after.sum() > lp_before.sum()


def test_grad_clipping_caps_the_norm():
    model = tiny_model()
    batch = training_batch(model)
    recorder = GradRecorder(model)
    metrics = grpo_step(model, recorder, batch, LossConfig(kl_coef=0.1), micro_batch_size=2, max_grad_norm=1e-3)
    applied = torch.sqrt(sum((g**2).sum() for g in recorder.grads)).item()
    assert metrics["grad_norm"] > 1e-3  # reported before clipping
    assert applied == pytest.approx(1e-3, rel=1e-4)


def test_kl_without_reference_is_an_error():
    model = tiny_model()
    batch = make_batch()
    batch["advantages"] = torch.zeros(batch["input_ids"].shape)
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_step(model, GradRecorder(model), batch, LossConfig(kl_coef=0.001), micro_batch_size=2)
