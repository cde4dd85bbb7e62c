"""The problem record every part of the repository passes around: `Problem` (question, hidden reference, gold
answer, domain), the three domains, the multiple-choice letters, and `DataError` for bad problem data."""

from dataclasses import dataclass

DOMAINS = ("math", "science", "code")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class DataError(ValueError):
    """Bad problem data: the message names the file (or dataset), the line (or row) and the field."""


@dataclass
class Problem:
    """One training or evaluation problem.

    Example:
        >>> Problem(id="p0", question="What is 2+3?", reference="2+3 = 5.", answer="5").answer
        '5'
    """

    id: str
    question: str
    reference: str
    answer: str  # math: the final answer; multiple choice: the gold letter; code: unused (the tests decide)
    domain: str = "math"  # "math", "science" or "code": picks the judge's prompt and the rule-based reward
    choices: tuple[str, ...] = ()  # multiple choice: the options, lettered A, B, ... in this order
    tests: str = ""  # code: the tests as JSON text (anything domains.rule_rewards.decode_tests reads)
    starter_code: str = ""  # code: the signature the program must complete (LiveCodeBench's functional problems)
