"""The rule-based final-answer reward: is the last \\boxed{} answer equivalent to the gold answer? (math-verify)

Used by the sparse-GRPO baseline, Stage II, evaluation (pass@k) and hard-problem mining (docs/paper.md, "Stage II",
"Evaluation"). The LLM judges live in judge.py, which re-exports answer_reward for convenience.
"""

import functools
import logging
import re

MAX_ANSWER_CHARS = 1000  # longer boxed answers score 0: real final answers are short, long ones cost parse time

# math-verify warns once that its signal-based timeout is off; we turn it off on purpose (see answer_reward).
logging.getLogger("math_verify").setLevel(logging.ERROR)


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} in `text`, matching nested braces; None if absent or never closed.

    Escaped braces (\\{ and \\}) do not count, so set answers like \\boxed{\\{1, 2\\}} come out whole. A last box that
    is never closed (a truncated response) gives None: its final answer was not finished.

    Example:
        >>> last_boxed("first \\\\boxed{1}, then \\\\boxed{\\\\frac{1}{2}}.")
        '\\\\frac{1}{2}'
    """
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = start + len("\\boxed")
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth, content_start = 0, i + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # skip the escaped character (\{, \}, or the second backslash of \\)
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[content_start:i]
        i += 1
    return None


_BINOMIAL = re.compile(r"binom|choose")
_LONG_NUMBER = re.compile(r"\d{6,}")


def _too_costly_text(answer: str) -> bool:
    """Answers whose PARSING may not finish: latex2sympy evaluates binomials eagerly (\\binom{10^6}{5*10^5} hangs)."""
    return bool(_BINOMIAL.search(answer)) and (bool(_LONG_NUMBER.search(answer)) or "^" in answer or "!" in answer)


def _too_costly_expr(expr) -> bool:
    """Parsed answers whose COMPARISON may not finish: power towers, huge powers, huge factorials.

    Measured with math-verify 0.9.0: 9^{9^9}, 2^{2^{30}}, (x+1)^{2000}, (1+\\sqrt{2})^{100000} and 10^{100}! never
    finish; 2^{2024}, 2^{10^7}, 10000! and e^{i\\pi} take under a second. The rules below keep the second group.
    """
    import sympy

    for node in sympy.preorder_traversal(expr):
        if isinstance(node, (sympy.Pow, sympy.exp)):
            base, exponent = (node.base, node.exp) if isinstance(node, sympy.Pow) else (sympy.E, node.args[0])
            if exponent.free_symbols:
                continue  # symbolic exponents (x^n) stay unevaluated
            if exponent.is_Number:
                if base.is_Rational:  # exact number: bound its digit count, |e| * log10(max(|p|, |q|))
                    size = max(abs(base.p), abs(base.q), 2)
                    if abs(exponent) * len(str(size)) > 100_000:
                        return True
                elif isinstance(node, sympy.Pow) and abs(exponent) > 100:  # (x+1)^N expands into N+1 terms
                    return True
            elif exponent.has(sympy.factorial) or any(
                p.exp.is_Integer and abs(p.exp) > 1 for p in exponent.atoms(sympy.Pow)
            ):
                return True  # a tower like 9^{9^9}; roots in exponents (2^{\sqrt 2}) are fine
        elif isinstance(node, sympy.factorial):
            argument = node.args[0]
            if not argument.free_symbols and not (argument.is_Integer and argument <= 10_000):
                return True
    return False


_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    """Parse a gold answer once: a step grades G rollouts of the same problem against it."""
    from math_verify import parse

    return parse(f"\\boxed{{{gold}}}", parsing_timeout=None)


def answer_reward(response: str, answer: str) -> float:
    """1.0 if the last \\boxed{} answer in `response` equals the gold `answer` (math-verify), else 0.0
    (docs/paper.md, "Stage II").

    Time is bounded WITHOUT signals, so this runs in worker threads: math-verify's own timeout uses signal.alarm,
    which only works in the main thread, so we call it with parsing_timeout=None / timeout_seconds=None and bound the
    work ourselves: boxed answers over MAX_ANSWER_CHARS score 0, and so do answers that sympy would take unbounded
    time on (see _too_costly_text, _too_costly_expr). These guards cover the blow-ups we measured, not every
    conceivable one. Any exception scores 0.

    The gold answer may be plain ("3/4"), LaTeX ("\\frac{3}{4}"), in $...$, or already boxed; it is boxed before
    parsing, which math-verify reads most reliably (a bare "2\\sqrt{3}" otherwise parses as 2).

    Example:
        >>> answer_reward("... so the answer is \\\\boxed{\\\\frac{1}{2}}", "0.5")
        1.0
    """
    from math_verify import parse, verify  # lazy: math-verify pulls in sympy, which costs a second to import

    try:
        predicted = last_boxed(response)
        gold = _gold_latex(answer)
        if predicted is None or gold is None or len(predicted) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return 0.0
        if _PLAIN_NUMBER.fullmatch(predicted.strip()) and _PLAIN_NUMBER.fullmatch(gold):
            return 1.0 if float(predicted) == float(gold) else 0.0  # fast path: ~1000x cheaper than parsing
        if _too_costly_text(predicted) or _too_costly_text(gold):
            return 0.0
        gold_parsed = _parse_gold(gold)
        predicted_parsed = parse(f"\\boxed{{{predicted}}}", parsing_timeout=None)
        if not gold_parsed or not predicted_parsed:
            return 0.0
        sympy_objects = [x for x in gold_parsed + predicted_parsed if not isinstance(x, str)]
        if any(_too_costly_expr(x) for x in sympy_objects):
            return 0.0
        return 1.0 if verify(gold_parsed, predicted_parsed, timeout_seconds=None) else 0.0
    except Exception:  # a reward must never crash a training step; a malformed answer is simply not correct
        return 0.0


def _gold_latex(answer: str) -> str | None:
    """The gold answer as bare LaTeX: strip whitespace, a surrounding $...$, or an enclosing \\boxed{}."""
    gold = answer.strip()
    if "\\boxed" in gold:
        return last_boxed(gold)
    while len(gold) >= 2 and gold.startswith("$") and gold.endswith("$"):
        gold = gold[1:-1].strip()
    return gold or None


# =====================================================================================================================
# Code and multiple choice. Code follows LiveCodeBench's conventions; model-written code runs ONLY through
# sandbox.run_program, one sandboxed process per test (sandbox.py says what that process cannot do).

CODE_HEADER = """import bisect, collections, functools, heapq, itertools, math, random, re, string, sys
from bisect import *
from collections import *
from functools import *
from heapq import *
from itertools import *
from math import *
from typing import *
from builtins import pow  # math's two-argument pow must not hide the built-in
sys.setrecursionlimit(50000)
"""  # the imports graders like LiveCodeBench's put before a solution, which solutions come to rely on (List[int], gcd)

_CALL = """
import contextlib as _exprl_contextlib, json as _exprl_json, sys as _exprl_sys
_exprl_args = [_exprl_json.loads(line) for line in _exprl_sys.stdin.read().split("\\n") if line.strip()]
_exprl_fn = getattr(Solution(), {name!r}, None) if "Solution" in globals() else None
with _exprl_contextlib.redirect_stdout(_exprl_sys.stderr):  # the solution's own prints must not mix with the result
    _exprl_result = (_exprl_fn or globals()[{name!r}])(*_exprl_args)
print(_exprl_json.dumps(_exprl_result, default=lambda value: value.tolist()))  # a tuple becomes a list; numpy too
"""  # appended to a functional problem's solution: call Solution().<fn_name>(*args) or the top-level function

_CODE_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
MAX_TESTS_BYTES = 2**30  # a compressed test field may not expand beyond this (a zlib bomb)


def extract_code(response: str) -> str | None:
    """The program: the content of the last ```python fenced block of `response`; None if there is none.

    Example:
        >>> extract_code("Idea...\\n```python\\nprint(1)\\n```\\nand the final one:\\n```python\\nprint(2)\\n```")
        'print(2)\\n'
    """
    blocks = _CODE_BLOCK.findall(response)
    return blocks[-1] if blocks else None


def decode_tests(field, fn_name: str | None = None) -> dict:
    """A problem's tests as {"inputs": [...], "outputs": [...], "fn_name": name or None}.

    `field` may be that dict, its JSON text, a LiveCodeBench list of {"input", "output"} records (or its JSON), or
    base64(zlib(pickle(JSON))), how LiveCodeBench stores private tests. Unpickling can run code, so the pickle is read
    by an Unpickler that refuses every class and function: it yields plain data or fails.

    Example:
        >>> decode_tests('[{"input": "1\\\\n", "output": "2\\\\n", "testtype": "stdin"}]')
        {'inputs': ['1\\n'], 'outputs': ['2\\n'], 'fn_name': None}
    """
    import json

    if isinstance(field, bytes):
        field = field.decode()
    if isinstance(field, str):
        field = json.loads(field) if field.lstrip()[:1] in ("{", "[") else json.loads(_unpickle_plain(field))
    if isinstance(field, list):
        field = {"inputs": [t["input"] for t in field], "outputs": [t["output"] for t in field]}
    inputs, outputs = list(field["inputs"]), list(field["outputs"])
    if len(inputs) != len(outputs):
        raise ValueError(f"tests: {len(inputs)} inputs but {len(outputs)} outputs")
    return {"inputs": inputs, "outputs": outputs, "fn_name": field.get("fn_name") or fn_name}


def _unpickle_plain(text: str) -> str:
    """base64 -> zlib (at most MAX_TESTS_BYTES) -> pickle of a str or bytes, no classes allowed -> that text."""
    import base64
    import io
    import pickle
    import zlib

    class PlainUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f"tests must be plain data, not {module}.{name}")

    inflater = zlib.decompressobj()
    data = inflater.decompress(base64.b64decode(text), MAX_TESTS_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"tests: more than {MAX_TESTS_BYTES} bytes once decompressed")
    value = PlainUnpickler(io.BytesIO(data)).load()
    if not isinstance(value, (str, bytes)):
        raise ValueError(f"tests: the pickle holds a {type(value).__name__}, not JSON text")
    return value.decode() if isinstance(value, bytes) else value


def same_output(actual: str, expected: str) -> bool:
    """LiveCodeBench's stdout check: the same lines once stripped; lines that still differ must hold equal numbers.

    Example:
        >>> same_output("3.0 4\\n  yes  \\n", "3 4.00\\nyes"), same_output("3 4", "3\\n4")
        (True, False)
    """
    from decimal import Decimal, InvalidOperation

    got, want = ([line.strip() for line in text.strip().split("\n")] for text in (actual, expected))
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        if a != b:
            try:
                if [Decimal(x) for x in a.split()] != [Decimal(x) for x in b.split()]:
                    return False
            except InvalidOperation:
                return False
    return True


def run_tests(program: str, tests, timeout: float = 6.0) -> list[dict]:
    """Run `program` on each test in its own sandbox, stopping at the first failure.

    One outcome per test run: {"passed", "status", "seconds"}, status "passed", "wrong_answer" or the sandbox's reason
    ("error", "timeout", "memory", "output_limit"). Without fn_name a test is stdin -> stdout (compared by
    same_output); with it, each input line is a JSON argument and the output one JSON value, compared with ==.
    """
    import json

    from domains.sandbox import run_program

    tests = decode_tests(tests)
    lines = program.splitlines()
    future = [line for line in lines if line.startswith("from __future__")]  # these must come first
    source = "\n".join(future + [CODE_HEADER] + [line for line in lines if line not in future]) + "\n"
    if tests["fn_name"]:
        source += _CALL.format(name=tests["fn_name"])
    outcomes = []
    for test_input, expected in zip(tests["inputs"], tests["outputs"]):
        if not isinstance(test_input, str):  # the arguments already parsed, as some datasets store them
            test_input = "\n".join(json.dumps(argument) for argument in test_input)
        run = run_program(source, stdin=test_input, timeout=timeout)
        passed = run.status == "ok"
        if passed and tests["fn_name"]:
            try:
                result = json.loads(run.stdout.strip().splitlines()[-1])
                passed = result == (json.loads(expected) if isinstance(expected, str) else expected)
            except (ValueError, IndexError):
                passed = False
        elif passed:
            passed = same_output(run.stdout, expected)
        status = "passed" if passed else "wrong_answer" if run.status == "ok" else run.status
        outcomes.append({"passed": passed, "status": status, "seconds": round(run.seconds, 3)})
        if not passed:
            break
    return outcomes


def code_reward(response: str, tests, timeout: float = 6.0) -> float:
    """1.0 iff the last ```python block of `response` passes every test (each within `timeout` s), else 0.0.

    Example:
        >>> response = "Add them:\\n```python\\nprint(sum(map(int, input().split())))\\n```"
        >>> code_reward(response, {"inputs": ["1 2\\n", "5 -5\\n"], "outputs": ["3", "0"]})
        1.0
    """
    program = extract_code(response)
    tests = decode_tests(tests)
    if program is None or not tests["inputs"]:
        return 0.0
    outcomes = run_tests(program, tests, timeout)
    return 1.0 if len(outcomes) == len(tests["inputs"]) and all(o["passed"] for o in outcomes) else 0.0


def code_rewards(responses: list[str], tests: list, timeout: float = 6.0, workers: int | None = None) -> list[float]:
    """code_reward for many responses at once: threads, one per core by default, each driving sandbox processes."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda pair: code_reward(pair[0], pair[1], timeout), zip(responses, tests)))


_ANSWER_LETTER = re.compile(  # "answer:", then **, $, \boxed{, \text{, ( around the letter, then no more word
    r"\banswer\s*:[\s*$]*(?:\\boxed\{\s*)?(?:\\text(?:bf)?\{\s*)?[(\[]?\s*([A-Z])\s*[)\]]?(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_LONE_LETTER = re.compile(r"[\s*$(\[]*(?:\\boxed\{)?[\s(\[]*([A-Z])[\s)\]]*\}?[\s*$.)\]]*", re.IGNORECASE)


def extract_choice(text: str) -> str | None:
    """The multiple-choice letter: the one after the last "Answer:" (or "Final Answer:"), case-insensitive, maybe in
    **bold**, (parentheses) or \\boxed{}; else a lone letter on the last line; else None. Returned upper case.

    Example:
        >>> extract_choice("Answer: (b) at first... Final Answer: **\\\\boxed{C}**"), extract_choice("So it is\\nD.")
        ('C', 'D')
    """
    letters = _ANSWER_LETTER.findall(text)
    if letters:
        return letters[-1].upper()
    lines = text.strip().splitlines()
    lone = _LONE_LETTER.fullmatch(lines[-1]) if lines else None
    return lone.group(1).upper() if lone else None


def choice_reward(response: str, letter: str) -> float:
    """1.0 if the letter extracted from `response` is the gold `letter` (any case, "(B)" is fine), else 0.0.

    Example:
        >>> choice_reward("... so the answer: b", "B")
        1.0
    """
    gold = extract_choice(letter) or letter.strip().upper()
    return 1.0 if extract_choice(response) == gold else 0.0


def rule_rewards(problems: list, responses: list[str], workers: int | None = None) -> list[float]:
    """rule_reward of each (problem, response) pair, in order; the code rows run in threads (code_rewards), since each
    waits on sandbox processes, the others here.

    Example:
        >>> from data import Problem
        >>> rule_rewards([Problem("p", "1+1?", "", "2")] * 2, ["\\\\boxed{2}", "\\\\boxed{3}"])
        [1.0, 0.0]
    """
    rewards = [None if p.domain == "code" else rule_reward(p, y) for p, y in zip(problems, responses)]
    code = [i for i, reward in enumerate(rewards) if reward is None]
    if code:
        code_scores = code_rewards([responses[i] for i in code], [problems[i].tests for i in code], workers=workers)
        for i, reward in zip(code, code_scores):
            rewards[i] = reward
    return rewards


def rule_reward(problem, response: str) -> float:
    """The rule-based reward of one response, by the problem's kind (docs/paper.md, "Data"): the tests for code, the
    letter for multiple choice, else the final answer (math-verify). `problem` is a data.Problem.

    Example:
        >>> from data import Problem
        >>> rule_reward(Problem("p", "Which? A) 1 B) 2", "...", "B", domain="science", choices=("1", "2")), "Answer: B")
        1.0
    """
    if problem.domain == "code":
        return code_reward(response, problem.tests)
    if problem.choices:
        return choice_reward(response, problem.answer)
    return answer_reward(response, problem.answer)
