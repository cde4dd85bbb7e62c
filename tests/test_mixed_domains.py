"""The mixed-domain setting's inputs: the benchmark layouts, read from fixture rows in each benchmark's own columns
(tests/fixtures/), domains, references and refusals, and the policy and judge prompts per domain
(docs/mixed-domains.md). Routing, rewards and reporting: tests/test_mixed_rewards.py."""

import json
import os

import pytest

from domains import sandbox
from domains.problems import (
    CHOICE_PROMPT,
    CODE_PROMPT_FUNCTION,
    CODE_PROMPT_STDIN,
    SYSTEM_PROMPT,
    load_problems,
    policy_messages,
)
from domains.records import DataError, Problem
from domains.rule_rewards import decode_tests, rule_reward
from judge import (
    NO_REFERENCE_SYSTEM,
    OUTCOME_SYSTEM,
    PROCESS_SYSTEM,
    LLMJudge,
    no_reference_prompt,
    outcome_prompt,
    process_prompt,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SCIKNOWEVAL, LCB, GPQA, OLYMPIAD = (
    os.path.join(FIXTURES, name)
    for name in ("sciknoweval_physics.jsonl", "livecodebench.jsonl", "gpqa.jsonl", "olympiadbench_physics.jsonl")
)


def _sandbox_missing() -> str:
    """Why model-written code cannot run here ('' when it can)."""
    missing = sandbox.probe()
    if missing and os.environ.get(sandbox.UNSAFE_ENV) != "1":
        return "the sandbox lacks " + "; ".join(missing) + f" (set {sandbox.UNSAFE_ENV}=1 to run unprotected)"
    return ""


needs_sandbox = pytest.mark.skipif(bool(_sandbox_missing()), reason=_sandbox_missing() or "sandbox ready")


def load(path: str) -> list[Problem]:
    return load_problems(path, require_reference=False)


# --- loaders: each benchmark's columns --------------------------------------------------------------------------------


def test_sciknoweval_multiple_choice_and_open_ended():
    mcq, collision, orbit = load(SCIKNOWEVAL)
    assert (mcq.domain, mcq.answer, mcq.reference) == ("science", "B", "")  # answerKey "B" of labels A-D
    assert mcq.choices == ("1.5 m/s^2", "3.0 m/s^2", "6.0 m/s^2", "12 m/s^2")
    assert collision.choices[1] == "Linear momentum only" and collision.answer == "B"
    # open-ended: no options; the answer text is the reference and the answer
    assert orbit.choices == () and orbit.reference == orbit.answer and orbit.answer.startswith("Gravity supplies")


def test_livecodebench_public_and_compressed_private_tests_merged():
    stdin, functional = load(LCB)
    assert (stdin.id, stdin.domain, stdin.answer, stdin.starter_code) == ("abc900_a", "code", "", "")
    # 1 public test + 2 private ones from base64(zlib(pickle(JSON)))
    assert json.loads(stdin.tests) == {
        "inputs": ["5\n1 2 3 4 5\n", "3\n2 2 2\n", "1\n7\n"],
        "outputs": ["6\n", "6\n", "0\n"],
        "fn_name": None,
    }
    tests = decode_tests(functional.tests)
    assert tests["fn_name"] == "longestRun" and tests["inputs"] == ["[1, 3, 5, 4, 7]", "[2, 2, 2]", "[1, 2, 3, 4]"]
    assert tests["outputs"] == ["3", "1", "4"] and functional.starter_code.startswith("class Solution:")


def test_gpqa_options_shuffled_by_a_seeded_rng():
    first, second = load(GPQA)
    assert first.choices[ord(first.answer) - ord("A")] == "1/2" and second.choices[ord(second.answer) - 65] == "3"
    assert first.reference.startswith("The amplitude") and first.id == "recQM01"
    assert load(GPQA) == [first, second]  # the same order every time
    # over many rows the gold letter is not stuck at one position
    rows = [
        {"Record ID": f"r{i}", "Question": f"Q{i}?", "Correct Answer": "yes", "Explanation": "because"}
        | {f"Incorrect Answer {j}": f"no{j}" for j in (1, 2, 3)}
        for i in range(24)
    ]
    from domains.benchmarks import from_gpqa

    letters = {from_gpqa(row, "row")["answer"] for row in rows}
    assert letters == {"A", "B", "C", "D"}


def test_olympiadbench_physics_unit_context_and_answer():
    ball, resistor = load(OLYMPIAD)
    assert (ball.id, ball.domain, ball.answer) == ("1101", "science", "$20$")
    assert ball.question.endswith("The final answer is in m: put only its value inside \\boxed{}, without the unit.")
    assert resistor.question.startswith("A steady current of") and "Find the power" in resistor.question
    assert resistor.reference == "The power is $P = I^2 R = 1.5^2 \\times 4 = 9$."
    assert rule_reward(ball, "so h = \\boxed{20}") == 1.0 and rule_reward(ball, "\\boxed{10}") == 0.0


def test_saved_hugging_face_dataset_and_datasets_json_export_read_like_the_jsonl(tmp_path):
    datasets = pytest.importorskip("datasets")
    for path in (SCIKNOWEVAL, LCB, GPQA, OLYMPIAD):
        rows = [json.loads(line) for line in open(path)]
        stem = os.path.splitext(os.path.basename(path))[0]
        dataset = datasets.Dataset.from_list(rows)
        dataset.save_to_disk(str(tmp_path / stem))
        dataset.to_json(str(tmp_path / f"export/{stem}.jsonl"))  # what `datasets` writes: the same columns
        expected = load(path)
        assert load_problems(str(tmp_path / stem), require_reference=False) == expected
        assert load_problems(str(tmp_path / f"export/{stem}.jsonl"), require_reference=False) == expected


# --- domains, references and refusals ---------------------------------------------------------------------------------


def write(tmp_path, rows) -> str:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_domain_from_ability_or_domain_column_else_the_flag(tmp_path):
    rows = [
        {"question": "q1", "reference": "r", "answer": "1", "ability": "Science"},
        {"question": "q2", "reference": "r", "answer": "1", "domain": "math"},
        {"question": "q3", "reference": "r", "answer": "1"},
    ]
    path = write(tmp_path, rows)
    assert [p.domain for p in load_problems(path)] == ["science", "math", "math"]
    assert [p.domain for p in load_problems(path, domain="science")] == ["science", "math", "science"]
    with pytest.raises(DataError, match=r"rows.jsonl line 1: field 'ability' \(domain\) must be one of math, sci"):
        load_problems(write(tmp_path, [rows[0] | {"ability": "physics"}]))


@pytest.mark.parametrize(
    "row, message",
    [
        ({"question": "q", "reference": "r", "answer": "E", "choices": ["a", "b"]}, "'answer' must be one of the lett"),
        ({"question": "q", "reference": "r", "domain": "code"}, "field 'tests' is missing or empty"),
        ({"question": "q", "reference": "r", "domain": "code", "tests": "{nope"}, "field 'tests' cannot be read"),
        ({"question": "q", "reference": "r", "domain": "code", "tests": '{"inputs": [], "outputs": []}'}, "no test"),
    ],
)
def test_bad_mixed_rows_name_file_line_and_field(tmp_path, row, message):
    with pytest.raises(DataError, match="rows.jsonl line 1: .*" + message):
        load_problems(write(tmp_path, [row]))


def test_code_rows_need_no_answer_and_evaluation_rows_no_reference(tmp_path):
    tests = json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]})
    code = {"question": "Echo it.", "reference": "print(input())", "domain": "code", "tests": tests}
    assert load_problems(write(tmp_path, [code]))[0].answer == ""
    problems = load_problems(write(tmp_path, [{"question": "1+1?", "answer": "2"}]), require_reference=False)
    assert problems[0].reference == ""


def test_stage1_refuses_a_set_without_references_naming_file_and_line(capsys):
    from config import Args, load_inputs
    from plumbing.cli import UsageError

    with pytest.raises(UsageError):
        load_inputs(Args(train_data=LCB, eval_data="", reward="outcome"))
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--train_data" in err and "livecodebench.jsonl line 1" in err
    assert "field 'reference' is missing or empty" in err
    problems, _ = load_inputs(Args(train_data=LCB, eval_data=LCB, reward="sparse"))  # Stage II needs no reference
    assert len(problems) == 2


def test_private_tests_that_cannot_be_read_are_named(tmp_path):
    row = json.loads(open(LCB).readline()) | {"private_test_cases": "not base64 at all!"}
    with pytest.raises(DataError, match=r"line 1: field 'private_test_cases' cannot be read"):
        load_problems(write(tmp_path, [row]), require_reference=False)


# --- the policy prompt per domain -------------------------------------------------------------------------------------


def test_policy_prompt_per_domain():
    math = Problem("m", "What is 2+3?", "2+3 = 5", "5")
    assert policy_messages(math) == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "What is 2+3?"},
    ]  # math: exactly the paper's prompt, as before
    mcq = load(SCIKNOWEVAL)[0]
    system, user = (m["content"] for m in policy_messages(mcq))
    assert system == CHOICE_PROMPT and '"Answer: X"' in system
    assert user.endswith("A) 1.5 m/s^2\nB) 3.0 m/s^2\nC) 6.0 m/s^2\nD) 12 m/s^2") and user.startswith(mcq.question)
    stdin, functional = load(LCB)
    assert policy_messages(stdin) == [
        {"role": "system", "content": CODE_PROMPT_STDIN},
        {"role": "user", "content": stdin.question},
    ]
    system, user = (m["content"] for m in policy_messages(functional))
    assert system == CODE_PROMPT_FUNCTION and "standard input" in CODE_PROMPT_STDIN and "```python" in system
    assert user.endswith("```python\nclass Solution:\n    def longestRun(self, nums: List[int]) -> int:\n```")
    open_science = load(OLYMPIAD)[0]
    assert policy_messages(open_science)[0]["content"] == SYSTEM_PROMPT  # a boxed final answer, like math


# --- the judge's prompts per domain -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["outcome", "process", "no_reference"])
def test_judge_prompts_differ_by_domain_and_carry_question_reference_response(kind):
    question, reference, response = "QUESTION-TEXT", "REFERENCE-TEXT", "RESPONSE-TEXT"
    build = {
        "outcome": lambda d: outcome_prompt(question, reference, response, domain=d),
        "process": lambda d: process_prompt(question, reference, response, "prefix", domain=d),
        "no_reference": lambda d: no_reference_prompt(question, response, domain=d),
    }[kind]
    prompts = {d: build(d) for d in ("math", "science", "code")}
    systems = {d: p[0]["content"] for d, p in prompts.items()}
    assert len(set(systems.values())) == 3  # one template per domain
    assert systems["math"] == {"outcome": OUTCOME_SYSTEM, "process": PROCESS_SYSTEM}.get(kind, NO_REFERENCE_SYSTEM)
    for d, (_, user) in prompts.items():
        assert question in user["content"] and response in user["content"]
        assert (reference in user["content"]) == (kind != "no_reference")
        assert "Score: <one integer from 1 to 5>" in systems[d] and "UNTRUSTED" in systems[d]
    assert "units" in systems["science"] and "LAST ```python" in systems["code"]
    assert "concrete" in systems["code"] and "choose the lower one" in systems["code"]
    assert prompts["code"][1]["content"].startswith("## Programming problem\nQUESTION-TEXT")


class RecordingEngine:
    """An engine that answers 'Score: 4' and keeps the prompts it was sent."""

    def __init__(self):
        self.prompts = []

    def chat(self, messages_list, max_tokens):
        self.prompts += messages_list
        return ["Reasoning: fine.\nScore: 4"] * len(messages_list)


def test_llm_judge_picks_each_rows_template():
    engine = RecordingEngine()
    judge = LLMJudge(engine)
    result = judge.score_outcome(["q1", "q2", "q3"], ["r"] * 3, ["y"] * 3, domains=["math", "code", "science"])
    assert result.scores == [0.75] * 3
    assert [p[0]["content"] for p in engine.prompts] == [
        outcome_prompt("q", "r", "y", d)[0]["content"] for d in ("math", "code", "science")
    ]
    engine.prompts.clear()
    judge.score_process(["q"], ["r"], [["### a\n", "b"]], view="prefix", domains=["science"])
    assert [p[1]["content"] for p in engine.prompts] == [
        process_prompt("q", "r", text, "prefix", "science")[1]["content"] for text in ("### a\n", "### a\nb")
    ]
    engine.prompts.clear()
    judge.score_outcome(["q"], ["r"], ["y"])  # no domains: math, the paper's prompt
    assert engine.prompts[0][0]["content"] == OUTCOME_SYSTEM
