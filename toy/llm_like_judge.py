"""The toy world's default judge: a rule-based stand-in for the LLM judge (judge.py) that errs like one.

    LLMLikeJudge  --judge toy (the default): the paper's outcome and process rubrics (docs/paper.md, "Outcome judge",
                  "Process judge and Eq. 2") applied to what an inattentive reader of the response perceives.

Its third version (--judge toy-v3: no start check, fresh dice per judged text; the judge of
results/reproduce-toy-v3) and second version (--judge toy-v2) are this class with THIRD_VERSION / SECOND_VERSION;
--judge toy-fresh is today's with the third version's fresh dice (an ablation). Earlier judges (--judge toy-rubric,
the exact verifier that was the default before; --judge toy-progress, the checkpoint counter) are in
toy/exact_judges.py; how every toy judge reads a text is in toy/reading.py.

Why not an exact verifier? A real judge (the paper's Qwen3-4B) misplaces 17.8% of rollouts with the reference, 39.2%
without it and 50.4% with a wrong one (docs/paper.md, "Judge calibration"), and its errors are per response: in a GRPO
group a wrong rollout sometimes outscores a correct one. A toy judge whose only error is per problem never reorders a
group, and what ExpRL shows with it is an upper bound. This judge makes the errors an LLM judge makes, each driven by
a seeded die (toy.reading.unit_hash of the reference and of what is read, so reruns agree and any change to the text
rolls new dice; a line's dice see the text up to that line only, so every prefix y_<=t that contains the line reads
it the same way, as a judge that reads the same tokens does:
docs/toy-world.md, "The starting number and the dice"):

    misunderstood reference  per PROBLEM (`misunderstand`): the judge misreads one intermediate result of the
                             reference, so correct responses seem to contradict it there;
    inattention              per LINE: a flawed equation (wrong arithmetic, a step that is not the reference's, a
                             result that contradicts a checkpoint) is noticed with probability `attention[i]`, which
                             falls with the line's position i (long responses are checked less: a length effect);
                             line 1 is also compared with the question's start (and the reference's): a response
                             that starts from a miscopied number is flagged when line 1 is read ("start");
    false alarm              per LINE: a correct equation is taken for a flawed one with probability `false_alarm`;
    confident final line     per RESPONSE: a wrong boxed answer after lines that all looked right is believed
                             (`fooled`: score as if right) or given partial credit for a right method with a slip
                             (`partial_credit`: 4, "trivial gap");
    answer anchoring         per RESPONSE: a boxed answer equal to the reference's makes the judge forgive the flaws
                             it noticed on the way (`anchor`: 4, "the working has gaps"), as an LLM judge that
                             compares final answers first does; so a rollout right by luck through wrong steps is
                             mostly judged correct, like the final-answer label that calibration uses.

Outcome rubric on what was perceived (K checkpoints; k = those reached before the first noticed flaw):
    boxed answer = the reference's (or believed): 5 with no noticed flaw, else 4 if anchored, else 4 or 3 (a coin)
    with one flaw, else 3 (2 if k = 0)
    no boxed answer: 3 with no noticed flaw and some work, 2 with k >= 1, else 1
    boxed answer wrong: 2 if k >= 1 else 1 (after a noticed flaw, or when neither fooled nor crediting)
Process rubric, prefix y_<=t: the reference's boxed answer with noticed flaws 4 if anchored; a noticed wrong equation
or contradiction 1, a noticed step off the path 2; else a wrong boxed answer 1 (unless believed: 5, or credited: 4),
at least one checkpoint 5, steps but no checkpoint 4, no step 3.
View "segment" (one segment alone, the authors' code) uses the same perception on the segment's own lines.
No reference (the calibration's second condition): the same reader checks the arithmetic and that each line starts
from the previous result (a boxed answer that is not the last result is a flaw), and, like an LLM judge solving the
question itself, compares a line's operation with the question's on a `question_check` share of the lines, and on a
`count_check` share of the responses counts the steps; a noticed mismatch or a step missing or extra ("misread")
means the response solved another problem, so its final answer is judged wrong.

The error dial `error_rate` (scripts/judge_dial.py) adds, per judged text, a misread of the WHOLE reference: the same
operations from a start 1..9 higher, i.e. another problem's reference (1.0 = the wrong-reference condition).
"""

from dataclasses import dataclass

from judge import JudgeResult, normalise, parse_score
from toy.exact_judges import CheckpointJudge, NoReferenceJudge, RubricJudge  # noqa: F401 (re-exported)
from toy.reading import (  # noqa: F401 (read_reference, verify, unit_hash: re-exported for the tests and analyses)
    ReferencePath,
    apply_op,
    boxed_answer,
    check_probabilities,
    equations,
    misread,
    process_items,
    question_start,
    question_steps,
    read_reference,
    unit_hash,
    verify,
)

TOY_JUDGES = ("toy", "toy-v3", "toy-fresh", "toy-v2", "toy-rubric", "toy-progress", "toy-mixed")  # --judge names

# The third version (no start check, fresh dice per prefix): the judge of results/reproduce-toy-v3 and of the dial; its
# texts are byte for byte those of `toy` before the start check (tests/test_start_check.py).
THIRD_VERSION = dict(check_start=False, consistent_dice=False)
# The second version of the LLM-like judge (before answer anchoring and the step count; partial credit 30%): the
# settings of results/reproduce-llm-like-v2 and of the mixed world's calibration (toy/mixed_judges.py).
SECOND_VERSION = dict(fooled=0.12, partial_credit=0.3, anchor=0.0, count_check=0.0, **THIRD_VERSION)


def build_toy_judge(name: str, error_rate: float = 0.0):
    """'toy' -> LLMLikeJudge, 'toy-v3' and 'toy-v2' -> its third and second versions (THIRD_VERSION, SECOND_VERSION),
    'toy-fresh' -> today's with the third version's fresh dice per prefix (an ablation), 'toy-rubric' -> RubricJudge
    (all five take the error dial), 'toy-progress' -> CheckpointJudge."""
    if name == "toy":
        return LLMLikeJudge(error_rate=error_rate)
    if name == "toy-v3":
        return LLMLikeJudge(error_rate=error_rate, **THIRD_VERSION)
    if name == "toy-fresh":
        return LLMLikeJudge(error_rate=error_rate, consistent_dice=False)
    if name == "toy-v2":
        return LLMLikeJudge(error_rate=error_rate, **SECOND_VERSION)
    if name == "toy-rubric":
        return RubricJudge(error_rate=error_rate)
    if name == "toy-progress":
        if error_rate:
            raise ValueError("error_rate applies to the 'toy' and 'toy-rubric' judges only")
        return CheckpointJudge()
    if name == "toy-mixed":
        raise ValueError("the mixed world's judge is toy.mixed_judges.MixedJudge (train_stage1.build_judge builds it)")
    raise ValueError(f"toy judge must be one of {TOY_JUDGES}, got {name!r}")


@dataclass
class Perception:
    """What the judge believes after reading a text once.

    flaws:   the noticed flaws, [(line index, kind)] with kind "wrong" (arithmetic or a contradicted checkpoint),
             "start" (line 1 starts from a number that is not the question's or the reference's start),
             "off_path" (a valid step that is not the reference's), "break" (no reference: a line that does not
             start from the previous result) or "misread" (no reference: a step that is not the question's);
    reached: checkpoints reached before the first noticed flaw (k);  lines: equations written (m);
    final:   "right", "wrong" or "none" (the boxed answer against the reference's, or against the last result
             without a reference); believed: a wrong final answer taken for right; credited: one given partial credit.
    """

    flaws: list[tuple[int, str]]
    reached: int
    lines: int
    final: str
    believed: bool = False
    credited: bool = False
    coin: float = 0.0  # the die of the one choice the rubric leaves open (4 or 3 for one flaw)
    anchored: bool = False  # a boxed answer equal to the reference's made the judge forgive the flaws it noticed


class LLMLikeJudge:
    """The default toy judge (see the module docstring for the mechanisms and rubrics), with the LLM judge's
    interface: score_outcome, score_process (views "prefix" and "segment"), score_no_reference; 1-5 scale.

    Example (a correct response; with every error switched off the judge is the exact rubric):
        >>> judge = LLMLikeJudge(misunderstand=0, attention=(1.0, 0.0, 1.0), false_alarm=0, fooled=0, partial_credit=0)
        >>> ref = "Add 8, then double: that gives 110. Subtract 5, then add 3: that gives 108. The answer is 108."
        >>> judge.score_outcome([""], [ref], ["47+8=55###55*2=110###110-5=105###105+3=108###\\\\boxed{108}"]).scores
        [1.0]
    """

    def __init__(
        self,
        error_rate: float = 0.0,
        misunderstand: float = 0.1,
        attention: tuple[float, float, float] = (0.95, 0.08, 0.3),
        false_alarm: float = 0.012,
        fooled: float = 0.15,
        partial_credit: float = 0.5,
        gap_credit: float = 0.7,
        question_check: float = 0.4,
        anchor: float = 0.7,
        count_check: float = 0.4,
        check_start: bool = True,
        consistent_dice: bool = True,
    ):
        """attention = (first line, drop per line, floor): line i is checked with max(floor, first - drop * i).
        check_start: line 1's starting number is compared with the question's (and the reference's) start.
        consistent_dice: a line's dice depend on the text up to that line, so every prefix that contains it reads it
        the same way (False: fresh dice per judged text, the third version; docs/toy-world.md says why)."""
        check_probabilities(error_rate=error_rate, misunderstand=misunderstand, false_alarm=false_alarm, fooled=fooled,
                            partial_credit=partial_credit, gap_credit=gap_credit, question_check=question_check,
                            anchor=anchor, count_check=count_check, attention=min(attention))  # fmt: skip
        if fooled + partial_credit > 1:
            raise ValueError(f"fooled + partial_credit must be <= 1, got {fooled + partial_credit}")
        self.error_rate, self.misunderstand, self.attention = error_rate, misunderstand, attention
        self.false_alarm, self.fooled, self.partial_credit = false_alarm, fooled, partial_credit
        self.gap_credit, self.question_check, self.anchor, self.count_check = (
            gap_credit,
            question_check,
            anchor,
            count_check,
        )
        self.check_start, self.consistent_dice = check_start, consistent_dice

    # ------------------------------------------------------------------------------------------ the interface
    def score_outcome(self, questions: list[str], references: list[str], responses: list[str]) -> JudgeResult:
        texts = [
            self._judge(ref, resp, self._outcome, question=q) for q, ref, resp in zip(questions, references, responses)
        ]
        return JudgeResult(scores=[normalise(parse_score(t)) for t in texts], texts=texts, num_requests=len(texts))

    def score_process(
        self, questions: list[str], references: list[str], segments: list[list[str]], view: str = "prefix"
    ) -> JudgeResult:
        alone = view == "segment"
        texts = [
            [self._judge(ref, item, self._process, alone=alone, question=q) for item in items]
            for q, ref, items in zip(questions, references, process_items(segments, view))
        ]
        scores = [[normalise(parse_score(t)) for t in row] for row in texts]
        return JudgeResult(scores=scores, texts=texts, num_requests=sum(map(len, texts)))

    def score_no_reference(self, questions: list[str], responses: list[str], level: str = "outcome") -> JudgeResult:
        """The calibration's no-reference condition: the same reader, no reference to compare with."""
        rubric = self._outcome if level == "outcome" else self._process
        texts = [self._judge("", resp, rubric, question=q) for q, resp in zip(questions, responses)]
        return JudgeResult(scores=[normalise(parse_score(t)) for t in texts], texts=texts, num_requests=len(texts))

    # ------------------------------------------------------------------------------------------ reading
    def _judge(self, reference: str, text: str, rubric, alone: bool = False, question: str = "") -> str:
        """Read the reference (maybe misunderstood or misread), perceive the text, apply `rubric`, write the verdict.
        Without a reference the judge reads the question's operations instead (see the module docstring)."""
        written, boxed = equations(text), boxed_answer(text)
        read = f"{written} {boxed}"  # all the judge reads of the text: its dice see nothing else

        def die(*tags) -> float:
            return unit_hash(*map(str, tags), reference or question, read)

        def line_die(tag: str, i: int) -> float:  # a die of line i: consistent ones see the text up to that line
            if not self.consistent_dice:
                return die(tag, i)
            return unit_hash(tag, str(i), reference or question, str(written[: i + 1]))

        path, note = None, "no reference"
        if reference:
            path = read_reference(reference)
            if path is None:
                return "Reasoning: the reference describes no chain of steps I can follow; cannot judge."
            path = self._misunderstood(path, reference)
            note = f"checkpoints {path.checkpoints}"  # as the judge read them
            if die("error") < self.error_rate:
                shift = 1 + int(9 * die("shift"))
                path, note = misread(path, shift), f"{note} (reference misread: start {path.values[0] + shift})"
        asked = None if reference else question_steps(question)
        starts = [] if alone or not self.check_start else question_start(question) + ([path.values[0]] if path else [])
        seen = self._perceive(path, written, boxed, die, alone=alone, asked=asked, line_die=line_die, starts=starts)
        score, why = rubric(seen, path)
        flaws = ", ".join(f"line {i + 1} {kind}" for i, kind in seen.flaws) or "none noticed"
        return f"Reasoning: {note}; {seen.lines} lines, flaws: {flaws}; {why}.\nScore: {score}"

    def _misunderstood(self, path: ReferencePath, reference: str) -> ReferencePath:
        """On a `misunderstand` share of the problems, one intermediate result of the reference read 1..9 off."""
        if len(path.ends) < 2 or unit_hash("misunderstand", reference) >= self.misunderstand:
            return path
        j = int((len(path.ends) - 1) * unit_hash("which", reference))  # never the final answer
        values = list(path.values)
        values[path.ends[j]] += 1 + int(9 * unit_hash("by", reference))
        return ReferencePath(values, path.steps, path.ends)

    def _perceive(
        self,
        path: ReferencePath | None,
        written,
        boxed: int | None,
        die,
        alone: bool = False,
        asked=None,
        line_die=None,
        starts: tuple[int, ...] = (),
    ) -> Perception:
        """Check each line with the attention its position gets; see Perception. alone: a segment judged without
        its context (view "segment"): a line is checked against every step of the reference, not the one at its
        position, and it reaches a checkpoint when it states one. asked: the question's steps (no reference only).
        line_die: the dice of line-level checks (default `die`); starts: the starting numbers line 1 must begin from
        (the question's, the reference's; empty: the start is not checked)."""
        first, drop, floor = self.attention
        line_die = line_die or die
        flaws = []
        for i, (a, op, b, c) in enumerate(written):
            kind = self._flaw_alone(path, written[i]) if alone and path else self._flaw(path, written, i)
            if kind is None and asked is not None and line_die("solve", i) < self.question_check:
                kind = None if i < len(asked) and (op, b) == asked[i] else "misread"  # not the question's step
            if i == 0 and kind != "wrong" and any(a != start for start in starts):
                kind = "start"  # a miscopied start: checked like the rest of the line, with the line's attention
            if kind is None and line_die("alarm", i) < self.false_alarm:
                kind, noticed = "wrong", True  # a correct line taken for a wrong one
            else:
                noticed = line_die("notice", i) < max(floor, first - drop * i)
            if kind is not None and noticed:
                flaws.append((i, kind))
        if asked is not None and written and len(written) != len(asked) and die("count") < self.count_check:
            flaws.append((len(written) - 1, "misread"))  # no reference: it noticed a step missing or one too many
        clean_lines = flaws[0][0] if flaws else len(written)  # lines before the first noticed flaw
        reached = sum(e <= clean_lines for e in path.ends) if path else 0
        if alone and path:
            reached = sum(c in path.checkpoints for *_, c in written[:clean_lines])
        target = path.values[-1] if path else (written[-1][3] if written else None)
        final = "none" if boxed is None else "right" if boxed == target else "wrong"
        if any(kind == "misread" or (kind == "start" and path is None) for _, kind in flaws) and final == "right":
            final = "wrong"  # no reference: the response answered another question
        seen = Perception(flaws, reached, len(written), final, coin=die("coin"))
        seen.anchored = final == "right" and path is not None and die("anchor") < self.anchor
        if final == "wrong" and path is not None:  # the answer differs from the reference's: believe or credit it?
            late = len(path.ends) >= 2 and reached >= len(path.ends) - 1  # the first noticed flaw in the last stretch
            u = die("final")
            seen.believed = not flaws and u < self.fooled  # every line looked right: the final line is believed
            seen.credited = (late or not flaws) and self.fooled <= u < self.fooled + self.partial_credit
        return seen

    @staticmethod
    def _flaw(path: ReferencePath | None, written, i: int) -> str | None:
        """What is visibly wrong with line i, if anything (see Perception.flaws). Against a reference, a line is
        compared with what the reference states: its operation, and its result where the reference states one (a
        checkpoint); a right operation on a value carried from an earlier slip is visible only at the next
        checkpoint, since the reference states no value in between."""
        a, op, b, c = written[i]
        if apply_op(a, op, b) != c:
            return "wrong"
        if path is None:
            return "break" if i and a != written[i - 1][3] else None
        if i >= len(path.steps) or (op, b) != path.steps[i]:
            return "off_path"
        return "wrong" if (i + 1) in path.ends and c != path.values[i + 1] else None

    @staticmethod
    def _flaw_alone(path: ReferencePath, line) -> str | None:
        """A line judged without its context: wrong arithmetic, or a valid step that is no step of the reference."""
        a, op, b, c = line
        if apply_op(a, op, b) != c:
            return "wrong"
        steps = {(path.values[i], op_i, b_i, path.values[i + 1]) for i, (op_i, b_i) in enumerate(path.steps)}
        return None if line in steps else "off_path"

    # ------------------------------------------------------------------------------------------ the rubrics
    def _outcome(self, seen: Perception, path: ReferencePath | None) -> tuple[int, str]:
        k, n = seen.reached, len(seen.flaws)
        if seen.final == "right" or seen.believed:
            if n and seen.anchored:
                return 4, "the final answer matches the reference's; the working has gaps"
            if not n:
                return 5, "sound and complete; the final answer follows" + (" (believed)" if seen.believed else "")
            if n == 1:
                return (4, "right answer, one gap") if seen.coin < self.gap_credit else (3, "right answer, one error")
            return (3, "right answer, several errors") if k else (2, "right answer, unsupported")
        if seen.credited:
            return 4, "the right method with a slip in the last stretch"
        if seen.final == "none":
            if not n and seen.lines:
                return 3, "on track but no final answer"
            return (2, "leaves the path after progress") if k else (1, "far from the reference")
        return (2, "a wrong final answer after progress") if k else (1, "a wrong final answer")

    def _process(self, seen: Perception, path: ReferencePath | None) -> tuple[int, str]:
        right = seen.final == "right" or seen.believed
        if seen.final == "wrong" and seen.credited:
            return 4, "aligned, a slip at the end"
        if seen.flaws and seen.anchored:
            return 4, "reaches the reference's final answer; the working has gaps"
        if seen.flaws and not (right and len(seen.flaws) == 1):
            kind = seen.flaws[0][1]
            if kind == "start":
                return 1, "misleading: it starts from a number that is not the question's"
            return (2, "a step off the reference's path") if kind == "off_path" else (1, "misleading: an error")
        if right:
            if seen.flaws:
                one_gap = seen.coin < self.gap_credit
                return (4, "reaches the final answer, one gap") if one_gap else (3, "one error on the way")
            return 5, "reaches the final answer" + (" (believed)" if seen.believed else "")
        if seen.final == "wrong":
            return 1, "a wrong final answer"
        if seen.reached:
            return 5, "establishes a checkpoint"
        return (4, "aligned, no checkpoint yet") if seen.lines else (3, "no step to verify")
