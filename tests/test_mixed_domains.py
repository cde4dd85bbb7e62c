"""The mixed-domain setting on real-model code paths: benchmark layouts, per-domain prompts, the process routing,
the rule-based rewards and pass@k per domain group. The fixture rows in tests/fixtures/ are in each benchmark's own
column layout (docs/mixed-domains.md)."""

import json
import os

import pytest

import sandbox
from advantages import process_advantages
from answer import decode_tests, rule_reward, rule_rewards
from data import (
    CHOICE_PROMPT,
    CODE_PROMPT_FUNCTION,
    CODE_PROMPT_STDIN,
    SYSTEM_PROMPT,
    DataError,
    Problem,
    load_problems,
    policy_messages,
    question_text,
)
from judge import (
    NO_REFERENCE_SYSTEM,
    OUTCOME_SYSTEM,
    PROCESS_SYSTEM,
    JudgeResult,
    LLMJudge,
    no_reference_prompt,
    outcome_prompt,
    process_level,
    process_prompt,
    score_process_routed,
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
    from layouts import from_gpqa

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
    from cli import UsageError
    from config import Args, load_inputs

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


# --- the process routing ----------------------------------------------------------------------------------------------


class MathOnlyJudge:
    """A judge whose methods take no `domains` (like the toy judges); it records what it is asked."""

    def __init__(self):
        self.calls = []

    def score_process(self, questions, references, segments, view="prefix"):
        self.calls.append(("process", list(questions), [list(s) for s in segments]))
        return JudgeResult(
            [[0.25 * (t + 1) for t in range(len(s))] for s in segments], [["p"] * len(s) for s in segments]
        )

    def score_outcome(self, questions, references, responses):
        self.calls.append(("outcome", list(questions), list(responses)))
        return JudgeResult([1.0] * len(responses), ["o"] * len(responses))


class DomainJudge(MathOnlyJudge):
    def score_process(self, questions, references, segments, view="prefix", domains=None):
        self.calls.append(("domains", domains))
        return super().score_process(questions, references, segments, view)

    def score_outcome(self, questions, references, responses, domains=None):
        self.calls.append(("domains", domains))
        return super().score_outcome(questions, references, responses)


def test_process_level_routes_as_the_released_code():
    mcq, _, open_ended = load(SCIKNOWEVAL)
    levels = [process_level(p) for p in (Problem("m", "q", "r", "1"), mcq, open_ended, load(LCB)[0], load(GPQA)[0])]
    assert levels == ["prefix", "prefix", "outcome", "outcome", "prefix"]


def test_all_math_batch_is_one_process_call_without_domains():
    judge = MathOnlyJudge()
    segments = [["### a\n", "b"], ["c"]]
    result = score_process_routed(judge, ["q1", "q2"], ["r", "r"], segments, ["prefix", "prefix"], "prefix")
    assert judge.calls == [("process", ["q1", "q2"], segments)]
    assert result.scores == [[0.25, 0.5], [0.25]] and result.num_requests == 0


def test_mixed_batch_prefix_rows_per_prefix_and_outcome_rows_as_one_response():
    judge = DomainJudge()
    segments = [["### a\n", "b"], ["### x\n", "print(1)"], ["### s\n", "t"]]
    levels, domains = ["prefix", "outcome", "prefix"], ["math", "code", "science"]
    result = score_process_routed(judge, ["m", "c", "s"], ["r"] * 3, segments, levels, "prefix", domains)
    assert judge.calls == [
        ("domains", ["math", "science"]),
        ("process", ["m", "s"], [["### a\n", "b"], ["### s\n", "t"]]),
        ("domains", ["code"]),
        ("outcome", ["c"], ["### x\nprint(1)"]),  # the whole response, its segments joined
    ]
    assert result.scores == [[0.25, 0.5], [1.0], [0.25, 0.5]] and result.texts[1] == ["o"]
    judge = DomainJudge()  # math rows beside code rows: the math-only part gets no `domains` keyword
    score_process_routed(judge, ["m", "c"], ["r"] * 2, segments[:2], levels[:2], "prefix", ["math", "code"])
    assert judge.calls[0] == ("domains", None) and judge.calls[2] == ("domains", ["code"])


def test_outcome_level_groups_get_group_normalised_advantages_in_a_process_run():
    # groups of 2. prefix group: s = (0.25, 0.75) -> Eq. 2: A_1 = 0.25 - 0.75, A_2 = 0.75 - 0.25; (1.0,) -> 0.
    # outcome group: scores 1.0 and 0.5 (the second truncated -> reward 0): mean 0.5, sample std 0.707 -> +-0.707.
    scores = [[0.25, 0.75], [1.0], [1.0], [0.5]]
    advantages, keep = process_advantages(
        scores, [False, False, False, True], 2, "delta", ["prefix"] * 2 + ["outcome"] * 2
    )
    assert [[round(a, 3) for a in row] for row in advantages] == [[-0.5, 0.5], [0.0], [0.707], [-0.707]]
    assert keep == [True] * 4
    # an unparseable outcome score drops that rollout; its group-mate alone has advantage 0
    advantages, keep = process_advantages([[0.5], [None]], [False, False], 2, "delta", ["outcome"] * 2)
    assert advantages == [[0.0], [0.0]] and keep == [True, False]


def test_stage1_process_step_on_a_mixed_batch_routes_rows(tmp_path, tiny_args, monkeypatch):
    import toy
    import train_stage1
    from data import save_problems

    math = toy.make_toy_problems(2, 8, 8, seed=11)
    mcq = Problem("mcq", "Which is larger?", "2 > 1, so B.", "B", "science", ("1", "2"))
    tests = json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]})
    code = Problem("code", "Echo the input.", "print(input())", "", "code", tests=tests)
    path = str(tmp_path / "mixed.jsonl")
    save_problems(math + [mcq, code], path)
    judge = DomainJudge()
    monkeypatch.setattr(train_stage1, "build_judge", lambda args: judge)
    args = tiny_args(
        train_data=path, reward="process", prompts_per_step=4, group_size=2, output_dir=str(tmp_path / "r")
    )
    train_stage1.main(args)
    step_calls = judge.calls[2:]  # after the probe
    process_questions = [q for call in step_calls if call[0] == "process" for q in call[1]]
    outcome_questions = [q for call in step_calls if call[0] == "outcome" for q in call[1]]
    assert outcome_questions == ["Echo the input."] * 2  # the code rows: one outcome-level score each
    assert process_questions.count(question_text(mcq)) == 2 and len(process_questions) == 6  # math + MCQ per prefix
    assert ("domains", ["code", "code"]) in step_calls
    metrics = [json.loads(line) for line in open(tmp_path / "r" / "metrics.jsonl")]
    assert metrics[-1]["dropped_rollouts"] == 0


# --- the rule-based reward and pass@k per domain ----------------------------------------------------------------------


@needs_sandbox
def test_rule_rewards_dispatch_by_kind_in_order():
    stdin, _ = load(LCB)
    mcq = load(SCIKNOWEVAL)[0]
    program = "n = int(input())\nprint(sum(x for x in map(int, input().split()) if x % 2 == 0))"
    responses = ["Answer: B", f"```python\n{program}\n```", "\\boxed{5}", "```python\nprint(6)\n```"]
    problems = [mcq, stdin, Problem("m", "2+3?", "", "5"), stdin]
    assert rule_rewards(problems, responses) == [1.0, 1.0, 1.0, 0.0]  # print(6) passes the public test only


class CannedSampler:
    """A sampler that returns, for prompt i, the texts canned[i] (n of them): evaluation without a model."""

    def __init__(self, canned):
        self.canned = canned

    def sample(self, prompt_ids, n, temperature=None, max_new_tokens=None):
        from types import SimpleNamespace

        assert len(prompt_ids) == len(self.canned) and all(len(texts) == n for texts in self.canned)
        return [SimpleNamespace(text=t, truncated=False, response_ids=[]) for texts in self.canned for t in texts]


EVEN_SUM = "```python\nn = int(input())\nprint(sum(x for x in map(int, input().split()) if x % 2 == 0))\n```"
EVERY_SUM = "```python\nn = int(input())\nprint(sum(map(int, input().split())))\n```"
RUN = """```python
class Solution:
    def longestRun(self, nums):
        best = run = 1
        for a, b in zip(nums, nums[1:]):
            run = run + 1 if b > a else 1
            best = max(best, run)
        return best
```"""


@needs_sandbox
def test_pass_at_k_per_domain_group_hand_computed(tmp_path):
    from evaluate import evaluate

    math = [Problem("m1", "1+1?", "", "2"), Problem("m2", "2+2?", "", "4")]
    mcq1, mcq2 = load(SCIKNOWEVAL)[:2]
    ball = load(OLYMPIAD)[0]
    stdin, functional = load(LCB)
    problems = math + [mcq1, mcq2, ball, stdin, functional]
    canned = [
        ["\\boxed{2}"] * 4,  # m1: c = 4
        ["\\boxed{5}"] * 4,  # m2: c = 0
        ["Answer: B", "Answer: A", "Answer: (b)", "no idea"],  # c = 2
        ["Answer: C"] * 4,  # c = 0
        ["\\boxed{20}"] + ["\\boxed{10}"] * 3,  # c = 1
        [EVEN_SUM] + [EVERY_SUM] * 3,  # c = 1 (the sum of all fails the public test)
        [RUN, RUN, "```python\nclass Solution:\n    def longestRun(self, nums):\n        return len(nums)\n```", ""],
    ]
    result = evaluate("toy", problems, n=4, sampler=CannedSampler(canned), output_dir=str(tmp_path), seed=0)
    assert result["correct_counts"] == [4, 0, 2, 0, 1, 1, 2]
    groups = result["domains"]
    # Math-Agg: c = 4, 0 of n = 4: pass@k = (1 + 0) / 2 for every k
    assert groups["Math-Agg"] == {"domain": "math", "num_problems": 2, "pass@k": {"1": 0.5, "2": 0.5, "4": 0.5}}
    # STEM-Agg: c = 2, 0, 1. pass@1 = (2/4 + 0 + 1/4) / 3 = 0.25; pass@2: 1 - C(2,2)/C(4,2) = 5/6 and
    # 1 - C(3,2)/C(4,2) = 1/2, mean (5/6 + 0 + 1/2) / 3 = 4/9; pass@4 = (1 + 0 + 1) / 3
    stem = groups["STEM-Agg"]["pass@k"]
    assert stem["1"] == pytest.approx(0.25) and stem["2"] == pytest.approx(4 / 9) and stem["4"] == pytest.approx(2 / 3)
    # Code: c = 1, 2 at pass@1 and pass@4 only: (1/4 + 2/4) / 2 = 0.375; 1
    assert groups["Code"] == {"domain": "code", "num_problems": 2, "pass@k": {"1": 0.375, "4": 1.0}}
    assert json.load(open(tmp_path / "pass_at_k.json"))["domains"] == groups


def test_evaluate_command_with_the_toy_model_prints_pass_at_k_per_domain(tmp_path, capsys):
    from evaluate import main

    data = ",".join([SCIKNOWEVAL, LCB, GPQA, OLYMPIAD, "toy:heldout"])
    args = ["--model", "toy", "--data", data, "--n", "4", "--max_new_tokens", "8", "--limit", "2", "--threads", "1"]
    result = main(args + ["--output_dir", str(tmp_path), "--rollouts", str(tmp_path / "rollouts.jsonl")])
    out = capsys.readouterr().out
    assert result["num_problems"] == 10  # 2 per source
    assert list(result["domains"]) == ["Math-Agg", "STEM-Agg", "Code"]
    assert [result["domains"][g]["num_problems"] for g in ("Math-Agg", "STEM-Agg", "Code")] == [2, 6, 2]
    assert list(result["domains"]["Code"]["pass@k"]) == ["1", "4"]
    for group, domain, count in (("Math-Agg", "math", 2), ("STEM-Agg", "science", 6), ("Code", "code", 2)):
        assert f"{group} ({domain}, {count} problems):  pass@1 " in out
    rows = [json.loads(line) for line in open(tmp_path / "rollouts.jsonl")]
    domains = ["science"] * 2 + ["code"] * 2 + ["science"] * 4 + ["math"] * 2  # 2 rows of each source, in order
    assert [r.get("domain", "math") for r in rows[::4]] == domains
    assert rows[0]["question"] == question_text(load(SCIKNOWEVAL)[0])  # the options, as the judge must read them


# --- judge calibration per domain -------------------------------------------------------------------------------------


class TemplateEngine:
    """Answers 5 to every code prompt (it cannot tell a bug) and elsewhere 5 iff the response says RIGHT."""

    def chat(self, messages_list, max_tokens):
        return [
            "Score: 5" if "LAST ```python" in m[0]["content"] or "RIGHT" in m[1]["content"] else "Score: 1"
            for m in messages_list
        ]


def test_calibration_per_domain_in_the_three_reference_conditions(tmp_path, monkeypatch):
    import analysis.calibrate as calibrate

    rows = []
    for domain in ("math", "science", "code"):
        for problem in range(2):
            for correct in (True, False):
                rows.append(
                    {"question": f"{domain} q{problem}", "reference": f"ref {domain} {problem}", "answer": "1"}
                    | {"response": "RIGHT" if correct else "wrong", "correct": correct}
                    | ({"domain": domain} if domain != "math" else {})
                )
    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(calibrate, "build_judge", lambda *args: LLMJudge(TemplateEngine()))
    report = calibrate.main(["--rollouts", str(path), "--out", str(tmp_path / "out"), "--bootstrap", "10"])
    # math, science: FPR = FNR = 0 in every condition; code: every wrong rollout judged correct, FPR = 2/2, FNR = 0
    for domain, misplacement in (("math", 0.0), ("science", 0.0), ("code", 0.5)):
        assert report["domains"][domain]["num_rollouts"] == 4
        for condition in ("reference", "no_reference", "wrong_reference"):
            assert report["domains"][domain]["conditions"][condition]["rates"]["misplacement"] == misplacement
    table = open(tmp_path / "out" / "calibration.md").read()
    assert "| TemplateEngine" not in table and table.count("| reference |") == 3 and ", code | wrong_reference" in table
    only = calibrate.main(
        ["--rollouts", str(path), "--out", str(tmp_path / "one"), "--domain", "code", "--bootstrap", "5"]
    )
    assert list(only["domains"]) == ["code"]
