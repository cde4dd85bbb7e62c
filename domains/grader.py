"""Grading model-written code the way LiveCodeBench does, treating everything the program prints as hostile.

The program runs ONLY through domains.sandbox.run_program, one sandboxed process per test (domains/sandbox.py says
what that process cannot do). This file reads what comes back: every parse is bounded in size and nesting before it
starts, and an exception while grading one test fails that test. run_tests, code_reward and code_rewards never raise
on a model's response; only SandboxUnavailable (this machine cannot protect a run) and malformed test data from the
dataset propagate. domains.rule_rewards re-exports every public name here.
"""

import itertools
import json
import re

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

MAX_TESTS_BYTES = 2**30  # a compressed test field may not expand beyond this (a zlib bomb)
MAX_TEST_ITEMS = 4_000_000  # containers + values a test field's JSON may build (~64 bytes each: 256 MB at most)
RESULT_SLACK = 16  # a functional result's JSON may be this many times longer than the expected one (\\uXXXX, floats)
MAX_RESULT_DEPTH = 100  # brackets nested deeper than this in a functional result fail the test (json recursion)
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_ESCAPE = re.compile(r"\\.", re.DOTALL)
_PLAIN_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_TOKEN = re.compile(r"\S+")


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
    base64(zlib(pickle(JSON))), how LiveCodeBench stores private tests. Nothing in the pickle is executed: it must be
    a plain str or bytes (checked opcode by opcode, never unpickled). Bounded: at most MAX_TESTS_BYTES of text and
    MAX_TEST_ITEMS JSON values, counted before parsing (ValueError otherwise).

    Example:
        >>> decode_tests('[{"input": "1\\\\n", "output": "2\\\\n", "testtype": "stdin"}]')
        {'inputs': ['1\\n'], 'outputs': ['2\\n'], 'fn_name': None}
    """
    if isinstance(field, bytes):
        field = field.decode()
    if isinstance(field, str):
        text = field if field.lstrip()[:1] in ("{", "[") else _unpickle_plain(field)
        _check_json_size(text)
        field = json.loads(text)
    if isinstance(field, list):
        field = {"inputs": [t["input"] for t in field], "outputs": [t["output"] for t in field]}
    inputs, outputs = list(field["inputs"]), list(field["outputs"])
    if len(inputs) != len(outputs):
        raise ValueError(f"tests: {len(inputs)} inputs but {len(outputs)} outputs")
    return {"inputs": inputs, "outputs": outputs, "fn_name": field.get("fn_name") or fn_name}


def _check_json_size(text: str) -> None:
    """ValueError unless `text` is at most MAX_TESTS_BYTES and its JSON builds at most MAX_TEST_ITEMS values.

    Outside strings, every value is a container (an opening bracket) or follows one or a comma: their count bounds
    what json.loads builds (each object is about 30-60 bytes, so 40 KB of "[]," would otherwise cost 800 MB)."""
    if len(text) > MAX_TESTS_BYTES:
        raise ValueError(f"tests: {len(text)} characters, over {MAX_TESTS_BYTES}")
    skeleton = _without_strings(text)
    items = sum(skeleton.count(c) for c in "[{,:")
    if items > MAX_TEST_ITEMS:
        raise ValueError(f"tests: JSON of about {items} values, over {MAX_TEST_ITEMS}")


_PICKLE_TEXT = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
_PICKLE_FRAMING = {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "STOP"}


def _unpickle_plain(text: str) -> str:
    """base64 -> zlib (at most MAX_TESTS_BYTES) -> a pickle holding one str or bytes and nothing else -> that text.

    The pickle is read opcode by opcode (pickletools), never loaded: any opcode that builds, imports or calls
    anything raises pickle.UnpicklingError."""
    import base64
    import pickle
    import pickletools
    import zlib

    inflater = zlib.decompressobj()
    data = inflater.decompress(base64.b64decode(text), MAX_TESTS_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"tests: more than {MAX_TESTS_BYTES} bytes once decompressed")
    values = []
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name in _PICKLE_TEXT:
                values.append(argument)
            elif opcode.name not in _PICKLE_FRAMING:
                raise pickle.UnpicklingError(f"tests must be one plain string, not pickle opcode {opcode.name}")
    except ValueError as e:  # pickletools' own error for a truncated or unknown opcode
        raise pickle.UnpicklingError(f"tests: not a pickle ({e})") from None
    if len(values) != 1:
        raise pickle.UnpicklingError(f"tests must be one plain string, not {len(values)} values")
    return values[0].decode() if isinstance(values[0], bytes) else values[0]


def _lines(text: str):
    """The stripped lines of text.strip(), lazily (a flood of newlines must not become a list of millions)."""
    text, start = text.strip(), 0
    while (end := text.find("\n", start)) >= 0:
        yield text[start:end].strip()
        start = end + 1
    yield text[start:].strip()


def same_output(actual: str, expected: str) -> bool:
    """LiveCodeBench's stdout check: the same lines once stripped; lines that still differ must hold equal numbers.

    Lazy, token by token, stopping at the first difference: 16 MB of output costs a few MB, not a Decimal per token.

    Example:
        >>> same_output("3.0 4\\n  yes  \\n", "3 4.00\\nyes"), same_output("3 4", "3\\n4")
        (True, False)
    """
    from decimal import Decimal, InvalidOperation

    for a, b in itertools.zip_longest(_lines(actual), _lines(expected)):
        if a == b:
            continue
        if a is None or b is None:
            return False
        for x, y in itertools.zip_longest(_TOKEN.finditer(a), _TOKEN.finditer(b)):
            try:
                if x is None or y is None or Decimal(x.group(0)) != Decimal(y.group(0)):
                    return False
            except InvalidOperation:
                return False
    return True


def same_result(stdout: str, expected) -> bool:
    """The functional check: the last line of stdout, read as JSON, == the expected value (JSON text or parsed).

    Bounded before parsing: the line may be at most RESULT_SLACK times the expected JSON's length (plus 1 KB), and its
    brackets nested at most MAX_RESULT_DEPTH deep. Anything unreadable is simply not equal.

    Example:
        >>> same_result("debug\\n[0, 1]\\n", "[0,1]"), same_result("[" * 100000 + "]" * 100000, "[]")
        (True, False)
    """
    expected_text = expected if isinstance(expected, str) else json.dumps(expected)
    text = stdout.rstrip()
    line = text[text.rfind("\n") + 1 :].strip()
    if not line or len(line) > RESULT_SLACK * len(expected_text) + 1024 or _depth(line) > MAX_RESULT_DEPTH:
        return False
    try:
        want = json.loads(expected) if isinstance(expected, str) else expected
        return bool(json.loads(line) == want)
    except Exception:  # ValueError, RecursionError (a deep expected value), ...: not equal
        return False


def _without_strings(text: str) -> str:
    """JSON text with its string literals emptied: escapes out first, then plain quotes (linear, no backtracking)."""
    return _PLAIN_STRING.sub('""', _ESCAPE.sub("", text))


def _depth(text: str) -> int:
    """How deep brackets nest in JSON text, strings skipped (C-speed passes, then one accumulate over the brackets).

    Example:
        >>> _depth('[[1, "]]]"], {"a": [2]}]')
        3
    """
    brackets = _NOT_BRACKET.sub("", _without_strings(text)).encode()
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def build_source(program: str, fn_name: str | None) -> str:
    """What runs in the sandbox: `from __future__` lines, CODE_HEADER, the program, and the call of fn_name if any."""
    lines = program.splitlines()
    future = [line for line in lines if line.startswith("from __future__")]  # these must come first
    source = "\n".join(future + [CODE_HEADER] + [line for line in lines if line not in future]) + "\n"
    return source + _CALL.format(name=fn_name) if fn_name else source


def run_tests(program: str, tests, timeout: float = 6.0) -> list[dict]:
    """Run `program` on each test in its own sandbox, stopping at the first failure.

    One outcome per test run: {"passed", "status", "seconds"}, status "passed", "wrong_answer", the sandbox's reason
    ("error", "timeout", "memory", "output_limit") or "grader_error" (grading this test raised: it fails, the rest of
    the batch goes on). Without fn_name a test is stdin -> stdout (same_output); with it, each input line is a JSON
    argument and the output one JSON value (same_result).
    """
    from domains.sandbox import SandboxUnavailable, run_program

    tests = decode_tests(tests)
    source = build_source(program, tests["fn_name"])
    outcomes = []
    for test_input, expected in zip(tests["inputs"], tests["outputs"]):
        seconds = 0.0
        try:
            if not isinstance(test_input, str):  # the arguments already parsed, as some datasets store them
                test_input = "\n".join(json.dumps(argument) for argument in test_input)
            run = run_program(source, stdin=test_input, timeout=timeout)
            seconds = run.seconds
            passed = run.status == "ok"
            if passed:
                passed = same_result(run.stdout, expected) if tests["fn_name"] else same_output(run.stdout, expected)
            status = "passed" if passed else "wrong_answer" if run.status == "ok" else run.status
        except SandboxUnavailable:
            raise  # the machine, not the program: never score it silently
        except Exception:  # RecursionError, MemoryError's cousins, a bug of ours: this test fails, the step goes on
            passed, status = False, "grader_error"
        outcomes.append({"passed": passed, "status": status, "seconds": round(seconds, 3)})
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
    tests = decode_tests(tests)
    try:
        program = extract_code(response) if isinstance(response, str) else None
    except Exception:  # only a bug of ours could land here; a response still scores 0 rather than crash
        program = None
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
