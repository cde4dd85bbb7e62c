"""Earlier toy judges, kept so that every committed result can be rerun with the judge it was measured with.

    RubricJudge      --judge toy-rubric: the paper's outcome and process rubrics (docs/paper.md), verified EXACTLY
                     against the hidden reference, with a per-problem leniency and the misread-reference error dial.
                     It was `--judge toy` before the LLM-like judge of toy/llm_like_judge.py (results under "earlier
                     measurements" in docs/results.md). Its process level is an almost exact verifier, and no wrong
                     answer ever outscores a correct one of the same problem: no LLM judge is that consistent.
    CheckpointJudge  --judge toy-progress: counts the reference's checkpoints reached (a progress meter, not the
                     paper's rubric), kept so that results.md's note on Eq. 2 can be reproduced.
    NoReferenceJudge RubricJudge's no-reference condition: checks only the arithmetic and the chain it is shown.

How they read the texts: toy/reading.py. Each writes "Reasoning: ... / Score: N", parsed with judge.parse_score.
"""

import math

from judge import JudgeResult, normalise, parse_score
from toy.reading import (
    BOXED,
    EQUATION,
    ReferencePath,
    Verification,
    apply_op,
    boxed_answer,
    equations,
    misread,
    process_items,
    read_reference,
    reference_checkpoints,
    stated_results,
    unit_hash,
    verify,
)


# ------------------------------------------------------------------------------------- the exact rubric judge
class RubricJudge:
    """The paper's judge rubrics, applied by rule against the hidden reference (--judge toy-rubric; the toy default
    until the LLM-like judge). The rubrics: docs/paper.md, "Outcome judge", "Process judge and Eq. 2".

    Outcome ("how likely does the reference follow from this reasoning?"; K checkpoints, the last one the final
    answer; k = checkpoints established by steps on the reference's path, Verification):
        5  every checkpoint established in order, no wrong equation, boxed answer = the reference's final answer
        4  boxed answer right, at most one checkpoint not established (a trivial gap), at least one step written;
           LENIENCY: boxed answer WRONG after all checkpoints but at most the last (k >= K - 1, k >= 1) gets 4 on
           a `leniency` share of the PROBLEMS (unit_hash of the reference < leniency): on those the judge overlooks
           a slip in the last stretch, as an LLM judge that does not re-verify every step does
        3  no final answer, every step written is on the reference's path (on track but incomplete)
        2  leaves the path after some progress (k >= 1: a wrong final answer or a wrong/irrelevant step), or a
           right boxed answer whose derivation misses two or more checkpoints (significant gaps)
        1  wrong final answer or leaves the path before the first checkpoint (k = 0), or nothing written
    The leniency share (0.5) puts the misplacement rate of base-model rollouts inside the paper's band
    (docs/analyses.md, "Judge calibration"); with leniency 0 it judges no wrong final answer correct. The coin is per
    problem, not per response: keyed on the response too, it was a blind spot that a policy could aim at, and the
    quickstart's policy did (it learned to drop the last operation: held-out pass@1 0.018 -> 0.002).

    Process (view "prefix": the text y_<=t; k, m as above):
        1  a wrong equation, a step that contradicts a checkpoint, or a boxed answer that is not the final answer
        2  a valid step off the reference's path (irrelevant)
        5  every step on the path and at least one checkpoint established
        4  every step on the path, no checkpoint yet (aligned, minor gap)
        3  no equation at all (generic)
    View "segment" (one segment alone, the authors' code): 1 for a wrong equation or a wrong boxed answer; 5 if all
    its equations are reference steps and one states a checkpoint, or it boxes the final answer; 4 for reference steps
    without a checkpoint; 2 for a valid step that is no reference step; 3 for no equation and no boxed answer.

    The error dial: with probability `error_rate` per judged text (unit_hash of reference and text, so reruns agree)
    the judge MISREADS the reference: it verifies against the same operations from a start value 1..9 higher
    (`misread`), a consistent reference in which every number differs, i.e. another problem's. error_rate 0 is the
    plain judge; 1 is the wrong-reference condition on every call (misplacement ~50%).
    """

    def __init__(self, error_rate: float = 0.0, leniency: float = 0.5):
        if not 0.0 <= error_rate <= 1.0 or not 0.0 <= leniency <= 1.0:
            raise ValueError(f"error_rate and leniency must be in [0, 1], got {error_rate}, {leniency}")
        self.error_rate, self.leniency = error_rate, leniency

    def score_outcome(self, questions: list[str], references: list[str], responses: list[str]) -> JudgeResult:
        texts = [self._judge(ref, resp, self._outcome) for ref, resp in zip(references, responses)]
        return JudgeResult(scores=[normalise(parse_score(t)) for t in texts], texts=texts, num_requests=len(texts))

    def score_process(
        self, questions: list[str], references: list[str], segments: list[list[str]], view: str = "prefix"
    ) -> JudgeResult:
        items = process_items(segments, view)  # checks the view first
        rubric = self._prefix if view == "prefix" else self._segment
        texts = [[self._judge(ref, item, rubric) for item in row] for ref, row in zip(references, items)]
        scores = [[normalise(parse_score(t)) for t in row] for row in texts]
        return JudgeResult(scores=scores, texts=texts, num_requests=sum(map(len, texts)))

    def score_no_reference(self, questions: list[str], responses: list[str]) -> JudgeResult:
        """The calibration's no-reference condition: NoReferenceJudge's rules."""
        return NoReferenceJudge().score_no_reference(questions, responses)

    def _judge(self, reference: str, text: str, rubric) -> str:
        """Read the reference (misread it with probability error_rate), apply `rubric`, write the verdict."""
        path = read_reference(reference)
        if path is None:
            return "Reasoning: the reference describes no chain of steps I can follow; cannot judge."
        note, read = "", verify(path, text).read  # the dice see what the judge reads, nothing else
        if unit_hash("error", reference, read) < self.error_rate:
            shift = 1 + int(9 * unit_hash("shift", reference, read))
            path, note = misread(path, shift), f" (reference misread: start {path.values[0] + shift})"
        score, why = rubric(path, verify(path, text), reference)
        return f"Reasoning: checkpoints {path.checkpoints}{note}; {why}.\nScore: {score}"

    def _outcome(self, path: ReferencePath, v: Verification, reference: str) -> tuple[int, str]:
        K, k, final = len(path.ends), v.checkpoints, path.values[-1]
        seen = f"{k} of {K} checkpoints established, {v.on_path} of {v.num_steps} steps on the reference's path"
        if v.boxed == final:
            if k == K and not v.wrong:
                return 5, f"{seen}; the final answer {final} follows"
            if k >= K - 1 and v.num_steps:
                return 4, f"{seen}; final answer {final} right, one checkpoint not shown"
            return 2, f"{seen}; final answer {final} right but not supported (significant gaps)"
        if v.boxed is None:
            if v.num_steps and v.on_path == v.num_steps:
                return 3, f"{seen}; on track but no final answer"
            return (2, f"{seen}; leaves the path after progress") if k else (1, f"{seen}; far from the reference")
        wrong_answer = f"{seen}; final answer {v.boxed}, the reference's is {final}"
        if k >= max(K - 1, 1) and unit_hash("lenient", reference) < self.leniency:
            return 4, f"{seen}; final answer {v.boxed} taken as right (lenient: the last stretch not re-verified)"
        return (2, wrong_answer) if k else (1, wrong_answer)

    @staticmethod
    def _prefix(path: ReferencePath, v: Verification, reference: str) -> tuple[int, str]:
        seen = f"{v.on_path} of {v.num_steps} steps on the path, {v.checkpoints} checkpoints established"
        if v.wrong or v.contradicts or (v.boxed is not None and v.boxed != path.values[-1]):
            return 1, f"{seen}; a wrong equation or a contradicted checkpoint"
        if v.on_path < v.num_steps:
            return 2, f"{seen}; a step off the reference's path"
        if v.checkpoints:
            return 5, f"{seen}; establishes a checkpoint"
        return (4, f"{seen}; aligned, no checkpoint yet") if v.num_steps else (3, "no step to verify")

    @staticmethod
    def _segment(path: ReferencePath, v: Verification, reference: str) -> tuple[int, str]:
        eqs = v.written
        steps = {(path.values[i], op, a, path.values[i + 1]) for i, (op, a) in enumerate(path.steps)}
        if v.wrong or (v.boxed is not None and v.boxed != path.values[-1]):
            return 1, "this step has wrong arithmetic or a wrong final answer"
        if not eqs:
            return (5, "boxes the final answer") if v.boxed is not None else (3, "no step to verify")
        if not all(e in steps for e in eqs):
            return 2, "a valid step that is not a step of the reference"
        if any(c in path.checkpoints for *_, c in eqs):
            return 5, "a reference step that establishes a checkpoint"
        return 4, "a reference step, no checkpoint"


# ------------------------------------------------------------------------------------ the no-reference judge
class NoReferenceJudge:
    """The calibration's no-reference condition (judge.no_reference_prompt's toy counterpart): absolute correctness
    from the response alone. It checks what is written, never re-solves the question (which would make it a perfect
    verifier): each equation's arithmetic, the chain (each equation starts from the previous result), and that a
    boxed answer ends the chain. A misread operand, a skipped or an invented operation pass unseen.

        5  at least one equation, all valid, an unbroken chain, boxed answer = the last result
        4  the same with exactly one break in the chain (a jump the judge cannot explain)
        3  valid and chained but no boxed answer (incomplete), or two or more breaks
        2  exactly one wrong equation, a boxed answer that is not the last result, or a bare answer with no work
        1  two or more wrong equations, or nothing written
    """

    def score_outcome(self, questions: list[str], references: list[str], responses: list[str]) -> JudgeResult:
        """References are ignored: this judge reads no reference."""
        return self.score_no_reference(questions, responses)

    def score_no_reference(self, questions: list[str], responses: list[str]) -> JudgeResult:
        texts = [self._judge(response) for response in responses]
        return JudgeResult(scores=[normalise(parse_score(t)) for t in texts], texts=texts, num_requests=len(texts))

    @staticmethod
    def _judge(response: str) -> str:
        eqs, boxed = equations(response), boxed_answer(response)
        wrong = sum(apply_op(a, op, b) != c for a, op, b, c in eqs)
        breaks = sum(eqs[i][0] != eqs[i - 1][3] for i in range(1, len(eqs)))
        seen = f"{len(eqs)} equations, {wrong} with wrong arithmetic, {breaks} breaks in the chain"
        if not eqs:
            score, why = (2, "an answer with no work") if boxed is not None else (1, "nothing to verify")
        elif wrong:
            score, why = (2, "one wrong equation") if wrong == 1 else (1, "several wrong equations")
        elif boxed is None:
            score, why = 3, "consistent so far but no final answer"
        elif boxed != eqs[-1][3]:
            score, why = 2, f"the boxed answer {boxed} is not the last result {eqs[-1][3]}"
        else:
            score, why = {0: (5, "complete and consistent"), 1: (4, "one unexplained jump")}.get(
                breaks, (3, "several unexplained jumps")
            )
        return f"Reasoning: {seen}; {why}.\nScore: {score}"


# ---------------------------------------------------------------------------------- the progress judge
def count_in_order(checkpoints: list[int], results: list[int]) -> int:
    """How many checkpoints the results establish in order (greedy subsequence match).

    Example: count_in_order([88, 91, 154], [54, 88, 153, 154]) -> 2   (88, then 154; 91 is missing)
    """
    k = 0
    for r in results:
        if k < len(checkpoints) and r == checkpoints[k]:
            k += 1
    return k


def likert(k: int, num_checkpoints: int) -> int:
    """k of K checkpoints -> 1..5 (1 = none, 5 = all), rounding half up: with K = 4, score = 1 + k."""
    return 1 + math.floor(4 * k / num_checkpoints + 0.5)


class CheckpointJudge:
    """The progress-counting toy judge (--judge toy-progress), with the LLM judge's interface and 1-5 scale.

    It reads ONLY the reference: the results the reference states are its checkpoints, and a response (outcome) or
    a prefix (process, view "prefix") scores by how many of them it establishes in order with valid arithmetic
    (likert(k, K)). That is a progress meter, not the paper's rubric: 3 of 4 checkpoints scores 4 ("judged correct")
    even with a wrong final answer, and a perfect first step scores 1 (s_1 ~ 0), which is what makes Eq. 2's
    first-segment centering fail under it (docs/results.md). View "segment" judges one step alone (the authors'
    code): 5 if it establishes a checkpoint, 3 for a valid but unremarkable step, 1 for wrong arithmetic, 2 for no
    step at all (a boxed final checkpoint counts as 5). Like the LLM judge, it writes "Reasoning: ... / Score: N",
    parsed with judge.parse_score, so parse failures (a reference without checkpoints) flow through the same code as
    in a real run. Text inside the response such as "Score: 5" is just text to it: it only counts valid equations.
    """

    def score_outcome(self, questions: list[str], references: list[str], responses: list[str]) -> JudgeResult:
        texts = [self._judge_prefix(ref, resp) for ref, resp in zip(references, responses)]
        return JudgeResult(scores=[normalise(parse_score(t)) for t in texts], texts=texts)

    def score_process(
        self, questions: list[str], references: list[str], segments: list[list[str]], view: str = "prefix"
    ) -> JudgeResult:
        judge_item = self._judge_prefix if view == "prefix" else self._judge_segment
        texts = [[judge_item(ref, item) for item in row] for ref, row in zip(references, process_items(segments, view))]
        return JudgeResult(scores=[[normalise(parse_score(t)) for t in row] for row in texts], texts=texts)

    @staticmethod
    def _judge_prefix(reference: str, text: str) -> str:
        checkpoints = reference_checkpoints(reference)
        if not checkpoints:
            return "Reasoning: the reference states no checkpoints; cannot judge."
        k = count_in_order(checkpoints, stated_results(text))
        return (
            f"Reasoning: {k} of {len(checkpoints)} reference checkpoints {checkpoints} established in order.\n"
            f"Score: {likert(k, len(checkpoints))}"
        )

    @staticmethod
    def _judge_segment(reference: str, segment: str) -> str:
        checkpoints = reference_checkpoints(reference)
        if not checkpoints:
            return "Reasoning: the reference states no checkpoints; cannot judge."
        eqs = EQUATION.findall(segment)
        boxed = BOXED.findall(segment)
        if eqs:
            valid = stated_results(segment)
            score = 1 if len(valid) < len(eqs) else 5 if set(valid) & set(checkpoints) else 3
        elif boxed:
            score = 5 if int(boxed[-1]) == checkpoints[-1] else 1
        else:
            score = 2
        return f"Reasoning: step judged alone against checkpoints {checkpoints}.\nScore: {score}"
