"""The toy mixed-domain world: the arithmetic toy (toy.py) beside a multiple-choice "science" domain and a "code"
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

Math is exactly toy.py's task. A science option list holds the right value and three distractors, each what one
misread step gives (a sign flipped, a step skipped, doubling read as adding 2); an option's letter follows from its
last digit (LETTER_OF_DIGIT), so a model names the letter of the value it computed. A code problem is graded by real
tests run in the sandbox (domains.rule_rewards.rule_reward -> domains.rule_rewards.code_reward ->
domains.sandbox.run_program): stdin n, stdout the result.
References are written in another style than the model's own (prose with results every second step; one nested
expression for code), so SFT on them is a real but imperfect baseline.

The arithmetic world's files (toy_base/, toy_data/*.jsonl) are untouched: the mixed base (toy_mixed_base/) continues
toy_base's pretraining on easy problems of all three formats, with a tokenizer that adds the backtick; the mixed data
lives in toy_data/mixed/. mixed_build.py rebuilds both (python -m toy.mixed_build pretrain | data).
"""

import json
import os
import random

import toy.world as toy
from domains.records import Problem
from domains.rule_rewards import code_reward, extract_code, rule_reward
from plumbing.common import REPO

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
    final = toy.intermediate_values(start, ops)[-1]
    candidates = []
    for i, (op, a) in enumerate(ops):
        flipped = {"+": ("-", a), "-": ("+", a), "*": ("+", 2)}[op]
        for variant in (ops[:i] + [flipped] + ops[i + 1 :], ops[:i] + ops[i + 1 :]):
            candidates.append(toy.intermediate_values(start, variant)[-1] if variant else start)
    found = []
    for value in candidates + [final + 1, final - 1, final + 10, final - 10]:
        if value != final and value >= 0 and value not in found and (len(found) < 3 or value in candidates):
            found.append(value)
    return found


def science_problem(rng: random.Random, num_ops: int, pid: str) -> Problem:
    """A quantity changed step by step; four lettered options, one per last-digit class (LETTER_OF_DIGIT): the right
    value and three distractors, each what one misread step gives where one falls in that class, else a slip of the
    final number (+-1..9)."""
    start, ops = toy.random_chain(rng, num_ops)
    values = toy.intermediate_values(start, ops)
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
    return toy.model_solution(start, ops).split("\\boxed")[0] + f"Answer: {problem.answer}"


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
    start, ops = toy.random_chain(rng, num_ops)
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
        n = toy.apply_op(n, op, a)
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
    """n seeded problems of one domain with min_ops..max_ops operations (math: toy.make_toy_problems' records)."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if domain == "math":
        problems = toy.make_toy_problems(n, min_ops, max_ops, seed, prefix)
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
    return toy.model_solution(*toy.parse_question(problem.question))


_CODE_CACHE: dict[tuple[str, str], float] = {}


def cached_reward(problem: Problem, response: str) -> float:
    """domains.rule_rewards.rule_reward, with code results cached by (program text, tests): programs here are
    deterministic, and a sandboxed run costs ~0.1 s while the base writes the same program many times
    (docs/toy-mixed.md)."""
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
