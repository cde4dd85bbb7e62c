"""The code reward (LiveCodeBench's conventions, run in the sandbox) and the multiple-choice letter."""

import base64
import json
import os
import pickle
import zlib

import pytest

from domains import grader
from domains.rule_rewards import (
    choice_reward,
    code_reward,
    code_rewards,
    decode_tests,
    extract_choice,
    extract_code,
    run_tests,
    same_output,
    same_result,
)


def fenced(program: str) -> str:
    return f"Let me think.\n```python\n{program}\n```\nThat is all."


ADD = "a, b = map(int, input().split())\nprint(a + b)"
ADD_TESTS = {"inputs": ["1 2\n", "10 -3\n", "0 0\n"], "outputs": ["3\n", "7\n", "0\n"]}


def test_extract_code_takes_the_last_python_block():
    response = "```python\nprint(1)\n```\ntext\n```py\nprint(2)\n```\n```text\nnot code\n```"
    assert extract_code(response) == "print(2)\n"
    assert extract_code("```Python\nx = 1\n```") == "x = 1\n"
    assert extract_code("no code here") is None and extract_code("```\nprint(1)\n```") is None
    assert extract_code("```python\nprint(1)  # never closed") is None


def test_same_output_lines_whitespace_and_numbers():
    assert same_output("3\n4\n", "3\n4")  # trailing newline
    assert same_output("  a b  \r\nc", "a b\nc")  # each line stripped, Windows line ends
    assert same_output("1.0 2.50", "1 2.5")  # numbers compared as decimals, token by token
    assert same_output("1  2", "1 2")  # a numeric line may differ in spacing
    assert not same_output("a  b", "a b")  # a text line may not
    assert not same_output("1 2", "1\n2") and not same_output("1", "1 0")
    assert not same_output("0.3333", "0.33333") and not same_output("YES", "yes")


def test_stdin_program_right_wrong_and_broken():
    assert code_reward(fenced(ADD), ADD_TESTS) == 1.0
    assert code_reward(fenced("a, b = map(int, input().split())\nprint(a - b)"), ADD_TESTS) == 0.0
    outcomes = run_tests("a, b = map(int, input().split())\nprint(a * b if a else 0)", ADD_TESTS)
    assert [o["status"] for o in outcomes] == ["wrong_answer"]  # grading stops at the first failing test
    outcomes = run_tests("print(1 / 0)", ADD_TESTS)
    assert [(o["passed"], o["status"]) for o in outcomes] == [(False, "error")]
    assert code_reward("the answer is 3, no code", ADD_TESTS) == 0.0


def test_timeout_fails_the_test():
    outcomes = run_tests("while True:\n    pass", ADD_TESTS, timeout=1)
    assert [o["status"] for o in outcomes] == ["timeout"] and outcomes[0]["seconds"] < 5
    assert code_reward(fenced("import time\ntime.sleep(10)\nprint(3)"), ADD_TESTS, timeout=1) == 0.0


def test_formatting_tolerance_of_stdin_tests():
    program = "n = int(input())\nprint(f'{n / 2:.1f}   ')\nprint()\nprint(' '.join(map(str, range(n))))"
    assert code_reward(fenced(program), {"inputs": ["4"], "outputs": ["2\n\n0 1 2 3\n"]}) == 1.0


def test_functional_solution_class_and_top_level_function():
    two_sum = """
class Solution:
    def twoSum(self, nums: List[int], target: int) -> List[int]:
        print("debugging output does not break the result")
        seen = {}
        for i, x in enumerate(nums):
            if target - x in seen:
                return (seen[target - x], i)  # a tuple equals the same list
            seen[x] = i
"""
    tests = {"inputs": ["[2,7,11,15]\n9", "[3,2,4]\n6"], "outputs": ["[0, 1]", "[1,2]"], "fn_name": "twoSum"}
    assert code_reward(fenced(two_sum), tests) == 1.0
    assert code_reward(fenced(two_sum.replace("seen[target - x], i", "i, seen[target - x]")), tests) == 0.0
    top_level = "from __future__ import annotations\n\ndef add(a: int, b: int) -> int:\n    return a + b"
    add_tests = {"inputs": ["1\n2", '"a"\n"b"'], "outputs": ["3", '"ab"'], "fn_name": "add"}
    assert code_reward(fenced(top_level), add_tests) == 1.0
    assert code_reward(fenced(top_level.replace("a + b", "str(a) + str(b)")), add_tests) == 0.0
    assert code_reward(fenced(top_level), {"inputs": [[1, 2]], "outputs": [3], "fn_name": "add"}) == 1.0  # parsed


def test_decode_tests_all_encodings():
    records = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    expected = {"inputs": ["1 2\n"], "outputs": ["3\n"], "fn_name": None}
    assert decode_tests(records) == expected == decode_tests(json.dumps(records))
    assert decode_tests({"inputs": ["1 2\n"], "outputs": ["3\n"]}) == expected
    assert decode_tests(json.dumps({"inputs": ["[1]"], "outputs": ["1"], "fn_name": "f"}))["fn_name"] == "f"
    assert decode_tests(records, fn_name="solve")["fn_name"] == "solve"
    stored = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(records)))).decode()  # LiveCodeBench's private
    assert decode_tests(stored) == expected
    assert code_reward(fenced(ADD), stored) == 1.0
    with pytest.raises(ValueError):
        decode_tests({"inputs": ["1"], "outputs": []})


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # what a malicious pickle does: call a function while loading
        return (os.mkdir, (self.path,))


def test_decode_tests_refuses_pickles_that_would_run_code(tmp_path, monkeypatch):
    target = tmp_path / "pwned"
    stored = base64.b64encode(zlib.compress(pickle.dumps(_Payload(str(target))))).decode()
    with pytest.raises(pickle.UnpicklingError):
        decode_tests(stored)
    assert not target.exists()
    bomb = base64.b64encode(zlib.compress(pickle.dumps("[]" + " " * 10_000))).decode()
    monkeypatch.setattr(grader, "MAX_TESTS_BYTES", 1000)
    with pytest.raises(ValueError, match="decompressed"):
        decode_tests(bomb)


def test_code_rewards_batch_matches_one_by_one():
    responses = [fenced(ADD), fenced("print(0)"), "no code", fenced("print(sum(map(int, input().split())))")]
    assert code_rewards(responses, [ADD_TESTS] * 4, workers=2) == [1.0, 0.0, 0.0, 1.0]


CHOICES = [
    ("Answer: B", "B"),
    ("answer: c", "C"),
    ("The options... Answer: (D)", "D"),
    ("**Answer:** A", "A"),
    ("**Answer: C**", "C"),
    ("Final Answer: \\boxed{B}", "B"),
    ("Final Answer: $\\boxed{\\text{E}}$", "E"),
    ("Answer: [A]", "A"),
    ("Answer: A\nWait, that is wrong.\nFinal Answer: D", "D"),  # the last one counts
    ("I considered A and B.\n\n(C)", "C"),  # a lone letter on the last line
    ("So the correct option is\n**b**", "B"),
    ("Answer: Because the field is uniform, it is zero.", None),  # "B" of "Because" is not a letter answer
    ("The answer is probably C or D, hard to say.", None),
    ("", None),
]


@pytest.mark.parametrize("text,letter", CHOICES)
def test_extract_choice(text, letter):
    assert extract_choice(text) == letter


def test_extract_choice_on_hostile_whitespace():
    # Long runs of spaces between words used to cost the letter patterns quadratic time (16k spaces: seconds); a
    # million of them must now come back at once, with the same answers as on short texts.
    assert extract_choice("x" + " " * 1_000_000 + "y") is None  # last line too long to be a lone letter
    assert extract_choice("Answer:" + " " * 1_000_000 + "b") == "B"
    assert extract_choice(("answer: " + " " * 100_000 + "? ") * 4 + "\n  D.  ") == "D"


def test_choice_reward():
    assert choice_reward("... Answer: (b)", "B") == 1.0 and choice_reward("... Answer: (b)", "(B)") == 1.0
    assert choice_reward("... Answer: C", "B") == 0.0 and choice_reward("no letter at all", "A") == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# The grader against hostile output: bounded work, and no exception reaches the training step.


def peak_mib(function) -> float:
    """Peak Python memory (tracemalloc) while `function` runs, in MiB."""
    import tracemalloc

    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_same_output_on_16_mib_of_numbers_stays_small():
    flood = "1 " * (8 * 2**20)  # 16 MiB, 8 Mi tokens: one Decimal each would cost ~1 GiB
    assert peak_mib(lambda: same_output(flood, "1 1")) < 64
    assert not same_output(flood, "1 1") and not same_output("\n" * 2**20 + "x\n" * 2**20, "x")
    assert same_output("1 " * 1000, " ".join(["1.0"] * 1000))  # long, but equal: still compared token by token


def test_deep_or_huge_json_results_fail_the_test_without_raising():
    deep = "[" * 100_000 + "]" * 100_000
    assert not same_result(deep, "[]") and not same_result(deep, deep)
    assert not same_result("[" + "1," * 10**6 + "1]", "[1]")  # 2 MB against 3 characters: too long
    assert same_result('noise\n[[1, 2], {"a": "]]"}]\n', [[1, 2], {"a": "]]"}])
    assert not same_result("", "1") and not same_result("{", "{}")


def test_run_tests_catches_a_crash_of_the_grader(monkeypatch):
    def broken(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(grader, "same_output", broken)
    outcomes = run_tests("print(3)", {"inputs": ["1 2"], "outputs": ["3"]})
    assert outcomes == [{"passed": False, "status": "grader_error", "seconds": outcomes[0]["seconds"]}]
    assert code_reward(fenced("print(3)"), {"inputs": ["1 2"], "outputs": ["3"]}) == 0.0


def test_programs_printing_deep_json_score_zero():
    tests = {"inputs": ["1", "2"], "outputs": ["1", "1"], "fn_name": "f"}
    nested = "def f(x):\n    return eval('[' * 500 + ']' * 500)"  # json.dumps of it is 500 brackets deep
    flood = "import sys\nsys.stdout.write('[' * 100000 + ']' * 100000)\nsys.exit(0)"  # the result line, as printed
    assert code_rewards([fenced(nested), fenced(flood)], [tests] * 2, workers=2) == [0.0, 0.0]
    assert [o["status"] for o in run_tests(flood, tests)] == ["wrong_answer"]


def test_decode_tests_bounds_what_it_builds():
    stored = base64.b64encode(zlib.compress(pickle.dumps("[" + "[]," * 5_000_000 + "[]]"))).decode()
    assert len(stored) < 100_000  # a small field that json.loads would turn into 5 M lists (~300 MB): refused
    with pytest.raises(ValueError, match="values"):
        decode_tests(stored)

    def refused():
        with pytest.raises(ValueError):
            decode_tests(stored)

    assert peak_mib(refused) < 100  # the 15 MB of text and its string-free copy, nothing built from them
    lists = pickle.dumps(["x"] * 10)  # a pickle that builds a list, not one string
    with pytest.raises(pickle.UnpicklingError, match="opcode"):
        decode_tests(base64.b64encode(zlib.compress(lists)).decode())
