"""The toy mixed-domain world: the arithmetic toy (world.py) beside a multiple-choice "science" domain and a "code"
domain built from the same primitive steps (+a, -a, *2 applied left to right), so one tiny character-level model
can learn all three (docs/paper.md, "Mixed domains (§4.6, Tables 3-6)"; docs/toy-mixed.md).

    math     question  47 +8 *2 -5 +3
             model     47+8=55###55*2=110###110-5=105###105+3=108###\\boxed{108}
             reference Add 8, then double: that gives 110. Subtract 5, then add 3: that gives 108. The answer is 108.
    science  question  T=47C; heat 8, double, cool 5, heat 3. T? A)102 B)113 C)105 D)108
             model     47+8=55###55*2=110###110-5=105###105+3=108###Answer: D
             reference Heating by 8 and doubling brings it to 110C. Cooling by 5 and heating by 3 brings it to 108C.
                       That is option D.
    code     question  Code: read n, add 8, double, subtract 5, add 3, print n.
             model     ```python\\nn=int(input())\\nn=n+8\\nn=n*2\\nn=n-5\\nn=n+3\\nprint(n)\\n```
             reference One expression does it:\\n```python\\nn = int(input())\\nprint((((n + 8) * 2) - 5) + 3)\\n```

Math is exactly world.py's task. A science option list holds the right value and three distractors, each what one
misread step gives (a sign flipped, a step skipped, doubling read as adding 2); an option's letter follows from its
last digit (LETTER_OF_DIGIT), so a model names the letter of the value it computed. A code problem is graded by real
tests run in the sandbox (answer.rule_reward -> answer.code_reward -> sandbox.run_program): stdin n, stdout the result.
References are written in another style than the model's own (prose with results every second step; one nested
expression for code), so SFT on them is a real but imperfect baseline.

The arithmetic world's files (toy_base/, toy_data/*.jsonl) are untouched: the mixed base (toy_mixed_base/) continues
toy_base's pretraining on easy problems of all three formats, with a tokenizer that adds the backtick; the mixed data
lives in toy_data/mixed/. Rebuild both with `python toy_mixed.py pretrain` and `python toy_mixed.py data`.
"""

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import HfArgumentParser

from domains.problems import load_problems, save_problems
from domains.records import Problem
from domains.rule_rewards import code_reward, extract_code, rule_reward
from plumbing.common import REPO, save_checkpoint
from toy import world

DOMAINS = ("math", "science", "code")
MIXED_BASE = os.path.join(REPO, "toy_mixed_base")
MIXED_DATA = os.path.join(REPO, "toy_data", "mixed")
LETTERS = "ABCD"
# A science option's letter is fixed by its last digit (0-2 A, 3-4 B, 5-7 C, 8-9 D), and the options are listed in
# letter order: a model that has computed the value names its letter without searching the list. (The search itself,
# "which option equals my value", was not learned by this 1M-parameter model in 900 steps: docs/toy-mixed.md.)
LETTER_OF_DIGIT = "AAABBCCCDD"
# A quantity of the science domain: its symbol, unit, the words that raise and lower it, and the reference's gerunds.
QUANTITIES = (
    ("T", "C", "heat", "cool", "heating", "cooling"),
    ("v", "km/h", "speed up", "slow", "speeding up", "slowing"),
    ("m", "g", "add", "remove", "adding", "removing"),
)
CODE_WORDS = {"+": "add {a}", "-": "subtract {a}", "*": "double"}


# ----------------------------------------------------------------------------------------------- science
def misread_values(start: int, ops: list[tuple[str, int]]) -> list[int]:
    """Final values of the chain with ONE step misread (sign flipped, step skipped, doubling read as +2): a science
    question's distractors, in a fixed order, without repeats; chains too short to give three also get slips of the
    final number (+-1, then +-10).

    Example:
        >>> misread_values(10, [("+", 3), ("*", 2)]), misread_values(10, [("+", 3)])
        ([14, 20, 15, 13], [7, 10, 14])
    """
    final = world.intermediate_values(start, ops)[-1]
    candidates = []
    for i, (op, a) in enumerate(ops):
        flipped = {"+": ("-", a), "-": ("+", a), "*": ("+", 2)}[op]
        for variant in (ops[:i] + [flipped] + ops[i + 1 :], ops[:i] + ops[i + 1 :]):
            candidates.append(world.intermediate_values(start, variant)[-1] if variant else start)
    found = []
    for value in candidates + [final + 1, final - 1, final + 10, final - 10]:
        if value != final and value >= 0 and value not in found and (len(found) < 3 or value in candidates):
            found.append(value)
    return found


def science_problem(rng: random.Random, num_ops: int, pid: str) -> Problem:
    """A quantity changed step by step; four lettered options, one per last-digit class (LETTER_OF_DIGIT): the right
    value and three distractors, each what one misread step gives where one falls in that class, else a slip of the
    final number (+-1..9)."""
    start, ops = world.random_chain(rng, num_ops)
    values = world.intermediate_values(start, ops)
    sym, unit, up, down, up_ing, down_ing = rng.choice(QUANTITIES)
    candidates = misread_values(start, ops)
    rng.shuffle(candidates)
    slips = [values[-1] + d for d in rng.sample([1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -8, 9, -9], 18)]
    options = {LETTER_OF_DIGIT[values[-1] % 10]: values[-1]}
    for value in candidates + slips:
        if value >= 0 and LETTER_OF_DIGIT[value % 10] not in options:
            options[LETTER_OF_DIGIT[value % 10]] = value
    letter = LETTER_OF_DIGIT[values[-1] % 10]
    words = [f"{up} {a}" if op == "+" else f"{down} {a}" if op == "-" else "double" for op, a in ops]
    lettered = " ".join(f"{x}){options[x]}" for x in LETTERS)
    question = f"{sym}={start}{unit}; {', '.join(words)}. {sym}? {lettered}"
    gerunds = [f"{up_ing} by {a}" if op == "+" else f"{down_ing} by {a}" if op == "-" else "doubling" for op, a in ops]
    sentences = []
    for i in range(0, len(ops), 2):
        pair = " and ".join(gerunds[i : i + 2])
        sentences.append(f"{pair[0].upper()}{pair[1:]} brings it to {values[min(i + 1, len(ops) - 1)]}{unit}.")
    reference = " ".join(sentences) + f" That is option {letter}."
    choices = tuple(str(options[x]) for x in LETTERS)
    return Problem(pid, question, reference, letter, domain="science", choices=choices)


def science_solution(problem: Problem) -> str:
    """The model's own style: the math steps, then "Answer: <letter>"."""
    start, ops = parse_science(problem.question)
    return world.model_solution(start, ops).split("\\boxed")[0] + f"Answer: {problem.answer}"


def parse_science(question: str) -> tuple[int, list[tuple[str, int]]]:
    """The start value and operations of a science question (inverse of science_problem's question)."""
    head, body = question.split("; ", 1)
    sym, unit, up, down, *_ = next(q for q in QUANTITIES if head.startswith(q[0] + "=") and head.endswith(q[1]))
    ops = []
    for word in body.split(". ")[0].split(", "):
        ops.append(("*", 2) if word == "double" else ("+" if word.startswith(up) else "-", int(word.split()[-1])))
    return int(head[len(sym) + 1 : -len(unit)]), ops


# ----------------------------------------------------------------------------------------------- code
def code_program(ops: list[tuple[str, int]]) -> str:
    """The model's own style: one assignment per operation."""
    lines = ["n=int(input())"] + [f"n=n{op}{a}" for op, a in ops] + ["print(n)"]
    return "```python\n" + "\n".join(lines) + "\n```"


def code_problem(rng: random.Random, num_ops: int, pid: str, num_tests: int = 2) -> Problem:
    """Read n, apply the operations, print: tests are num_tests seeded inputs (10..99) and their results."""
    start, ops = world.random_chain(rng, num_ops)
    inputs = [start] + [rng.randint(10, 99) for _ in range(num_tests - 1)]
    tests = {"inputs": [f"{n}\n" for n in inputs], "outputs": [f"{run_chain(n, ops)}\n" for n in inputs]}
    question = "Code: read n, " + ", ".join(CODE_WORDS[op].format(a=a) for op, a in ops) + ", print n."
    expression = "n"
    for op, a in ops:
        expression = f"({expression} {op} {a})"
    program = f"n = int(input())\nprint({expression[1:-1]})"
    reference = f"One expression does it:\n```python\n{program}\n```"
    return Problem(pid, question, reference, "tests", domain="code", tests=json.dumps({**tests, "fn_name": None}))


def run_chain(n: int, ops: list[tuple[str, int]]) -> int:
    for op, a in ops:
        n = world.apply_op(n, op, a)
    return n


def parse_code(question: str) -> list[tuple[str, int]]:
    """The operations a code question asks for (inverse of code_problem's question).

    Example:
        >>> parse_code("Code: read n, add 8, double, subtract 5, print n.")
        [('+', 8), ('*', 2), ('-', 5)]
    """
    ops = []
    for word in question.split(", ")[1:-1]:
        ops.append(("*", 2) if word == "double" else ("+" if word.startswith("add") else "-", int(word.split()[-1])))
    return ops


# ----------------------------------------------------------------------------------------------- all domains
def make_problems(domain: str, n: int, min_ops: int, max_ops: int, seed: int, prefix: str) -> list[Problem]:
    """n seeded problems of one domain with min_ops..max_ops operations (math: world.make_toy_problems' records)."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if domain == "math":
        problems = world.make_toy_problems(n, min_ops, max_ops, seed, prefix)
        return [Problem(f"{p.id}-math", p.question, p.reference, p.answer) for p in problems]
    rng = random.Random(seed)
    make = science_problem if domain == "science" else code_problem
    return [make(rng, rng.randint(min_ops, max_ops), f"{prefix}-{seed}-{i}-{domain}") for i in range(n)]


def model_response(problem: Problem) -> str:
    """The response in the model's own style (what pretraining teaches), for any domain."""
    if problem.domain == "science":
        return science_solution(problem)
    if problem.domain == "code":
        return code_program(parse_code(problem.question))
    return world.model_solution(*world.parse_question(problem.question))


_CODE_CACHE: dict[tuple[str, str], float] = {}


def cached_reward(problem: Problem, response: str) -> float:
    """answer.rule_reward, with code results cached by (program text, tests): programs here are deterministic, and
    a sandboxed run costs ~0.1 s while the base writes the same program many times (docs/toy-mixed.md)."""
    if problem.domain != "code":
        return rule_reward(problem, response)
    program = extract_code(response)
    if program is None:
        return 0.0
    key = (program, problem.tests)
    if key not in _CODE_CACHE:
        _CODE_CACHE[key] = code_reward(response, problem.tests)
    return _CODE_CACHE[key]


def grade(problems: list[Problem], responses: list[str], workers: int = 2) -> list[float]:
    """cached_reward for each (problem, response) pair; the code programs not yet cached run first, `workers`
    sandboxes at a time (threads, each driving sandbox processes)."""
    from concurrent.futures import ThreadPoolExecutor

    todo = {}
    for p, r in zip(problems, responses):
        program = extract_code(r) if p.domain == "code" else None
        if program is not None and (program, p.tests) not in _CODE_CACHE:
            todo[(program, p.tests)] = r
    with ThreadPoolExecutor(workers) as pool:
        for key, reward in zip(todo, pool.map(lambda item: code_reward(item[1], item[0][1]), todo.items())):
            _CODE_CACHE[key] = reward
    return [cached_reward(p, r) for p, r in zip(problems, responses)]


def build_tokenizer():
    """toy.build_tokenizer's vocabulary (same ids) plus the backtick and "```python" / "```" as whole tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    extra = ["```python", "```"]
    tokens = world.SPECIAL_TOKENS + world.MULTI_CHAR_TOKENS + world.CHARS + ["`"] + extra
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token="?"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="?", chat_template=world.CHAT_TEMPLATE
    )
    tokenizer.add_special_tokens({"additional_special_tokens": world.SPECIAL_TOKENS[2:]})
    tokenizer.add_tokens(world.MULTI_CHAR_TOKENS + extra)
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
    """Continue pretraining `start` on EASY problems of all three domains in the model's own style (world.sft_batch)."""
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
            problems += make_problems(domain, 1, num_ops, num_ops, rng.randrange(10**9), "pre")
        return world.sft_batch(tokenizer, [p.question for p in problems], [model_response(p) for p in problems])

    seconds = world.train_on_batches(model, next_batch, args.steps, args.lr, log_every=50)
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
    for p in make_problems(domain, 4 * n, num_ops, num_ops, seed, prefix):
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
        sets["candidates"].append(fresh(domain, num, hard[domain], args.seed, "hard", taken))
        sets["dev"].append(fresh(domain, args.num_dev, hard[domain], args.seed + 1, "dev", taken))
        sets["test"].append(fresh(domain, args.num_test, hard[domain], args.seed + 3, "test", taken))
        sets["easy"].append(make_problems(domain, args.num_easy, 1, 4, args.seed + 2, "easy"))  # short: may repeat
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
    samples"; with 0, world.make_data's rule), write stage1_train.jsonl and mining.json."""
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
            train = [p for p in train if solved[p.id] <= allowed[domain]]  # data.mine_hard where allowed is 0
            drawn += n
            survivors[drawn] = len(train)
            print(f"mining {domain}: {len(train)} unsolved after {drawn} samples each", flush=True)
        kept.append(train)
        report["domains"][domain] = {"survivors_per_round": survivors, "seconds": round(time.time() - start, 1)}
    kept = interleave(kept)
    report["kept_ids"] = [p.id for p in kept]
    report["code_programs_run"] = len(_CODE_CACHE)
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
        sys.exit("usage: python toy_mixed.py pretrain [--steps ...] | python toy_mixed.py data [--mine_k ...]")
