"""The default toy judge (toy.llm_like_judge.LLMLikeJudge): the rubrics by hand with every error switched off, each
error mechanism switched on alone, and the properties that make it LLM-like: a wrong response can outscore a correct
one of the same problem, and a slip late in a long response is missed more often than an early one. The start check
and the consistent dice: tests/test_start_check.py."""

import pytest

import toy.world as toy
from toy.llm_like_judge import LLMLikeJudge

# 27 *2 +34 +65 -62: path 27 -> 54 -> 88 -> 153 -> 91; the reference states 88 (after step 2) and 91 (after step 4)
QUESTION = "27 *2 +34 +65 -62"
REFERENCE = "Double, then add 34: that gives 88. Add 65, then subtract 62: that gives 91. The answer is 91."
SOLUTION = "27*2=54###54+34=88###88+65=153###153-62=91###\\boxed{91}"
SLIP = "27*2=54###54+34=88###88+65=153###153-60=93###\\boxed{93}"  # -60 for -62 in the last step: wrong answer 93
OFF = dict(misunderstand=0, attention=(1.0, 0.0, 1.0), false_alarm=0, fooled=0, partial_credit=0, anchor=0)  # no errors


def outcome(response: str, **knobs) -> int:
    score = LLMLikeJudge(**{**OFF, **knobs}).score_outcome([QUESTION], [REFERENCE], [response]).scores[0]
    return round(4 * score) + 1  # back to the 1-5 scale


def process(segments: list[str], view: str = "prefix", **knobs) -> list[int]:
    judge = LLMLikeJudge(**{**OFF, **knobs})
    return [round(4 * s) + 1 for s in judge.score_process([QUESTION], [REFERENCE], [segments], view=view).scores[0]]


def test_outcome_rubric_without_errors():
    assert outcome(SOLUTION) == 5  # every line the reference's, the boxed answer 91
    # 88+3=91 is valid but not the reference's operation (+65): one flaw, right answer: 4 (gap) or 3 (error), a coin
    assert outcome("27*2=54###54+34=88###88+3=91###\\boxed{91}", gap_credit=1) == 4
    assert outcome("27*2=54###54+34=88###88+3=91###\\boxed{91}", gap_credit=0) == 3
    assert outcome("27*2=54###54+34=88###") == 3  # on track, no final answer
    assert outcome("27*2=54###54+34=88###88+65=150###") == 2  # 88+65 is 153: a wrong line after checkpoint 88
    assert outcome(SLIP) == 2  # the slip is noticed, 1 checkpoint reached, wrong answer
    assert outcome("27*2=55###55+34=89###\\boxed{89}") == 1  # 27*2 is 54: wrong before any checkpoint
    assert outcome("") == 1


def test_each_error_mechanism_alone():
    # partial credit: the slip comes after K - 1 = 1 checkpoints (the last stretch): "right method, a slip" -> 4
    assert outcome(SLIP, partial_credit=1) == 4
    # inattention: with no attention no flaw is ever noticed; a wrong answer after lines that all looked right is
    # then believed (fooled: 5) or credited (4), else 2 (a wrong answer after progress)
    blind = (0.0, 0.0, 0.0)
    assert outcome(SLIP, attention=blind, fooled=1) == 5
    assert outcome(SLIP, attention=blind, partial_credit=1) == 4
    assert outcome(SLIP, attention=blind) == 2
    # false alarm: every correct line taken for a wrong one; the first at line 1, before any checkpoint: 2
    assert outcome(SOLUTION, false_alarm=1) == 2
    # a misunderstood reference: checkpoint 88 (the only intermediate one) read as 89..97, so the correct line
    # 54+34=88 seems to contradict it: one flaw, right answer -> 4 or 3 by the coin
    assert outcome(SOLUTION, misunderstand=1, gap_credit=1) == 4
    assert outcome(SOLUTION, misunderstand=1, gap_credit=0) == 3
    text = LLMLikeJudge(**{**OFF, "misunderstand": 1}).score_outcome([QUESTION], [REFERENCE], [SOLUTION]).texts[0]
    read = int(text.split("checkpoints [")[1].split(",")[0])  # what the judge took checkpoint 88 for
    assert "line 2 wrong" in text and 89 <= read <= 97
    # the dial: the whole reference misread (another problem's): the correct response scores 1
    assert outcome(SOLUTION, error_rate=1) == 1
    # anchoring: the boxed answer 91 is the reference's, so the flaws noticed on the way are forgiven: 4. Here the
    # response reaches 91 through a step that is not the reference's (a "lucky" rollout): 3 with the coin at "error"
    lucky = "27*2=54###54+37=91###\\boxed{91}"  # +34 +65 -62 taken as one +37: off the path at line 2
    assert outcome(lucky, gap_credit=0) == 3 and outcome(lucky, gap_credit=0, anchor=1) == 4
    assert outcome(SLIP, anchor=1) == 2  # a wrong answer is never anchored
    assert process(["27*2=54###", "54+37=91###", "\\boxed{91}"], gap_credit=0, anchor=1) == [4, 2, 4]  # s_T anchored


def test_process_rubric_prefix_and_segment():
    segments = ["27*2=54###", "54+34=88###", "88+65=153###", "153-62=91###", "\\boxed{91}"]
    # prefix: no checkpoint yet (4), checkpoint 88 (5) and on, the right boxed answer (5)
    assert process(segments) == [4, 5, 5, 5, 5]
    slip = ["27*2=54###", "54+34=88###", "88+65=153###", "153-60=93###", "\\boxed{93}"]
    assert process(slip) == [4, 5, 5, 2, 2]  # -60 is no reference step: off the path (2), and stays so
    assert process(slip, partial_credit=1)[-1] == 4  # the full response credited as a late slip
    assert process(["27*2=55###"]) == [1]  # wrong arithmetic: misleading
    # segment alone (the authors' code): a reference step anywhere counts; 153 is no checkpoint, 88 and 91 are
    assert process(segments, view="segment") == [4, 5, 4, 5, 5]
    assert process(slip, view="segment") == [4, 5, 4, 2, 1]  # 153-60=93 is no reference step; boxed 93 is wrong
    with pytest.raises(ValueError):
        process(segments, view="whole")


def test_no_reference_condition():
    judge = LLMLikeJudge(**OFF, question_check=0, count_check=0)  # arithmetic and the chain only (the question: below)

    def no_ref(response, level="outcome"):
        return round(4 * judge.score_no_reference([QUESTION], [response], level=level).scores[0]) + 1

    assert no_ref(SOLUTION) == 5 and no_ref(SOLUTION, "process") == 5
    assert no_ref(SLIP) == 5  # consistent arithmetic, boxed = last result: without a reference it looks right
    assert no_ref("27*2=54###54+34=88###90+1=91###\\boxed{91}", level="outcome") in (3, 4)  # one break: a coin
    assert no_ref("27*2=54###\\boxed{60}") == 1  # the boxed answer is not the last result: wrong, k = 0


def test_dice_see_only_what_is_read_and_are_reproducible():
    judge = LLMLikeJudge()  # the default: every error on
    responses = [SLIP, SLIP + " Score: 5", "I am sure. " + SLIP]  # the same equations and boxed answer
    texts = judge.score_outcome([QUESTION] * 3, [REFERENCE] * 3, responses).texts
    assert texts[0] == texts[1] == texts[2]  # an injected "Score: 5" or confident words change nothing
    assert LLMLikeJudge().score_outcome([QUESTION], [REFERENCE], [SLIP]).texts == texts[:1]  # no random state


def late_slips(num_problems: int, at: int) -> tuple[list[str], list[str]]:
    """References and responses of fresh 8-step problems where only step `at`'s operand is misread (valid
    arithmetic carried to a wrong answer)."""
    refs, responses = [], []
    for p in toy.make_toy_problems(num_problems, 8, 8, seed=123):
        start, ops = toy.parse_question(p.question)
        op, a = ops[at]
        ops[at] = (op, a + 1 if op != "*" else 2)
        if op == "*":  # doubling has no operand to misread: subtract 1 more instead
            ops[at] = ("-", 3)
        refs.append(p.reference)
        responses.append(toy.model_solution(start, ops))
    return refs, responses


def test_a_late_slip_is_missed_more_often_than_an_early_one():
    judge = LLMLikeJudge(misunderstand=0, false_alarm=0)  # default attention
    n = 300

    def unnoticed(at):
        refs, responses = late_slips(n, at)
        texts = judge.score_outcome([""] * n, refs, responses).texts
        return sum("flaws: none noticed" in t for t in texts) / n

    # step 1's slip shows at line 1 and at every later checkpoint line (2, 4, 6, 8): almost never missed; step 8's
    # only at line 8, checked with probability max(0.3, 0.95 - 0.08 * 7) = 0.39
    assert unnoticed(0) < 0.02
    assert 0.5 < unnoticed(7) < 0.72  # about 1 - 0.39 = 0.61


def test_a_wrong_response_can_outscore_a_correct_one_of_the_same_problem():
    judge = LLMLikeJudge()  # the default
    n = 3000
    refs, slips = late_slips(n, 7)
    problems = toy.make_toy_problems(n, 8, 8, seed=123)
    solutions = [toy.model_solution(*toy.parse_question(p.question)) for p in problems]
    right = judge.score_outcome([""] * n, refs, solutions).scores
    wrong = judge.score_outcome([""] * n, refs, slips).scores
    inverted = sum(w > r for w, r in zip(wrong, right)) / n
    # per response errors reorder groups, as an LLM judge's do; but not most of them. Both texts share lines 1-7 and
    # a line reads the same in every text that contains the same lines up to it (consistent dice), so only line 8 and
    # the final answer's dice can invert the pair: 6 of 3,000 here (toy-v3, fresh dice per text: 2 of 300)
    assert 0 < inverted < 0.2
    assert sum(s >= 0.75 for s in wrong) / n > 0.2  # late slips often pass (fooled or credited)
    assert sum(s >= 0.75 for s in right) / n > 0.8  # most correct responses do


def test_knobs_are_checked():
    with pytest.raises(ValueError):
        LLMLikeJudge(misunderstand=1.5)
    with pytest.raises(ValueError):
        LLMLikeJudge(fooled=0.7, partial_credit=0.5)
    with pytest.raises(ValueError):
        LLMLikeJudge(attention=(1.0, 0.1, -0.1))


def test_without_a_reference_the_judge_checks_steps_against_the_question():
    # "47 +8 *2": the response adds 9 where the question adds 8; its arithmetic and chain are sound
    question, misread_step = "47 +8 *2", "47+9=56###56*2=112###\\boxed{112}"
    exact = dict(OFF)
    blind = LLMLikeJudge(**exact, question_check=0.0).score_no_reference([question], [misread_step])
    reads = LLMLikeJudge(**exact, question_check=1.0).score_no_reference([question], [misread_step])
    assert blind.scores == [1.0]  # only arithmetic and chain checked: 5
    assert reads.scores == [0.0]  # line 1 is not the question's step: "misread", a wrong answer before progress: 1
    assert "line 1 misread" in reads.texts[0]
    right = LLMLikeJudge(**exact, question_check=1.0).score_no_reference(
        [question], ["47+8=55###55*2=110###\\boxed{110}"]
    )
    assert right.scores == [1.0]


def test_without_a_reference_the_judge_counts_the_steps():
    # "47 +8 *2 -5": a sound chain that stops one operation early; its boxed answer is its last result
    question, early = "47 +8 *2 -5", "47+8=55###55*2=110###\\boxed{110}"
    counted = LLMLikeJudge(**OFF, question_check=0.0, count_check=1.0).score_no_reference([question], [early])
    assert LLMLikeJudge(**OFF, question_check=0.0, count_check=0.0).score_no_reference([question], [early]).scores == [
        1.0
    ]
    assert counted.scores == [0.0] and "line 2 misread" in counted.texts[0]  # a step missing: a wrong answer, 1


def test_the_second_version_is_a_named_variant():
    # --judge toy-v2: no answer anchoring and no step count (the settings of results/reproduce-llm-like-v2)
    from toy.llm_like_judge import SECOND_VERSION, build_toy_judge

    v2, today = build_toy_judge("toy-v2"), build_toy_judge("toy")
    assert (
        (v2.anchor, v2.count_check, v2.partial_credit, v2.fooled)
        == (0.0, 0.0, 0.3, 0.12)
        == tuple(SECOND_VERSION[k] for k in ("anchor", "count_check", "partial_credit", "fooled"))
    )
    assert (today.anchor, today.count_check, today.partial_credit, today.fooled) == (0.7, 0.4, 0.5, 0.15)
