"""The rule-based final-answer reward: is the last \\boxed{} answer equivalent to the gold answer? (math-verify)

Used by the sparse-GRPO baseline, Stage II, evaluation (pass@k) and hard-problem mining (docs/paper.md, "Stage II",
"Evaluation"). The LLM judges live in judge.py, which re-exports answer_reward for convenience.
"""

import functools
import logging
import re

from domains.grader import (  # the code reward, re-exported (see the section below)
    CODE_HEADER,
    MAX_TESTS_BYTES,
    build_source,
    code_reward,
    code_rewards,
    decode_tests,
    extract_code,
    run_tests,
    same_output,
    same_result,
)

__all__ = ["answer_reward", "last_boxed", "extract_choice", "choice_reward", "rule_rewards", "rule_reward"]
__all__ += ["CODE_HEADER", "MAX_TESTS_BYTES", "build_source", "code_reward", "code_rewards", "decode_tests"]
__all__ += ["extract_code", "run_tests", "same_output", "same_result"]

MAX_ANSWER_CHARS = 1000  # longer boxed answers score 0: real final answers are short, long ones cost parse time

# math-verify warns once that its signal-based timeout is off; we turn it off on purpose (see answer_reward).
logging.getLogger("math_verify").setLevel(logging.ERROR)


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} in `text`, matching nested braces; None if absent or never closed.

    Escaped braces (\\{ and \\}) do not count, so set answers like \\boxed{\\{1, 2\\}} come out whole. A last box that
    is never closed (a truncated response) gives None: its final answer was not finished.

    Example:
        >>> last_boxed("first \\\\boxed{1}, then \\\\boxed{\\\\frac{1}{2}}.")
        '\\\\frac{1}{2}'
    """
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = start + len("\\boxed")
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth, content_start = 0, i + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # skip the escaped character (\{, \}, or the second backslash of \\)
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[content_start:i]
        i += 1
    return None


_BINOMIAL = re.compile(r"binom|choose")
_LONG_NUMBER = re.compile(r"\d{6,}")


def _too_costly_text(answer: str) -> bool:
    """Answers whose PARSING may not finish: latex2sympy evaluates binomials eagerly (\\binom{10^6}{5*10^5} hangs)."""
    return bool(_BINOMIAL.search(answer)) and (bool(_LONG_NUMBER.search(answer)) or "^" in answer or "!" in answer)


def _too_costly_expr(expr) -> bool:
    """Parsed answers whose COMPARISON may not finish: power towers, huge powers, huge factorials.

    Measured with math-verify 0.9.0: 9^{9^9}, 2^{2^{30}}, (x+1)^{2000}, (1+\\sqrt{2})^{100000} and 10^{100}! never
    finish; 2^{2024}, 2^{10^7}, 10000! and e^{i\\pi} take under a second. The rules below keep the second group.
    """
    import sympy

    for node in sympy.preorder_traversal(expr):
        if isinstance(node, (sympy.Pow, sympy.exp)):
            base, exponent = (node.base, node.exp) if isinstance(node, sympy.Pow) else (sympy.E, node.args[0])
            if exponent.free_symbols:
                continue  # symbolic exponents (x^n) stay unevaluated
            if exponent.is_Number:
                if base.is_Rational:  # exact number: bound its digit count, |e| * log10(max(|p|, |q|))
                    size = max(abs(base.p), abs(base.q), 2)
                    if abs(exponent) * len(str(size)) > 100_000:
                        return True
                elif isinstance(node, sympy.Pow) and abs(exponent) > 100:  # (x+1)^N expands into N+1 terms
                    return True
            elif exponent.has(sympy.factorial) or any(
                p.exp.is_Integer and abs(p.exp) > 1 for p in exponent.atoms(sympy.Pow)
            ):
                return True  # a tower like 9^{9^9}; roots in exponents (2^{\sqrt 2}) are fine
        elif isinstance(node, sympy.factorial):
            argument = node.args[0]
            if not argument.free_symbols and not (argument.is_Integer and argument <= 10_000):
                return True
    return False


_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    """Parse a gold answer once: a step grades G rollouts of the same problem against it."""
    from math_verify import parse

    return parse(f"\\boxed{{{gold}}}", parsing_timeout=None)


def answer_reward(response: str, answer: str) -> float:
    """1.0 if the last \\boxed{} answer in `response` equals the gold `answer` (math-verify), else 0.0
    (docs/paper.md, "Stage II").

    Time is bounded WITHOUT signals, so this runs in worker threads: math-verify's own timeout uses signal.alarm,
    which only works in the main thread, so we call it with parsing_timeout=None / timeout_seconds=None and bound the
    work ourselves: boxed answers over MAX_ANSWER_CHARS score 0, and so do answers that sympy would take unbounded
    time on (see _too_costly_text, _too_costly_expr). These guards cover the blow-ups we measured, not every
    conceivable one. Any exception scores 0.

    The gold answer may be plain ("3/4"), LaTeX ("\\frac{3}{4}"), in $...$, or already boxed; it is boxed before
    parsing, which math-verify reads most reliably (a bare "2\\sqrt{3}" otherwise parses as 2).

    Example:
        >>> answer_reward("... so the answer is \\\\boxed{\\\\frac{1}{2}}", "0.5")
        1.0
    """
    from math_verify import parse, verify  # lazy: math-verify pulls in sympy, which costs a second to import

    try:
        predicted = last_boxed(response)
        gold = _gold_latex(answer)
        if predicted is None or gold is None or len(predicted) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return 0.0
        if _PLAIN_NUMBER.fullmatch(predicted.strip()) and _PLAIN_NUMBER.fullmatch(gold):
            return 1.0 if float(predicted) == float(gold) else 0.0  # fast path: ~1000x cheaper than parsing
        if _too_costly_text(predicted) or _too_costly_text(gold):
            return 0.0
        gold_parsed = _parse_gold(gold)
        predicted_parsed = parse(f"\\boxed{{{predicted}}}", parsing_timeout=None)
        if not gold_parsed or not predicted_parsed:
            return 0.0
        sympy_objects = [x for x in gold_parsed + predicted_parsed if not isinstance(x, str)]
        if any(_too_costly_expr(x) for x in sympy_objects):
            return 0.0
        return 1.0 if verify(gold_parsed, predicted_parsed, timeout_seconds=None) else 0.0
    except Exception:  # a reward must never crash a training step; a malformed answer is simply not correct
        return 0.0


def _gold_latex(answer: str) -> str | None:
    """The gold answer as bare LaTeX: strip whitespace, a surrounding $...$, or an enclosing \\boxed{}."""
    gold = answer.strip()
    if "\\boxed" in gold:
        return last_boxed(gold)
    while len(gold) >= 2 and gold.startswith("$") and gold.endswith("$"):
        gold = gold[1:-1].strip()
    return gold or None


# =====================================================================================================================
# Code and multiple choice. Code follows LiveCodeBench's conventions and lives in domains/grader.py (re-exported here);
# model-written code runs ONLY through domains.sandbox.run_program, one sandboxed process per test.

_ANSWER_LETTER = re.compile(  # "answer:", then **, $, \boxed{, \text{, ( around the letter, then no more word
    r"\banswer\s*:[\s*$]*(?:\\boxed\{\s*)?(?:\\text(?:bf)?\{\s*)?(?:[(\[]\s*)?([A-Z])\s*[)\]]?(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_LONE_LETTER = re.compile(r"[\s*$(\[]*(?:\\boxed\{)?[\s(\[]*([A-Z])[\s)\]]*\}?[\s*$.)\]]*", re.IGNORECASE)


def extract_choice(text: str) -> str | None:
    """The multiple-choice letter: the one after the last "Answer:" (or "Final Answer:"), case-insensitive, maybe in
    **bold**, (parentheses) or \\boxed{}; else a lone letter on the last line; else None. Returned upper case.

    Example:
        >>> extract_choice("Answer: (b) at first... Final Answer: **\\\\boxed{C}**"), extract_choice("So it is\\nD.")
        ('C', 'D')
    """
    letters = _ANSWER_LETTER.findall(text)
    if letters:
        return letters[-1].upper()
    lines = text.strip().splitlines()
    last = lines[-1].strip() if lines else ""
    # a lone letter with its decoration is short; the length cap keeps the pattern's cost bounded on hostile lines
    lone = _LONE_LETTER.fullmatch(last) if len(last) <= 40 else None
    return lone.group(1).upper() if lone else None


def choice_reward(response: str, letter: str) -> float:
    """1.0 if the letter extracted from `response` is the gold `letter` (any case, "(B)" is fine), else 0.0.

    Example:
        >>> choice_reward("... so the answer: b", "B")
        1.0
    """
    gold = extract_choice(letter) or letter.strip().upper()
    return 1.0 if extract_choice(response) == gold else 0.0


def rule_rewards(problems: list, responses: list[str], workers: int | None = None) -> list[float]:
    """rule_reward of each (problem, response) pair, in order; the code rows run in threads (code_rewards), since each
    waits on sandbox processes, the others here.

    Example:
        >>> from domains.records import Problem
        >>> rule_rewards([Problem("p", "1+1?", "", "2")] * 2, ["\\\\boxed{2}", "\\\\boxed{3}"])
        [1.0, 0.0]
    """
    rewards = [None if p.domain == "code" else rule_reward(p, y) for p, y in zip(problems, responses)]
    code = [i for i, reward in enumerate(rewards) if reward is None]
    if code:
        code_scores = code_rewards([responses[i] for i in code], [problems[i].tests for i in code], workers=workers)
        for i, reward in zip(code, code_scores):
            rewards[i] = reward
    return rewards


def rule_reward(problem, response: str) -> float:
    """The rule-based reward of one response, by the problem's kind (docs/paper.md, "Data"): the tests for code, the
    letter for multiple choice, else the final answer (math-verify). `problem` is a domains.problems.Problem.

    Example:
        >>> from domains.records import Problem
        >>> rule_reward(Problem("p", "Which? A) 1 B) 2", "...", "B", domain="science", choices=("1", "2")), "Answer: B")
        1.0
    """
    if problem.domain == "code":
        return code_reward(response, problem.tests)
    if problem.choices:
        return choice_reward(response, problem.answer)
    return answer_reward(response, problem.answer)
