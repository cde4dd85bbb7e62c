"""The toy world's judges: rule-based stand-ins for the LLM judge (judge.py), with its interface and 1-5 scale.

    RubricJudge      --judge toy (the default): the paper's outcome and process rubrics, verified against the hidden
                     reference, with a documented leniency and an error dial (`error_rate`);
    CheckpointJudge  --judge toy-progress: counts the reference's checkpoints reached (a progress meter, not the
                     paper's rubric), kept so that results.md's note on Eq. 2 can be reproduced;
    NoReferenceJudge the calibration's no-reference condition: checks only the arithmetic and the chain it is shown.

What a judge reads. The reference is prose that names each operation and states a result every second one; the
judge recovers the whole reference path from it (the start by undoing the first sentence from its stated result):

    reference: "Add 8, then double: that gives 110. Subtract 5, then add 3: that gives 108. The answer is 108."
    -> steps [+8, *2, -5, +3], checkpoints [110, 108] after steps 2 and 4, path [47, 55, 110, 105, 108]

The response is read for its equations and its last \\boxed{} answer. Nothing else in either text is read: the gold
answer field is never seen (the reference's last checkpoint is its final answer), and text such as "Score: 5" inside
a response is inert (no judge quotes the response in its own output). Each judge writes "Reasoning: ... / Score: N",
parsed with judge.parse_score, so a reference it cannot read is a parse failure, as in a real run.
"""

import hashlib
import math
import re
from dataclasses import dataclass

from judge import JudgeResult, normalise, parse_score

EQUATION = re.compile(r"(\d+)([+\-*])(\d+)=(\d+)")
BOXED = re.compile(r"\\boxed\{(\d+)\}")
CHECKPOINT = re.compile(r"that gives (\d+)")
SENTENCE = re.compile(r"([^.:]*): that gives (\d+)")  # the words of one reference sentence, and its stated result
STEP_WORDS = re.compile(r"\b(add|subtract) (\d+)|\b(double)\b", re.IGNORECASE)
TOY_JUDGES = ("toy", "toy-progress")  # the --judge names that select a toy judge (no model, no server)


def apply_op(value: int, op: str, operand: int) -> int:
    """One step of the toy task: value op operand (ops +, -, *)."""
    return {"+": value + operand, "-": value - operand, "*": value * operand}[op]


def unit_hash(*texts: str) -> float:
    """A number in [0, 1) fixed by the texts (sha256; Python's hash() changes between runs): the judges' dice.

    Example:
        >>> unit_hash("a", "b") == unit_hash("a", "b") != unit_hash("a", "c")
        True
    """
    digest = hashlib.sha256("\x00".join(texts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def build_toy_judge(name: str, error_rate: float = 0.0):
    """'toy' -> RubricJudge(error_rate); 'toy-progress' -> CheckpointJudge (which has no error dial)."""
    if name == "toy":
        return RubricJudge(error_rate=error_rate)
    if name == "toy-progress":
        if error_rate:
            raise ValueError("error_rate applies to the 'toy' judge only")
        return CheckpointJudge()
    raise ValueError(f"toy judge must be one of {TOY_JUDGES}, got {name!r}")


# ----------------------------------------------------------------------------------------- reading the texts
def reference_checkpoints(reference: str) -> list[int]:
    """The intermediate results a reference states ("... that gives 88."), in order; the last is its final answer."""
    return [int(v) for v in CHECKPOINT.findall(reference)]


def stated_results(text: str) -> list[int]:
    """Results of the arithmetically VALID equations in a text, in order (a wrong equation establishes nothing)."""
    return [int(c) for a, op, b, c in EQUATION.findall(text) if apply_op(int(a), op, int(b)) == int(c)]


def equations(text: str) -> list[tuple[int, str, int, int]]:
    """Every equation "a op b = c" written in a text, valid or not: [(a, op, b, c)]."""
    return [(int(a), op, int(b), int(c)) for a, op, b, c in EQUATION.findall(text)]


def boxed_answer(text: str) -> int | None:
    """The last \\boxed{} number of a text, or None."""
    found = BOXED.findall(text)
    return int(found[-1]) if found else None


@dataclass
class ReferencePath:
    """The solution a reference describes: values[0] is the start, values[i] the result of steps[i - 1];
    checkpoint j is stated after step ends[j] (1-based), so checkpoints = [values[e] for e in ends]."""

    values: list[int]
    steps: list[tuple[str, int]]
    ends: list[int]

    @property
    def checkpoints(self) -> list[int]:
        return [self.values[e] for e in self.ends]


def read_reference(reference: str) -> ReferencePath | None:
    """The reference's path (see the module docstring), or None when its sentences do not describe one consistent
    chain (no "that gives N", a sentence without an operation, a result its operations cannot reach).

    Example:
        >>> read_reference("Add 8, then double: that gives 110. Subtract 5, then add 3: that gives 108.")
        ReferencePath(values=[47, 55, 110, 105, 108], steps=[('+', 8), ('*', 2), ('-', 5), ('+', 3)], ends=[2, 4])
    """
    steps, ends, stated = [], [], []
    for words, result in SENTENCE.findall(reference):
        before = len(steps)
        for verb, operand, double in STEP_WORDS.findall(words):
            steps.append(("*", 2) if double else ("+" if verb.lower() == "add" else "-", int(operand)))
        if len(steps) == before:
            return None
        ends.append(len(steps))
        stated.append(int(result))
    if not ends:
        return None
    start = stated[0]  # undo the first sentence's operations from its stated result
    for op, operand in reversed(steps[: ends[0]]):
        if op == "*" and start % 2:
            return None
        start = {"+": start - operand, "-": start + operand, "*": start // 2}[op]
    values = [start]
    for op, operand in steps:
        values.append(apply_op(values[-1], op, operand))
    path = ReferencePath(values, steps, ends)
    return path if path.checkpoints == stated else None


def misread(path: ReferencePath, shift: int) -> ReferencePath:
    """The same operations from a start `shift` higher: a consistent reference in which every value differs (each
    step carries the shift, doubling doubles it), i.e. the reference of another problem."""
    values = [path.values[0] + shift]
    for op, operand in path.steps:
        values.append(apply_op(values[-1], op, operand))
    return ReferencePath(values, path.steps, path.ends)


@dataclass
class Verification:
    """A text checked step by step against a reference path (equations in order; step i is the i-th equation).

    on_path:      the first `on_path` equations are exactly the reference's steps 1..on_path (operands and results);
    checkpoints:  checkpoints established by those steps, k (in order, valid arithmetic by construction);
    wrong:        equations with wrong arithmetic, anywhere in the text;
    contradicts:  some equation states a result at a checkpoint's step that is not that checkpoint;
    written:      the equations [(a, op, b, c)], m = len(written);  boxed: the last \\boxed{} number or None.
    read:         both as one string: all the judge reads of the text. Its dice use it, so text around them (an
                  injected "Score: 5", say) changes nothing.
    """

    written: list[tuple[int, str, int, int]]
    on_path: int
    checkpoints: int
    wrong: int
    contradicts: bool
    boxed: int | None

    @property
    def num_steps(self) -> int:
        return len(self.written)

    @property
    def read(self) -> str:
        return f"{self.written} {self.boxed}"


def verify(path: ReferencePath, text: str) -> Verification:
    """Check `text` against `path`: see Verification.

    Example (reference path [47, 55, 110, 105, 108], checkpoints 110 and 108 after steps 2 and 4):
        >>> path = read_reference("Add 8, then double: that gives 110. Subtract 5, then add 3: that gives 108.")
        >>> v = verify(path, "47+8=55###55*2=110###110+5=115###115+3=118###\\\\boxed{118}")
        >>> v.on_path, v.checkpoints, v.wrong, v.contradicts, v.boxed  # step 3 adds 5 where the reference subtracts
        (2, 1, 0, True, 118)
    """
    eqs = equations(text)
    on_path = 0
    while on_path < min(len(eqs), len(path.steps)):
        op, operand = path.steps[on_path]
        if eqs[on_path] != (path.values[on_path], op, operand, path.values[on_path + 1]):
            break
        on_path += 1
    return Verification(
        written=eqs,
        on_path=on_path,
        checkpoints=sum(e <= on_path for e in path.ends),
        wrong=sum(apply_op(a, op, b) != c for a, op, b, c in eqs),
        contradicts=any(e <= len(eqs) and eqs[e - 1][3] != path.values[e] for e in path.ends),
        boxed=boxed_answer(text),
    )


# ------------------------------------------------------------------------------------- the faithful judge
class RubricJudge:
    """The paper's judge rubrics, applied by rule against the hidden reference (the toy default, --judge toy).

    The rubrics: docs/paper.md, "Outcome judge", "Process judge and Eq. 2".

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
        if view not in ("prefix", "segment"):
            raise ValueError(f"view must be 'prefix' or 'segment', got {view!r}")
        rubric = self._prefix if view == "prefix" else self._segment
        texts = []
        for ref, segs in zip(references, segments):
            items = ["".join(segs[: t + 1]) for t in range(len(segs))] if view == "prefix" else segs
            texts.append([self._judge(ref, item, rubric) for item in items])
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
        if view not in ("prefix", "segment"):
            raise ValueError(f"view must be 'prefix' or 'segment', got {view!r}")
        texts = []
        for ref, segs in zip(references, segments):
            if view == "prefix":
                texts.append([self._judge_prefix(ref, "".join(segs[: t + 1])) for t in range(len(segs))])
            else:
                texts.append([self._judge_segment(ref, seg) for seg in segs])
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
