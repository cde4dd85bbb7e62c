"""Judge calibration arithmetic, the wrong-reference shift, bootstrap intervals, injection strings, the CLI."""

import json

import pytest

from analysis import calibrate, prefix_calibration
from analysis.calibrate import bootstrap_ci, rates, wrong_references
from analysis.calibrate import calibrate as run_calibration
from analysis.injection import INJECTIONS, inject, naive_outcome_prompt, naive_parse_score
from judge import BEGIN_MARK, END_MARK, OUTCOME_SYSTEM, UNTRUSTED_RULE, LLMJudge, outcome_prompt, parse_score
from toy.world import CheckpointJudge, RubricJudge

# --- rates ------------------------------------------------------------------------------------------------------------


def test_rates_hand_computed():
    # incorrect: 1.0 (N=5, judged correct), 0.75 (N=4, judged correct), 0.5, 0.0  -> FPR = 2/4
    # correct:   1.0, 0.5 (judged incorrect), None (parse failure, excluded)      -> FNR = 1/2
    scores = [1.0, 0.75, 0.5, 0.0, 1.0, 0.5, None]
    correct = [False, False, False, False, True, True, True]
    r = rates(scores, correct)
    assert r["fpr"] == 0.5 and r["fnr"] == 0.5 and r["misplacement"] == 0.5
    assert r["parse_failure"] == pytest.approx(1 / 7)
    assert (r["num_correct"], r["num_incorrect"]) == (3, 4)
    # failures counted as "judged incorrect": FPR 2/4, FNR 2/3 -> (0.5 + 0.6667) / 2
    assert r["misplacement_failed_as_low"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_rates_threshold_is_score_four():
    # 0.75 is N=4: judged correct; 0.5 is N=3: not. With a min score of 5 (threshold 1.0) 0.75 is not either.
    assert rates([0.75], [False])["fpr"] == 1.0
    assert rates([0.5], [False])["fpr"] == 0.0
    assert rates([0.75], [False], threshold=1.0)["fpr"] == 0.0


def test_rates_undefined_without_support():
    r = rates([None, None], [True, False])
    assert r["fpr"] is None and r["fnr"] is None and r["misplacement"] is None and r["parse_failure"] == 1.0
    assert r["misplacement_failed_as_low"] == 0.5  # a judge that never answers: FPR 0, FNR 1


# --- wrong references -------------------------------------------------------------------------------------------------


def test_wrong_reference_is_a_seeded_cyclic_shift():
    rows = [{"question": q, "reference": f"ref-{q}"} for q in "abcab"]
    shifted = wrong_references(rows, seed=3)
    assert shifted == wrong_references(rows, seed=3)  # seeded
    mapping = {r["question"]: s for r, s in zip(rows, shifted)}
    assert all(mapping[q] != f"ref-{q}" for q in "abc")  # never the own reference
    assert sorted(mapping.values()) == ["ref-a", "ref-b", "ref-c"]  # a permutation: each reference used once
    assert [shifted[0], shifted[3]] == [mapping["a"]] * 2  # rollouts of one problem share the wrong reference
    # the shift follows the shuffled order: problem i takes problem i+1's reference
    order = ["a", "b", "c"]
    import random

    random.Random(3).shuffle(order)
    assert [mapping[q] for q in order] == [f"ref-{q}" for q in order[1:] + order[:1]]


def test_wrong_reference_needs_two_problems():
    with pytest.raises(ValueError):
        wrong_references([{"question": "a", "reference": "r"}] * 2)


# --- bootstrap --------------------------------------------------------------------------------------------------------


def test_bootstrap_ci_brackets_the_estimate_and_is_seeded():
    scores = [1.0, 0.0] * 20 + [1.0, 1.0, 0.0, 1.0] * 10  # 40 incorrect (FPR 0.5), 40 correct (FNR 0.25)
    correct = [False] * 40 + [True] * 40
    ci = bootstrap_ci(scores, correct, num_samples=300, seed=1)
    r = rates(scores, correct)
    for key in ("fpr", "fnr", "misplacement"):
        lo, hi = ci[key]
        assert 0.0 <= lo < r[key] < hi <= 1.0
    assert ci == bootstrap_ci(scores, correct, num_samples=300, seed=1)
    # a perfect judge has a zero-width interval at 0
    perfect = bootstrap_ci([0.0] * 5 + [1.0] * 5, [False] * 5 + [True] * 5, num_samples=50)
    assert perfect["misplacement"] == (0.0, 0.0)


# --- the toy checkpoint judge -----------------------------------------------------------------------------------------


def _toy_rows():
    # two problems with references of two checkpoints each; one correct and one incorrect rollout per problem
    ref_a = "Add 2, then add 3: that gives 15. Double: that gives 30. The answer is 30."
    ref_b = "Subtract 2, then subtract 3: that gives 45. Add 4: that gives 49. The answer is 49."
    return [
        {
            "question": "10 +2 +3 *2",
            "reference": ref_a,
            "answer": "30",
            "correct": True,
            "response": "10+2=12###12+3=15###15*2=30###\\boxed{30}",
        },
        {
            "question": "10 +2 +3 *2",
            "reference": ref_a,
            "answer": "30",
            "correct": False,
            "response": "10+2=12###12+3=16###16*2=32###\\boxed{32}",
        },
        {
            "question": "50 -2 -3 +4",
            "reference": ref_b,
            "answer": "49",
            "correct": True,
            "response": "50-2=48###48-3=45###45+4=49###\\boxed{49}",
        },
        {
            "question": "50 -2 -3 +4",
            "reference": ref_b,
            "answer": "49",
            "correct": False,
            "response": "50-2=47###47-3=44###44+4=48###\\boxed{48}",
        },
    ]


def test_checkpoint_judge_calibration_by_hand():
    results = run_calibration(CheckpointJudge(), _toy_rows(), num_bootstrap=20)
    # own reference: correct rollouts establish 2/2 checkpoints (score 5), incorrect ones 0/2 (score 1)
    assert results["reference"]["scores"] == [1.0, 0.0, 1.0, 0.0]
    assert results["reference"]["rates"]["misplacement"] == 0.0
    # the other problem's checkpoints are never established: all score 1 -> FPR 0, FNR 1, misplacement 0.5
    assert results["wrong_reference"]["scores"] == [0.0] * 4
    assert results["wrong_reference"]["rates"]["misplacement"] == 0.5
    # no reference: the checkpoint judge has nothing to read, every output is a parse failure, rates n/a
    assert results["no_reference"]["rates"]["parse_failure"] == 1.0
    assert results["no_reference"]["rates"]["misplacement"] is None


def test_rubric_judge_calibration_by_hand():
    rows = _toy_rows()
    results = run_calibration(RubricJudge(), rows, num_bootstrap=20)
    # own reference: the correct rollouts follow every step (5); the incorrect ones leave the path before the first
    # checkpoint (12+3=16 at step 2; 50-2=47 at step 1) and box a wrong answer (1)
    assert results["reference"]["scores"] == [1.0, 0.0, 1.0, 0.0]
    # no reference (NoReferenceJudge): the correct ones are valid and chained (5); each incorrect one has exactly one
    # wrong equation (12+3=16; 50-2=47, after which 47-3=44 and 44+4=48 are right) (2)
    assert results["no_reference"]["scores"] == [1.0, 0.25, 1.0, 0.25]
    assert results["wrong_reference"]["scores"] == [0.0] * 4 and results["wrong_reference"]["rates"]["fnr"] == 1.0
    # the dial at 1: every rollout judged against a misread reference, so the correct ones fail too
    assert run_calibration(RubricJudge(error_rate=1.0), rows, num_bootstrap=20)["reference"]["rates"]["fnr"] == 1.0


def test_calibration_table_marks_na():
    table = calibrate.calibration_table(run_calibration(CheckpointJudge(), _toy_rows(), num_bootstrap=20), "toy")
    assert "| toy | reference | 0.0 [0.0, 0.0] | 0.0 [0.0, 0.0] | 0.0 [0.0, 0.0] | 0.0 |" in table
    assert "| toy | no_reference | n/a | n/a | n/a | 100.0 |" in table


# --- injections -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(INJECTIONS))
def test_injection_strings_are_fenced_and_inert_to_the_hardened_parser(name):
    response = "12+3=16###\\boxed{16}\n\n" + INJECTIONS[name]
    text = outcome_prompt("q", "ref", response)[1]["content"]
    inside = text[text.index(BEGIN_MARK) : text.index(END_MARK)]
    assert INJECTIONS[name].split("\n")[0] in inside  # the attack sits inside the fence, as content
    # a judge that quotes the attack while reasoning and then gives its own verdict: only the verdict counts
    judge_output = f"Reasoning: the student wrote '{INJECTIONS[name]}' but 12+3 is not 16.\nScore: 1"
    assert parse_score(judge_output) == 1
    assert naive_parse_score(judge_output) == 5  # the naive first-"Score:" parser is fooled


def test_naive_prompt_has_no_fence_and_no_untrusted_rule():
    messages = naive_outcome_prompt("q", "ref", "resp")
    assert BEGIN_MARK not in messages[1]["content"] and "resp" in messages[1]["content"]
    assert "never a source of instructions" not in messages[0]["content"]
    assert "Score: <one integer from 1 to 5>" in messages[0]["content"]  # same output format
    # otherwise the prompt training uses: its system text less the rule, the same sections in the same order
    assert messages[0]["content"] == OUTCOME_SYSTEM.replace(UNTRUSTED_RULE + "\n\n", "")
    assert messages[1]["content"] == "## Math problem\nq\n\n## Generated reasoning\nresp\n\n## Reference solution\nref"


class EchoEngine:
    """A gullible fake judge: quotes the response's last line, obeys an instruction it is not told to distrust
    (unfenced), then gives its own verdict Score: 2."""

    def chat(self, messages_list, max_tokens):
        outs = []
        for messages in messages_list:
            user, fenced = messages[1]["content"], BEGIN_MARK in messages[1]["content"]
            if "Ignore previous instructions" in user and not fenced:
                outs.append("Reasoning: correct.\nScore: 5")
                continue
            shown = user.split("## Generated reasoning\n")[1].split("\n## Reference")[0].strip().splitlines()
            last = [line for line in shown if line not in (BEGIN_MARK, END_MARK)][-1]
            outs.append(f"Reasoning: the text ends with '{last}'.\nScore: 2")
        return outs


def test_inject_before_and_after_hardening():
    rows = _toy_rows()
    judge = LLMJudge(EchoEngine())
    before, after = inject(judge, rows, hardened=False), inject(judge, rows, hardened=True)
    # clean: the last line has no "Score:", verdict 2 -> 0.25 in both arms
    assert before["none"]["mean"] == after["none"]["mean"] == 0.25
    # before: the echoed "Score: 5" is the first "Score:" -> 1.0, a rise of 0.75; the instruction is obeyed -> 1.0
    assert [before[k]["rise"] for k in INJECTIONS] == [0.75, 0.75, 0.75]
    assert before["claim"]["judged_correct"] == 1.0
    # after: the last "Score:" (the verdict) is read and the instruction sits in a fence -> no rise
    assert [after[k]["rise"] for k in INJECTIONS] == [0.0, 0.0, 0.0]
    # the toy checkpoint judge only counts valid equations: no injection moves it
    toy = inject(CheckpointJudge(), rows, hardened=False)
    assert all(toy[k]["rise"] == 0.0 for k in INJECTIONS)


class ParrotEngine:
    """A judge that never writes a verdict of its own, and repeats the response's last line (SmolLM2-135M's habit)."""

    def chat(self, messages_list, max_tokens):
        return [m[1]["content"].split(END_MARK)[0].strip().splitlines()[-1] for m in messages_list]


def test_inject_counts_judged_correct_over_all_rollouts():
    rows = _toy_rows()
    after = inject(LLMJudge(ParrotEngine()), rows, hardened=True)
    # clean: "\boxed{32}" has no "Score:": every output fails to parse, the mean is undefined, 0% judged correct
    assert after["none"]["mean"] is None and after["none"]["parse_failure"] == 1.0
    assert after["none"]["judged_correct"] == 0.0
    # the echoed "Score: 5" is the only (so the last) "Score:" in the output: the hardened parser reads it too
    assert after["score_line"]["judged_correct"] == 1.0 and after["score_line"]["parse_failure"] == 0.0
    assert after["score_line"]["rise"] is None  # no clean mean to compare with


# --- command line -----------------------------------------------------------------------------------------------------


def test_calibrate_and_inject_commands(tmp_path, monkeypatch):
    from analysis import injection

    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _toy_rows()))
    calibrate.main(["--rollouts", str(path), "--judge", "toy", "--bootstrap", "20", "--out", str(tmp_path / "cal")])
    report = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert report["conditions"]["wrong_reference"]["rates"]["misplacement"] == 0.5
    assert (tmp_path / "cal" / "histogram.png").read_bytes()[:4] == b"\x89PNG"
    injection.main(["--rollouts", str(path), "--judge", "toy", "--out", str(tmp_path / "inj")])
    assert "| toy | score_line | 0.000 (+0.000)" in (tmp_path / "inj" / "injection.md").read_text()
    # the progress judge has no no-reference mode (n/a); the dial shows in the table's judge name
    calibrate.main(["--rollouts", str(path), "--judge", "toy-progress", "--bootstrap", "20", "--out", str(tmp_path)])
    assert "| toy-progress | no_reference | n/a | n/a | n/a | 100.0 |" in (tmp_path / "calibration.md").read_text()
    argv = ["--rollouts", str(path), "--judge_error_rate", "1", "--bootstrap", "20", "--out", str(tmp_path / "p1")]
    report = calibrate.main(argv)
    table = (tmp_path / "p1" / "calibration.md").read_text()
    assert report["judge_error_rate"] == 1.0 and "| toy (error rate 1.0) | reference |" in table
    with pytest.raises(ValueError):
        calibrate.build_judge("toy-progress", error_rate=0.5)


def test_prefix_calibration_on_the_toy_base(tmp_path):
    from plumbing.common import load_model, seed_everything

    seed_everything(0)
    policy, tokenizer = load_model("toy")
    rows = _toy_rows()[:2]
    result = prefix_calibration.prefix_calibration(policy, tokenizer, CheckpointJudge(), rows, k=2, max_new_tokens=40)
    # 4 segments per response ("a###b###c###\boxed{}") -> 3 proper prefixes each
    assert result["num_prefixes"] == 6 and len(result["pairs"]) == 6
    # the incorrect rollout's prefixes after its wrong step 12+3=16 can never recover: success 0
    assert [p for s, p in result["pairs"][4:]] == [0.0, 0.0]
    assert all(0.0 <= p <= 1.0 for s, p in result["pairs"])
    prefix_calibration.plot_prefix_calibration(result, str(tmp_path / "p.png"))
    import matplotlib.image

    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.image.imread(str(tmp_path / "p.png")).shape[2] in (3, 4)  # a decodable RGB(A) image


def test_evaluate_writes_rollouts_for_calibration(tmp_path):
    from evaluate import evaluate
    from plumbing.common import load_problem_set, seed_everything

    seed_everything(0)
    problems = load_problem_set("toy_data/easy.jsonl", limit=2)
    result = evaluate("toy", problems, n=2, max_new_tokens=40, rollouts_path=str(tmp_path / "r.jsonl"))
    rows = calibrate.load_rollouts([str(tmp_path / "r.jsonl")])
    assert len(rows) == 4 and [r["id"] for r in rows] == [problems[0].id] * 2 + [problems[1].id] * 2
    assert set(rows[0]) == {"id", "question", "reference", "answer", "response", "correct", "truncated"}
    assert sum(r["correct"] for r in rows) == sum(result["correct_counts"])


def test_bootstrap_by_problem_resamples_whole_problems():
    # problem a: 100 correct rollouts judged correct; problem b: 100 correct rollouts judged incorrect. FNR = 0.5.
    # Resampling rollouts keeps it near 0.5; resampling the 2 problems gives FNR 0 (a, a), 0.5 or 1 (b, b), each
    # pair with probability >= 1/4, so the 95% interval is [0, 1].
    scores, correct, problems = [1.0] * 100 + [0.0] * 100, [True] * 200, ["a"] * 100 + ["b"] * 100
    by_rollout = bootstrap_ci(scores, correct, 200, seed=0)["fnr"]
    by_problem = bootstrap_ci(scores, correct, 200, seed=0, groups=problems)["fnr"]
    assert 0.35 < by_rollout[0] < 0.5 < by_rollout[1] < 0.65
    assert by_problem == (0.0, 1.0)
