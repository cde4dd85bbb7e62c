"""Building the mixed toy world (docs/toy-mixed.md): its tokenizer (the arithmetic world's plus the backtick), the
mixed base's pretraining (continued from toy_base/ on easy problems of all three formats) and its problem sets
(mined Stage-I set, dev, test, easy) in toy_data/mixed/. The task itself is in mixed_world.py.

    python -m toy.mixed_build pretrain [--steps ...]     # -> toy_mixed_base/
    python -m toy.mixed_build data [--mine_k ...]        # -> toy_data/mixed/
"""

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import HfArgumentParser

import toy.world as toy
from domains.problems import load_problems, save_problems
from domains.records import Problem
from plumbing.common import REPO, save_checkpoint
from toy import mixed_world
from toy.mixed_world import DOMAINS, grade, make_problems, model_response


def build_tokenizer():
    """toy.world.build_tokenizer's vocabulary (same ids) plus the backtick and "```python" / "```" as whole tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    extra = ["```python", "```"]
    tokens = toy.SPECIAL_TOKENS + toy.MULTI_CHAR_TOKENS + toy.CHARS + ["`"] + extra
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token="?"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="?", chat_template=toy.CHAT_TEMPLATE
    )
    tokenizer.add_special_tokens({"additional_special_tokens": toy.SPECIAL_TOKENS[2:]})
    tokenizer.add_tokens(toy.MULTI_CHAR_TOKENS + extra)
    return tokenizer


# ------------------------------------------------------------------------------------------- pretraining
@dataclass
class PretrainArgs:
    output_dir: str = field(default="toy_mixed_base", metadata={"help": "where the mixed base is saved"})
    start: str = field(default="toy_base", metadata={"help": "the model pretraining continues from (the math base)"})
    steps: int = field(default=600, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=48, metadata={"help": "sequences per step"})
    domain_weights: str = field(
        default="0.3,0.4,0.3", metadata={"help": "share of math,science,code (science: the option lookup is slowest)"}
    )
    lr: float = field(default=1e-3, metadata={"help": "peak AdamW learning rate (warm-up, cosine decay)"})
    long_fraction: float = field(default=0.05, metadata={"help": "share of 5-7 operation chains (the rest 1-4)"})
    seed: int = field(default=0, metadata={"help": "seeds the data and training"})


def pretrain_mixed(args: PretrainArgs) -> str:
    """Continue pretraining `start` on EASY problems of all three domains in the model's own style (toy.sft_batch)."""
    from transformers import AutoModelForCausalLM

    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    weights = [float(w) for w in args.domain_weights.split(",")]
    tokenizer = build_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(args.start)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)  # new rows: the mean embedding

    def next_batch():
        problems = []
        for i in range(args.batch_size):
            num_ops = rng.randint(5, 7) if rng.random() < args.long_fraction else rng.randint(1, 4)
            domain = rng.choices(DOMAINS, weights)[0]
            problems += make_problems(domain, 1, num_ops, num_ops, seed=rng.randrange(10**9), prefix="pre")
        return toy.sft_batch(tokenizer, [p.question for p in problems], [model_response(p) for p in problems])

    seconds = toy.train_on_batches(model, next_batch, args.steps, args.lr, log_every=50)
    info = {"pretrain_args": asdict(args), "seconds": round(seconds, 1)}
    save_checkpoint(model, tokenizer, args.output_dir, extra_files={"toy_info.json": info})
    return args.output_dir


# ------------------------------------------------------------------------------------------- data and splits
@dataclass
class DataArgs:
    base: str = field(default="toy_mixed_base", metadata={"help": "the mixed base used for mining"})
    output_dir: str = field(default="toy_data/mixed", metadata={"help": "where the mixed problem files go"})
    num_candidates: str = field(
        default="64,96,48", metadata={"help": "HARD candidates before mining: math,science,code (docs/toy-mixed.md)"}
    )
    num_dev: int = field(default=48, metadata={"help": "fresh HARD development problems per domain (not mined)"})
    num_test: int = field(default=48, metadata={"help": "fresh HARD test problems per domain (not mined)"})
    num_easy: int = field(default=32, metadata={"help": "EASY problems (1-4 operations) per domain"})
    hard_ops: str = field(
        default="9,8,8", metadata={"help": "operations of a HARD problem: math,science,code (docs/toy-mixed.md)"}
    )
    mine_k: str = field(
        default="512,64,128",
        metadata={"help": "math,science,code: keep what the base solves 0 times in k samples (docs/toy-mixed.md)"},
    )
    max_correct: str = field(
        default="0,16,0",
        metadata={"help": "math,science,code: keep what the base solves at most this often in k samples (science: "
                  "a 1-in-4 guess, docs/toy-mixed.md)"},
    )  # fmt: skip
    mine_round: int = field(default=64, metadata={"help": "samples per surviving problem per mining round"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature for mining"})
    seed: int = field(default=11, metadata={"help": "candidates use seed, dev seed + 1, easy seed + 2, test seed + 3"})


def per_domain(text: str) -> dict[str, int]:
    """'8,8,10' -> {"math": 8, "science": 8, "code": 10}; one value for each domain, in DOMAINS order."""
    values = [int(v) for v in text.split(",")]
    if len(values) != len(DOMAINS):
        raise ValueError(f"expected {len(DOMAINS)} comma-separated values ({','.join(DOMAINS)}), got {text!r}")
    return dict(zip(DOMAINS, values))


def fresh(domain: str, n: int, num_ops: int, seed: int, prefix: str, taken: set[str]) -> list[Problem]:
    """n problems of one domain from `seed` whose questions are in no file read so far (`taken`, updated)."""
    out = []
    for p in make_problems(domain, 4 * n, num_ops, num_ops, seed=seed, prefix=prefix):
        if p.question not in taken and len(out) < n:
            taken.add(p.question)
            out.append(p)
    return out


def splits(args: DataArgs) -> dict[str, list[Problem]]:
    """Candidates, dev, easy and test problems of every domain (no model needed); a question appears in one of them
    at most, and in none of the arithmetic world's files (toy_data/*.jsonl)."""
    names = ("stage1_train", "heldout", "test", "easy")
    taken = {p.question for name in names for p in load_problems(os.path.join(REPO, "toy_data", f"{name}.jsonl"))}
    hard, sets = per_domain(args.hard_ops), {"candidates": [], "dev": [], "easy": [], "test": []}
    for domain in DOMAINS:
        num = per_domain(args.num_candidates)[domain]
        sets["candidates"].append(fresh(domain, num, hard[domain], args.seed, prefix="hard", taken=taken))
        sets["dev"].append(fresh(domain, args.num_dev, hard[domain], args.seed + 1, prefix="dev", taken=taken))
        sets["test"].append(fresh(domain, args.num_test, hard[domain], args.seed + 3, prefix="test", taken=taken))
        sets["easy"].append(
            make_problems(domain, args.num_easy, 1, 4, seed=args.seed + 2, prefix="easy")
        )  # short: may repeat
    return {name: interleave(lists) for name, lists in sets.items()}


def interleave(lists: list[list]) -> list:
    """Round robin over the lists, so that the first N problems of a file hold every domain in equal shares.

    Example:
        >>> interleave([[1, 2, 3], ["a", "b"], ["x"]])
        [1, 'a', 'x', 2, 'b', 3]
    """
    out = []
    for i in range(max(map(len, lists))):
        out += [items[i] for items in lists if i < len(items)]
    return out


def sample_correct(model, tokenizer, problems: list[Problem], n: int, temperature: float = 1.0) -> list[int]:
    """Correct samples out of n per problem, graded by cached_reward (the sandbox for code)."""
    from domains.problems import encode_prompts, policy_messages
    from rollout import HFSampler

    sampler = HFSampler(model, tokenizer, max_new_tokens=160, temperature=temperature, batch_size=256)
    rollouts = sampler.sample(encode_prompts(tokenizer, [policy_messages(p) for p in problems]), n=n)
    correct = grade([problems[i // n] for i in range(len(rollouts))], [r.text for r in rollouts])
    return [int(sum(correct[i * n : (i + 1) * n])) for i in range(len(problems))]


def make_data(args: DataArgs) -> dict:
    """Write dev / test / easy, mine the candidates per domain (rounds of mine_round fresh samples; a problem leaves
    once it has more than max_correct correct ones, so what stays is exactly "at most max_correct correct in mine_k
    samples"; with 0, toy.make_data's rule), write stage1_train.jsonl and mining.json."""
    from plumbing.common import load_model, seed_everything

    seed_everything(args.seed)
    model, tokenizer = load_model(args.base)
    sets = splits(args)
    for name in ("dev", "test", "easy"):
        save_problems(sets[name], os.path.join(args.output_dir, f"{name}.jsonl"))
    kept, report, mine_k = [], {"mine_k": per_domain(args.mine_k), "domains": {}}, per_domain(args.mine_k)
    allowed = per_domain(args.max_correct)
    for domain in DOMAINS:  # kept: one list per domain, interleaved when written
        train = [p for p in sets["candidates"] if p.domain == domain]
        drawn, survivors, start, solved = 0, {}, time.time(), {p.id: 0 for p in train}
        while drawn < mine_k[domain] and train:
            n = min(args.mine_round, mine_k[domain] - drawn)
            for p, count in zip(train, sample_correct(model, tokenizer, train, n, args.temperature)):
                solved[p.id] += count
            # domains.problems.mine_hard where allowed is 0
            train = [p for p in train if solved[p.id] <= allowed[domain]]
            drawn += n
            survivors[drawn] = len(train)
            print(f"mining {domain}: {len(train)} unsolved after {drawn} samples each", flush=True)
        kept.append(train)
        report["domains"][domain] = {"survivors_per_round": survivors, "seconds": round(time.time() - start, 1)}
    kept = interleave(kept)
    report["kept_ids"] = [p.id for p in kept]
    report["code_programs_run"] = len(mixed_world._CODE_CACHE)
    save_problems(kept, os.path.join(args.output_dir, "stage1_train.jsonl"))
    with open(os.path.join(args.output_dir, "mining.json"), "w") as f:
        json.dump({"data_args": asdict(args), **report}, f, indent=1)
    print(json.dumps({d: r["survivors_per_round"] for d, r in report["domains"].items()}))
    return report


def rebuild_train(args: DataArgs, kept_ids: list[str]) -> list[Problem]:
    """The Stage-I set from the candidates and the ids mining kept (mining.json), without the model."""
    by_id = {p.id: p for p in splits(args)["candidates"]}
    return [by_id[i] for i in kept_ids]


if __name__ == "__main__":
    import sys

    from plumbing.common import set_threads

    command = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    set_threads(1)
    if command == "pretrain":
        print(f"saved {pretrain_mixed(HfArgumentParser(PretrainArgs).parse_args_into_dataclasses()[0])}")
    elif command == "data":
        make_data(HfArgumentParser(DataArgs).parse_args_into_dataclasses()[0])
    else:
        sys.exit(
            "usage: python -m toy.mixed_build pretrain [--steps ...] | python -m toy.mixed_build data [--mine_k ...]"
        )
