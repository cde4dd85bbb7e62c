"""rollout.py: padding layouts by hand; HFSampler: left padding, EOS and truncation, seeding, group layout."""

import pytest
import torch

import toy.world as toy
from domains.problems import encode_prompts, policy_messages
from rollout import HFSampler, Rollout, left_pad, split_response, to_batch


@pytest.fixture(scope="module")
def prompts(toy_model):
    """Prompts of different lengths (easy and hard toy problems), so left padding matters."""
    _, tokenizer = toy_model
    problems = toy.make_toy_problems(2, 2, 2, seed=5) + toy.make_toy_problems(1, 9, 9, seed=6)
    ids = encode_prompts(tokenizer, [policy_messages(p) for p in problems])
    assert len({len(p) for p in ids}) > 1
    return ids


def test_padding_layouts_match_the_docstring_examples():
    ids, mask = left_pad([[5, 6], [7]], pad_id=0)
    assert ids.tolist() == [[5, 6], [0, 7]] and mask.tolist() == [[1, 1], [0, 1]]
    batch = to_batch([Rollout([5, 6], [8], "", False), Rollout([7], [9, 2], "", False)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 8, 0], [0, 7, 9, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [0, 1, 1, 1]]
    assert batch["response_mask"].tolist() == [[0, 0, 1, 0], [0, 0, 1, 1]]
    assert split_response([4, 5, 2, 0, 0], eos_ids={2}) == ([4, 5, 2], False)
    assert split_response([4, 5], eos_ids={2}) == ([4, 5], True)


def test_greedy_batch_equals_each_prompt_alone(toy_model, prompts):
    """Left padding done right: a padded row decodes exactly as that prompt does alone."""
    model, tokenizer = toy_model
    batched = HFSampler(model, tokenizer, max_new_tokens=40).sample(prompts, temperature=0)
    alone = [HFSampler(model, tokenizer, max_new_tokens=40).sample([p], temperature=0)[0] for p in prompts]
    assert [r.response_ids for r in batched] == [r.response_ids for r in alone]
    assert all("###" in r.text for r in batched)  # the toy model writes its steps


def test_rows_stop_at_their_own_eos_and_truncation_is_marked(toy_model, prompts):
    model, tokenizer = toy_model
    eos = tokenizer.eos_token_id
    full = HFSampler(model, tokenizer, max_new_tokens=200).sample(prompts, temperature=0)
    lengths = [len(r.response_ids) for r in full]
    assert all(r.response_ids[-1] == eos and r.response_ids.count(eos) == 1 and not r.truncated for r in full)
    assert len(set(lengths)) > 1  # the rows finished at different steps; padding after EOS was cut off
    assert all(tokenizer.eos_token not in r.text for r in full)
    cut = min(lengths) - 1
    short = HFSampler(model, tokenizer, max_new_tokens=cut).sample(prompts, temperature=0)
    assert all(r.truncated and r.response_ids == f.response_ids[:cut] for r, f in zip(short, full))


def test_sampling_is_seeded_and_groups_are_laid_out_prompt_by_prompt(toy_model, prompts):
    model, tokenizer = toy_model
    sampler = HFSampler(model, tokenizer, max_new_tokens=128)
    torch.manual_seed(3)
    first = sampler.sample(prompts, n=3)
    torch.manual_seed(3)
    again = sampler.sample(prompts, n=3)
    assert [r.response_ids for r in first] == [r.response_ids for r in again]
    assert [r.prompt_ids for r in first] == [p for p in prompts for _ in range(3)]
    hard = sampler.sample(prompts[-1:], n=8)  # temperature 1: the rollouts of a long problem's group differ
    assert len({tuple(r.response_ids) for r in hard}) > 1


def test_shared_prompt_prefill_same_rollouts_less_prompt_work(toy_model, prompts):
    """A group's n rows read their prompt once: same greedy responses as every row prefilling on its own, and the
    prompt columns run for the distinct prompts only (counted at the embedding layer)."""
    model, tokenizer = toy_model
    positions = []
    hook = model.get_input_embeddings().register_forward_hook(lambda m, args, out: positions.append(args[0].shape))
    runs = {}
    for share in (False, True):
        positions.clear()
        sampler = HFSampler(model, tokenizer, max_new_tokens=60, share_prompts=share)
        runs[share] = ([r.response_ids for r in sampler.sample(prompts, n=4, temperature=0)], list(positions))
    hook.remove()
    (plain, plain_calls), (shared, shared_calls) = runs[False], runs[True]
    assert shared == plain and all(len(set(map(tuple, shared[i : i + 4]))) == 1 for i in range(0, len(shared), 4))
    P = max(map(len, prompts))
    assert plain_calls[0] == (4 * len(prompts), P)  # every row reads the whole prompt
    assert shared_calls[0] == (len(prompts), P - 1) and shared_calls[1] == (4 * len(prompts), 1)
    assert len(shared_calls) == len(plain_calls) + 1  # one extra (small) call, the decode steps unchanged
