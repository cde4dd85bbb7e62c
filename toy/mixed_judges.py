"""The mixed toy world's judges: one stand-in per domain that errs like the paper's judge in that domain, and
`MixedJudge`, which routes each row to its domain's judge (`domains=`), with toy.llm_like_judge.LLMLikeJudge's
interface.

The paper's judge misplaces (docs/paper.md, "Mixed domains (§4.6, Tables 3-6)"; % with the correct / no / a wrong
reference): math 17.8 / 39.2 / 50.4, multiple-choice science 14.0 / 37.5 / 46.0, code 9.7 / 8.2 / 10.0. Code is the
odd one: a judge can read a program against the question, so the reference barely helps. Hence:

    math     toy.llm_like_judge.LLMLikeJudge in its second version (SECOND_VERSION), the arithmetic world's judge
             as this world was calibrated with.
    science  ScienceJudge: the same reader and rubrics (its perception, the outcome and process rubrics, every die),
             on the science texts: the reference's sentences read as the arithmetic reference's, the chosen letter
             as the value it stands for in the question's options (no letter, or one that is no option: no answer);
             and one error of its own, an anchor on the final answer: a chosen letter that is the one the reference
             names gets 4 on an `answer_anchor` share of responses, whatever errors the steps show (with no
             reference there is no letter to anchor on; with a wrong one, the anchor is that reference's letter).
             Its settings were set on development rollouts (docs/toy-mixed.md, "Judges").
    code     CodeJudge: reads the program's operations (each `+a`, `-a`, `*2` in order, in any style) and compares
             them with the question's; with a reference it also compares with the reference's.

CodeJudge's errors, each a seeded die (toy.reading.unit_hash of what is read, so reruns agree):
    inattention     per LINE: an operation that differs from the question's is noticed with probability
                    max(floor, first - drop * i) (i = its position), a missing or extra line with `count_check`;
    skimming        per RESPONSE (`skim`): a program that reads n and prints is believed without checking its lines;
    false alarm     per RESPONSE (`false_alarm`): a right program taken for a wrong one;
    style anchor    per RESPONSE, with a reference only (`style_doubt`): a right program in another style than the
                    reference's judged as not following it (the reason the reference does not help);
    wrong reference per RESPONSE: where the reference's operations are not the question's, the judge follows the
                    reference instead of the question with probability `trust_reference`.
Outcome rubric: a program that reads n and prints with no noticed flaw 5; a noticed flaw after some right lines 2
(3 if only the last stretch is off); nothing right, or no program, 1. The process rubric (each prefix) is the same,
except that an unfinished program whose lines are right so far scores 4.
"""

import re

from domains.rule_rewards import extract_choice, extract_code
from judge import JudgeResult, normalise, parse_score
from toy.llm_like_judge import SECOND_VERSION, LLMLikeJudge
from toy.mixed_world import DOMAINS, QUANTITIES, parse_code, parse_science
from toy.reading import check_probabilities, process_items, unit_hash
from toy.world import question_text

LIKERT_CORRECT = 0.75  # normalised score of Likert 4: "score >= 4 means judged correct" (docs/paper.md)
SCIENCE_SENTENCE = re.compile(r"([^.]*) brings it to (\d+)")
PROGRAM_OP = re.compile(r"([+\-*])\s*(\d+)")
REFERENCE_LETTER = re.compile(r"option ([A-D])\b")
OPTION = re.compile(r"\b([A-D])\)(\d+)")  # "D)108": option D is 108


# ----------------------------------------------------------------------------------------------- science
def as_arithmetic_reference(reference: str) -> str:
    """A science reference rewritten in the arithmetic reference's words, which toy.reading.read_reference reads.

    Example:
        >>> as_arithmetic_reference("Heating by 8 and doubling brings it to 110C. Cooling by 5 brings it to 105C.")
        'Add 8, then double: that gives 110. Subtract 5: that gives 105.'
    """
    raising = {q[4] for q in QUANTITIES}
    sentences = []
    for words, value in SCIENCE_SENTENCE.findall(reference):
        steps = []
        for part in words.strip().lower().split(" and "):
            gerund, _, amount = part.rpartition(" by ")
            steps.append("double" if part == "doubling" else f"{'add' if gerund in raising else 'subtract'} {amount}")
        sentence = ", then ".join(steps)
        sentences.append(f"{sentence[0].upper()}{sentence[1:]}: that gives {value}.")
    return " ".join(sentences)


def chosen_value(question: str, response: str) -> int | None:
    """The value of the option the response chose ("Answer: D" -> 108 when the question lists "D)108"); None when it
    chose no letter or a letter that is no option."""
    options = dict(OPTION.findall(question))
    letter = extract_choice(response)
    return int(options[letter]) if letter in options else None


class ScienceJudge(LLMLikeJudge):
    """LLMLikeJudge on the science texts (see the module docstring); settings from development rollouts.

    Example (a right response; with every error off the judge is the exact rubric):
        >>> judge = ScienceJudge(misunderstand=0, attention=(1.0, 0.0, 1.0), false_alarm=0, fooled=0, partial_credit=0)
        >>> q = "T=47C; heat 8, double. T? A)110 B)94 C)55 D)98"
        >>> ref = "Heating by 8 and doubling brings it to 110C. That is option A."
        >>> judge.score_outcome([q], [ref], ["47+8=55###55*2=110###Answer: A"]).scores
        [1.0]
    """

    def __init__(
        self,
        error_rate: float = 0.0,
        misunderstand: float = 0.08,
        fooled: float = 0.1,
        answer_anchor: float = 0.6,
        **settings,
    ):
        """answer_anchor: the share of responses whose chosen letter is the one the reference names that get 4 ("the
        reference's option") whatever errors their steps show: an LLM judge anchors on a matching final answer."""
        check_probabilities(answer_anchor=answer_anchor)
        settings = {**SECOND_VERSION, "fooled": fooled, **settings}  # the arithmetic judge as calibrated here
        super().__init__(error_rate=error_rate, misunderstand=misunderstand, **settings)
        self.answer_anchor = answer_anchor

    def score_outcome(self, questions, references, responses) -> JudgeResult:
        texts = [self._read(q, ref, resp, self._outcome) for q, ref, resp in zip(questions, references, responses)]
        return JudgeResult(scores=[normalise(parse_score(t)) for t in texts], texts=texts, num_requests=len(texts))

    def score_process(self, questions, references, segments, view: str = "prefix") -> JudgeResult:
        alone = view == "segment"
        texts = [
            [self._read(q, ref, item, self._process, alone) for item in items]
            for q, ref, items in zip(questions, references, process_items(segments, view))
        ]
        scores = [[normalise(parse_score(t)) for t in row] for row in texts]
        return JudgeResult(scores=scores, texts=texts, num_requests=sum(map(len, texts)))

    def score_no_reference(self, questions, responses, level: str = "outcome") -> JudgeResult:
        rubric = self._outcome if level == "outcome" else self._process
        texts = [self._read(q, "", resp, rubric) for q, resp in zip(questions, responses)]
        return JudgeResult(scores=[normalise(parse_score(t)) for t in texts], texts=texts, num_requests=len(texts))

    def _read(self, question: str, reference: str, text: str, rubric, alone: bool = False) -> str:
        """The arithmetic judge's reading on translated texts: the reference in its words, the chosen option as a
        boxed value, the question as its operations (what the judge checks without a reference)."""
        value = chosen_value(question, text)
        steps = text.split("Answer:")[0] + ("" if value is None else f"\\boxed{{{value}}}")
        translated = as_arithmetic_reference(reference) if reference else ""
        if reference and not translated:
            return "Reasoning: the reference describes no chain of steps I can follow; cannot judge.\nScore: 1"
        try:
            asked = question_text(*parse_science(question))
        except (ValueError, StopIteration):
            asked = ""
        verdict = self._judge(translated, steps, rubric, alone=alone, question=asked)
        named = REFERENCE_LETTER.findall(reference)
        letter = extract_choice(text) if "Answer:" in text else None
        anchored = unit_hash("anchor", reference, steps) < self.answer_anchor
        if named and letter == named[-1] and (parse_score(verdict) or 5) < 4 and anchored:
            return verdict.rsplit("\nScore:", 1)[0] + "; but the chosen option is the reference's.\nScore: 4"
        return verdict


# ----------------------------------------------------------------------------------------------- code
def program_ops(program: str) -> tuple[list[tuple[str, int]], bool]:
    """The operations a program applies, in order, and whether it reads n and prints (well formed).

    Example:
        >>> program_ops("n=int(input())\\nn=n+8\\nn=n*2\\nprint(n)")
        ([('+', 8), ('*', 2)], True)
        >>> program_ops("n = int(input())\\nprint((n + 8) * 2)")
        ([('+', 8), ('*', 2)], True)
    """
    body = program.replace("int(input())", "")
    ops = [(op, int(a)) for op, a in PROGRAM_OP.findall(body)]
    return ops, "int(input())" in program and "print(" in program


def affine(ops: list[tuple[str, int]]) -> tuple[int, int]:
    """What a chain of operations computes, as n -> a * n + b: (a, b). Two programs compute the same iff equal.

    Example (+7 then -7 is -7 then +7; doubling after +3 gives 2n + 6):
        >>> affine([("+", 7), ("-", 7)]) == affine([("-", 7), ("+", 7)]), affine([("+", 3), ("*", 2)])
        (True, (2, 6))
    """
    a, b = 1, 0
    for op, x in ops:
        a, b = (2 * a, 2 * b) if op == "*" else (a, b + x if op == "+" else b - x)
    return a, b


class CodeJudge:
    """The code domain's judge (see the module docstring): the LLM judge's interface, 1-5 scale. A program that
    computes what the question asks in another order (`affine`) is read as right, as a reader of code would.

    Example (a right program scores 5; the same program one operation short, a flaw in the last stretch, 3):
        >>> judge, q = CodeJudge(skim=0, false_alarm=0, style_doubt=0), "Code: read n, add 8, double, print n."
        >>> right = "```python\\nn=int(input())\\nn=n+8\\nn=n*2\\nprint(n)\\n```"
        >>> short = right.replace("n=n*2\\n", "")
        >>> judge.score_no_reference([q, q], [right, short]).scores
        [1.0, 0.5]
    """

    def __init__(
        self,
        error_rate: float = 0.0,
        attention: tuple[float, float, float] = (0.97, 0.02, 0.8),
        count_check: float = 0.9,
        skim: float = 0.14,
        false_alarm: float = 0.1,
        style_doubt: float = 0.03,
        trust_reference: float = 0.04,
    ):
        check_probabilities(error_rate=error_rate, count_check=count_check, skim=skim, false_alarm=false_alarm,
                            style_doubt=style_doubt, trust_reference=trust_reference)  # fmt: skip
        self.error_rate, self.attention, self.count_check, self.skim = error_rate, attention, count_check, skim
        self.false_alarm, self.style_doubt, self.trust_reference = false_alarm, style_doubt, trust_reference

    def score_outcome(self, questions, references, responses) -> JudgeResult:
        texts = [self._judge(q, ref, resp, final=True) for q, ref, resp in zip(questions, references, responses)]
        return JudgeResult(scores=[normalise(parse_score(t)) for t in texts], texts=texts, num_requests=len(texts))

    def score_process(self, questions, references, segments, view: str = "prefix") -> JudgeResult:
        items = process_items(segments, view)
        texts = [
            [self._judge(q, ref, item, final=t == len(row) - 1) for t, item in enumerate(row)]
            for q, ref, row in zip(questions, references, items)
        ]
        scores = [[normalise(parse_score(t)) for t in row] for row in texts]
        return JudgeResult(scores=scores, texts=texts, num_requests=sum(map(len, texts)))

    def score_no_reference(self, questions, responses, level: str = "outcome") -> JudgeResult:
        texts = [self._judge(q, "", resp, final=True) for q, resp in zip(questions, responses)]
        return JudgeResult(scores=[normalise(parse_score(t)) for t in texts], texts=texts, num_requests=len(texts))

    def _judge(self, question: str, reference: str, text: str, final: bool) -> str:
        program = extract_code(text)
        unfinished = program is None and "```python" in text and not final
        if program is None and not unfinished:
            return "Reasoning: no program to check.\nScore: 1"
        ops, formed = program_ops(program if program is not None else text.split("```python", 1)[1])
        read = f"{ops} {formed}"

        def die(*tags) -> float:
            return unit_hash(*map(str, tags), question, reference, read)

        target, note = parse_code(question), "against the question"
        if reference:
            ref_program = extract_code(reference)
            ref_ops = program_ops(ref_program)[0] if ref_program else []
            if ref_ops != target and die("trust") < self.trust_reference:
                target, note = ref_ops, "against the reference"  # a wrong reference followed instead of the question
            if die("error") < self.error_rate:  # the error dial: another problem's operations
                target, note = ref_ops[1:] + ref_ops[:1], "against a misread reference"
        first, drop, floor = self.attention
        same = not unfinished and affine(ops) == affine(target)  # a reordering that computes the same: worked out
        flaws = [i for i, step in enumerate(ops) if i < len(target) and step != target[i] and not same]
        flaws = [i for i in flaws if die("notice", i) < max(floor, first - drop * i)]
        if len(ops) != len(target) and not same and not (unfinished and len(ops) < len(target)):
            if die("count") < self.count_check:
                flaws.append(min(len(ops), len(target)))
        if formed and die("skim") < self.skim:
            flaws = []  # a well-formed program believed without checking its lines
        if not flaws and die("alarm") < self.false_alarm:
            flaws.append(int(len(ops) * die("where")))  # a right program taken for a wrong one
        if not flaws and reference and die("style") < self.style_doubt:
            flaws.append(len(ops))  # not written the reference's way
        if not flaws and not formed and not unfinished:
            flaws.append(len(ops))
        right = min(flaws) if flaws else len(ops)
        if not flaws:
            score, why = (4, "right so far, unfinished") if unfinished else (5, "applies every operation, prints")
        elif right >= len(target) - 2 and right > 0:
            score, why = 3, "right until the last stretch"
        else:
            score, why = (2, "right at first, then off") if right else (1, "off from the start")
        seen = f"first flaw noticed at line {right + 1}" if flaws else "no flaw noticed"
        return f"Reasoning: {len(ops)} operations read {note}; {seen}; {why}.\nScore: {score}"


# ----------------------------------------------------------------------------------------------- routing
class MixedJudge:
    """Each row scored by its domain's judge (domains=None: every row is math), the LLM judge's interface.

    Example:
        >>> judge = MixedJudge()
        >>> q = ["Code: read n, add 8, print n.", "5 +3"]
        >>> r = ["", "Add 3: that gives 8. The answer is 8."]
        >>> judge.score_outcome(q, r, ["```python\\nn=int(input())\\nn=n+8\\nprint(n)\\n```", "5+3=8###\\\\boxed{8}"],
        ...                     domains=["code", "math"]).scores
        [1.0, 1.0]
    """

    def __init__(self, error_rate: float = 0.0):
        self.judges = {"math": LLMLikeJudge(error_rate=error_rate, **SECOND_VERSION),
                       "science": ScienceJudge(error_rate=error_rate),
                       "code": CodeJudge(error_rate=error_rate)}  # fmt: skip

    def score_outcome(self, questions, references, responses, domains=None) -> JudgeResult:
        return self._route(domains, len(questions), lambda j, rows: j.score_outcome(
            *[[column[i] for i in rows] for column in (questions, references, responses)]))  # fmt: skip

    def score_process(self, questions, references, segments, view: str = "prefix", domains=None) -> JudgeResult:
        return self._route(domains, len(questions), lambda j, rows: j.score_process(
            *[[column[i] for i in rows] for column in (questions, references, segments)], view=view))  # fmt: skip

    def score_no_reference(self, questions, responses, level: str = "outcome", domains=None) -> JudgeResult:
        return self._route(domains, len(questions), lambda j, rows: j.score_no_reference(
            [questions[i] for i in rows], [responses[i] for i in rows], level))  # fmt: skip

    def _route(self, domains, size: int, call) -> JudgeResult:
        domains = list(domains) if domains is not None else ["math"] * size
        if len(domains) != size:
            raise ValueError(f"domains: {len(domains)} entries for {size} rows")
        unknown = sorted(set(domains) - set(DOMAINS))
        if unknown:
            raise ValueError(f"domains: unknown {unknown}; expected {', '.join(DOMAINS)}")
        scores, texts, requests = [None] * size, [None] * size, 0
        for domain, judge in self.judges.items():
            rows = [i for i, d in enumerate(domains) if d == domain]
            if rows:
                result = call(judge, rows)
                for i, score, text in zip(rows, result.scores, result.texts):
                    scores[i], texts[i] = score, text
                requests += result.num_requests
        return JudgeResult(scores=scores, texts=texts, num_requests=requests)
