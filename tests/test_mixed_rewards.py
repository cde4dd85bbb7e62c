"""The mixed-domain setting, from judging to reporting: the ExpRL-Process routing (per prefix or at outcome level),
the rule-based rewards by kind, pass@k per domain group, evaluate.py on the benchmark fixtures, calibration per
domain (docs/mixed-domains.md). The loaders and prompts are in tests/test_mixed_domains.py."""

import json

import pytest

from advantages import process_advantages
from domains.judge_texts import process_level
from domains.problems import question_text
from domains.records import Problem
from domains.rule_rewards import rule_rewards
from judge import JudgeResult, LLMJudge, score_process_routed
from tests.test_mixed_domains import GPQA, LCB, OLYMPIAD, SCIKNOWEVAL, load, needs_sandbox

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
    import toy.world as toy
    import train_stage1
    from domains.problems import save_problems

    math = toy.make_toy_problems(2, 8, 8, seed=11)
    mcq = Problem("mcq", "Which is larger?", "2 > 1, so B.", "B", "science", ("1", "2"))
    tests = json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]})
    code = Problem("code", "Echo the input.", "print(input())", "", "code", tests=tests)
    path = str(tmp_path / "mixed.jsonl")
    save_problems(math + [mcq, code], path)
    judge = DomainJudge()
    monkeypatch.setattr(train_stage1, "build_judge", lambda *args, **kwargs: judge)
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
