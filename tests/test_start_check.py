"""The start check of the default toy judge (docs/toy-world.md, "The starting number and the dice"): a miscopied
start is flagged when line 1 is read and missed when it is not, at both levels; Eq. 2 on a hand-made group shows what
the blind spot of the third version (`--judge toy-v3`) did to A_1; a line reads the same in every prefix that contains
it; and toy-v3 gives byte for byte the texts the judge gave before the change (a fixture written by it)."""

import hashlib
import json
import os
import re

import pytest

from advantages import process_advantages
from analysis.miscopy import probe
from toy.llm_like_judge import THIRD_VERSION, LLMLikeJudge, build_toy_judge

# 27 *2 +34 +65 -62: path 27 -> 54 -> 88 -> 153 -> 91; the reference states 88 (after step 2) and 91 (after step 4)
QUESTION = "27 *2 +34 +65 -62"
REFERENCE = "Double, then add 34: that gives 88. Add 65, then subtract 62: that gives 91. The answer is 91."
SOLUTION = ["27*2=54###", "54+34=88###", "88+65=153###", "153-62=91###", "\\boxed{91}"]
# the start miscopied (27 -> 30), every later line consistent with it: 30 -> 60 -> 94 -> 159 -> 97
MISCOPIED = ["30*2=60###", "60+34=94###", "94+65=159###", "159-62=97###", "\\boxed{97}"]
OFF = dict(misunderstand=0, false_alarm=0, fooled=0, partial_credit=0, anchor=0)  # no error but inattention
SEE, BLIND = (1.0, 0.0, 1.0), (0.0, 0.0, 0.0)  # attention: every line checked, no line checked
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "toy_v3_judge_texts.jsonl")


def outcome(segments, attention, question=QUESTION, **knobs) -> int:
    judge = LLMLikeJudge(**{**OFF, "attention": attention, **knobs})
    return round(4 * judge.score_outcome([question], [REFERENCE], ["".join(segments)]).scores[0]) + 1


def process(segments, attention, **knobs) -> list[int]:
    judge = LLMLikeJudge(**{**OFF, "attention": attention, **knobs})
    return [round(4 * s) + 1 for s in judge.score_process([QUESTION], [REFERENCE], [segments]).scores[0]]


def test_miscopied_start_flagged_when_read_missed_when_not():
    # attention 1: line 1 starts from 30, the question's start is 27: "start", noticed. Process: every prefix holds
    # that flaw first (1, "misleading"); the full response's 97 is wrong, nothing credits it: 1. Outcome: a wrong
    # answer before any checkpoint: 1.
    assert process(MISCOPIED, SEE) == [1, 1, 1, 1, 1]
    assert outcome(MISCOPIED, SEE) == 1
    text = LLMLikeJudge(**{**OFF, "attention": SEE}).score_outcome([QUESTION], [REFERENCE], ["".join(MISCOPIED)]).texts
    assert "line 1 start" in text[0]
    # attention 0: nothing is noticed. Prefix 1: a step, no checkpoint (4); prefixes 2-4 count the checkpoints at
    # steps 2 and 4 without seeing 94 != 88 (5); the full response boxes 97, not 91: 1. Outcome: a wrong answer after
    # 2 unchecked checkpoints: 2 ("a wrong final answer after progress").
    assert process(MISCOPIED, BLIND) == [4, 5, 5, 5, 1]
    assert outcome(MISCOPIED, BLIND) == 2
    # the third version never compares the start: at attention 1 it first sees 94 != 88 at line 2
    assert process(MISCOPIED, SEE, **THIRD_VERSION) == [4, 1, 1, 1, 1]
    assert process(SOLUTION, SEE) == [4, 5, 5, 5, 5]  # a correct start is no flaw
    # with no question (an empty one) only the reference's start (27, undone from its first sentence) is compared
    assert outcome(MISCOPIED, SEE, question="") == 1


def test_miscopied_start_without_reference_answers_another_question():
    judge = LLMLikeJudge(**{**OFF, "attention": SEE, "question_check": 0, "count_check": 0})
    # 30 is not the question's 27: the response solved another problem, so its consistent 97 is judged wrong: 1
    assert judge.score_no_reference([QUESTION], ["".join(MISCOPIED)]).scores == [0.0]
    assert judge.score_no_reference([QUESTION], ["".join(SOLUTION)]).scores == [1.0]


def test_eq2_on_a_hand_made_group():
    # Normalised scores (N - 1) / 4. Eq. 2: A_1 = s_1 - s_T, A_t = s_t - s_(t-1).
    # toy-v3 at attention 1 (blind to the start):
    #   correct   [4, 5, 5, 5, 5] -> s = [0.75, 1, 1, 1, 1]: A_1 = 0.75 - 1 = -0.25, A_2 = 1 - 0.75 = +0.25, then 0
    #   miscopied [4, 1, 1, 1, 1] -> s = [0.75, 0, 0, 0, 0]: A_1 = 0.75 - 0 = +0.75, A_2 = 0 - 0.75 = -0.75, then 0
    # so the miscopied first segment is pushed up by 0.75 - (-0.25) = 1.0 more than the correct one.
    v3 = LLMLikeJudge(**{**OFF, "attention": SEE, **THIRD_VERSION})
    scores = v3.score_process([QUESTION] * 2, [REFERENCE] * 2, [SOLUTION, MISCOPIED]).scores
    advantages, keep = process_advantages(scores, [False, False], group_size=2, mode="delta")
    assert advantages == [[-0.25, 0.25, 0.0, 0.0, 0.0], [0.75, -0.75, 0.0, 0.0, 0.0]] and keep == [True, True]
    # with the start checked: miscopied [1, 1, 1, 1, 1] -> s = 0 everywhere: A_t = 0 for every segment
    fixed = LLMLikeJudge(**{**OFF, "attention": SEE})
    scores = fixed.score_process([QUESTION] * 2, [REFERENCE] * 2, [SOLUTION, MISCOPIED]).scores
    advantages, _ = process_advantages(scores, [False, False], group_size=2, mode="delta")
    assert advantages == [[-0.25, 0.25, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]


def test_the_blind_spot_on_the_128_dev_problems():
    # analysis.miscopy probe: each dev problem's solution and its start + 3 version, default dice. The numbers the
    # issue quoted for toy-v3 (s_1 >= 4 for 96.9%, mean A_1 +0.715 and A_2 -0.641 miscopied, A_1 -0.193 correct)
    old, new = probe("toy-v3", "toy:heldout"), probe("toy", "toy:heldout")
    assert old["miscopied"]["s_1 >= 4 (share)"] == 0.9688 and old["correct"]["mean A_1 = s_1 - s_T"] == -0.1934
    assert old["miscopied"]["mean A_1 = s_1 - s_T"] == 0.7148 and old["miscopied"]["mean A_2 = s_2 - s_1"] == -0.6406
    assert new["miscopied"]["s_1 >= 4 (share)"] < 0.1  # missed only when line 1 is not read (5%) or forgiven


FLAWS = re.compile(r"line (\d+) (\w+)")


def fixture_rows() -> list[dict]:
    with open(FIXTURE) as f:
        return [json.loads(line) for line in f]


def segments_of(response: str) -> list[str]:
    parts = response.split("###")
    return [s for s in [p + "###" for p in parts[:-1]] + [parts[-1]] if s]


def test_a_line_reads_the_same_in_every_prefix():
    # consistent dice (the default): the flaws noticed in prefix t are all noticed again in prefix t + 1;
    # fresh dice (toy-fresh, toy-v3) forget some of them
    rows = fixture_rows()
    forgotten = {}
    for name in ("toy", "toy-fresh"):
        judge, forgotten[name] = build_toy_judge(name), 0
        for r in rows:
            texts = judge.score_process([r["question"]], [r["reference"]], [segments_of(r["response"])]).texts[0]
            seen = [set(FLAWS.findall(t)) for t in texts[:-1]]  # the last prefix may be anchored or credited
            forgotten[name] += sum(not a <= b for a, b in zip(seen, seen[1:]))
    assert forgotten["toy"] == 0 and forgotten["toy-fresh"] > 0


def fixture_texts(judge, question: str, reference: str, response: str) -> list[str]:
    """What the fixture hashes: outcome, process (prefix and segment views), no reference (both levels)."""
    segs = segments_of(response)
    out = judge.score_outcome([question], [reference], [response]).texts
    out += judge.score_process([question], [reference], [segs]).texts[0]
    out += judge.score_process([question], [reference], [segs], view="segment").texts[0]
    out += judge.score_no_reference([question], [response], "outcome").texts
    return out + judge.score_no_reference([question], [response], "process").texts


@pytest.mark.parametrize("error_rate", [0.0, 0.5])
def test_toy_v3_is_the_judge_before_the_start_check(error_rate):
    # tests/fixtures/toy_v3_judge_texts.jsonl was written by `--judge toy` at commit c3427c1, before the start check:
    # 532 rollouts (sampled Stage-I responses of the committed reproduction, every 4th; the solution, a start + 3
    # and a start-digit miscopy of 64 dev problems), the sha256 of every judge text above per rollout
    key = f"sha256_error_rate_{error_rate:g}"
    rows = [r for r in fixture_rows() if key in r]
    judge = build_toy_judge("toy-v3", error_rate)
    digests = [
        hashlib.sha256("\n\x00".join(fixture_texts(judge, r["question"], r["reference"], r["response"])).encode())
        for r in rows
    ]
    assert len(rows) > 150 and [d.hexdigest() for d in digests] == [r[key] for r in rows]
