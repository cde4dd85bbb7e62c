"""How the toy judges read the texts: the reference's path, a response's equations and boxed answer.

The reference is prose that names each operation and states a result every second one; a judge recovers the whole
reference path from it (the start by undoing the first sentence from its stated result):

    reference: "Add 8, then double: that gives 110. Subtract 5, then add 3: that gives 108. The answer is 108."
    -> steps [+8, *2, -5, +3], checkpoints [110, 108] after steps 2 and 4, path [47, 55, 110, 105, 108]

The response is read for its equations and its last \\boxed{} answer. Nothing else in either text is read: the gold
answer field is never seen (the reference's last checkpoint is its final answer), and text such as "Score: 5" inside
a response is inert. The judges themselves are in toy/llm_like_judge.py (the default) and toy/exact_judges.py.
"""

import hashlib
import re
from dataclasses import dataclass

EQUATION = re.compile(r"(\d+)([+\-*])(\d+)=(\d+)")
BOXED = re.compile(r"\\boxed\{(\d+)\}")
CHECKPOINT = re.compile(r"that gives (\d+)")
SENTENCE = re.compile(r"([^.:]*): that gives (\d+)")  # the words of one reference sentence, and its stated result
QUESTION_START = re.compile(r"\s*(\d+)(?=\s|$)")  # "47" in "47 +8 *2": the start a question states
QUESTION_STEP = re.compile(r"(?<=\s)([+\-*])(\d+)")  # " +8", " *2" after the start
STEP_WORDS = re.compile(r"\b(add|subtract) (\d+)|\b(double)\b", re.IGNORECASE)


def check_probabilities(**values: float) -> None:
    """A judge's error rates: raise ValueError naming the first value outside [0, 1].

    Example:
        >>> check_probabilities(fooled=0.1, skim=1.5)
        Traceback (most recent call last):
        ...
        ValueError: skim must be in [0, 1], got 1.5
    """
    for name, p in values.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")


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


def question_steps(question: str) -> list[tuple[str, int]]:
    """The operations a toy question lists after its start ("47 +8 *2 -5" -> [+8, *2, -5]): what a judge without a
    reference can check a response's steps against.

    Example:
        >>> question_steps("47 +8 *2 -5 +3")
        [('+', 8), ('*', 2), ('-', 5), ('+', 3)]
    """
    return [(op, int(b)) for op, b in QUESTION_STEP.findall(question)]


def question_start(question: str) -> list[int]:
    """The starting number a toy question states ("47 +8 *2" -> [47]), as a list: [] when the question states none
    (an empty or foreign question), so that a judge has nothing to compare a response's start with.

    Example:
        >>> question_start("47 +8 *2 -5 +3"), question_start("")
        ([47], [])
    """
    found = QUESTION_START.match(question)
    return [int(found.group(1))] if found else []


def first_number(text: str) -> int | None:
    """The number a response starts from: the first operand of its first equation, or None when it writes none.

    Example:
        >>> first_number("84-4=80###80*2=160"), first_number("no work")
        (84, None)
    """
    eqs = equations(text)
    return eqs[0][0] if eqs else None


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


def process_items(segments: list[list[str]], view: str) -> list[list[str]]:
    """What a process judge scores for each response: every prefix y_<=t (view "prefix", the paper) or each
    segment alone (view "segment", the authors' code).

    Example:
        >>> process_items([["a###", "b"]], "prefix"), process_items([["a###", "b"]], "segment")
        ([['a###', 'a###b']], [['a###', 'b']])
    """
    if view not in ("prefix", "segment"):
        raise ValueError(f"view must be 'prefix' or 'segment', got {view!r}")
    if view == "segment":
        return segments
    return [["".join(segs[: t + 1]) for t in range(len(segs))] for segs in segments]
