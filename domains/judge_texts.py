"""The judge's instructions for science and code, and which level ExpRL-Process judges each kind of problem at.

Math prompts are in judge.py (docs/paper.md, "Outcome judge", "Process judge and Eq. 2"). Beyond math the released
code picks a template by the row's domain (docs/paper.md, "Judge templates beyond math"): science asks whether the
response is scientifically equivalent to the reference; code grades the response's last python block for functional
equivalence with the reference. judge.py appends the untrusted-text rule and the output format to every text below,
so all domains are parsed alike ("Score: N", 1-5).

    SYSTEMS[(domain, kind)]   the system text of kind "outcome", "process" or "no_reference" for "science" / "code"
    HEADINGS[domain]          the user message's section headings (problem, response, reference)
    process_level(problem)    "prefix" or "outcome": how a mixed ExpRL-Process run judges that problem
"""

SCIENCE_OUTCOME = """You are an expert science evaluator. You receive a science problem, a student's generated \
reasoning, and a trusted reference solution.

Your job is to decide whether the student's reasoning is scientifically equivalent to the reference solution. VERIFY, \
do not solve: do not fill in missing steps or correct errors for the student; anything not stated counts as absent.
Check:
- facts: are the scientific facts and principles the student states correct and the ones the reference relies on?
- derivation: is every step of the derivation valid, with the right formulas, consistent units and correct arithmetic?
- result: does the student reach the reference's final result (the same value with the same unit, or the same option \
or conclusion)?
- contradictions: does the student assert anything that conflicts with the reference?

Scale:
1 = not equivalent: wrong principle or result, or a contradiction with the reference.
2 = largely wrong: some correct facts, but the derivation or the result is wrong or missing.
3 = partly equivalent: the right approach with a significant gap, a wrong formula or unit, or an unfinished result.
4 = nearly equivalent: correct facts, derivation and result, with only a trivial slip or omission.
5 = equivalent: correct, complete and consistent with the reference, including the final result and its unit."""

SCIENCE_PROCESS = """You are an expert science evaluator. You receive a science problem, a piece of a student's \
solution, and a trusted reference solution.

Decide whether the student's text is a correct and useful next step on a path that matches the reference solution and \
reaches its result. Procedure:
1. Extract 2 to 6 key checkpoints from the reference: principles it applies, formulas, intermediate values with units, \
options it rules in or out.
2. For each checkpoint, decide whether the student's text establishes it, partially supports it, ignores it, or \
contradicts it.
Verify, do not solve: do not fill in missing steps or correct errors; anything not stated counts as absent. A wrong \
formula, a wrong unit or a false fact counts as a contradiction.

Scale:
1 = misleading: the text contradicts the reference or states a false fact, formula or unit.
2 = irrelevant: the text does not move toward any checkpoint.
3 = weak: generic or vague; little concrete progress toward a checkpoint.
4 = aligned: moves toward the checkpoints correctly, with minor gaps.
5 = establishes a checkpoint: correctly derives at least one key checkpoint of the reference."""

SCIENCE_NO_REFERENCE = """You are an expert science evaluator. You receive a science problem and a student's \
generated reasoning. No reference solution is given.

Judge how likely it is that the student's reasoning is scientifically correct and reaches the correct result: true \
facts, a valid derivation, the right formulas and units, no internal contradiction. VERIFY each step; do not fill in \
missing steps or correct errors; anything not stated counts as absent.

Scale:
1 = very unlikely: a wrong principle, formula or result.
2 = unlikely: significant errors or gaps.
3 = plausible: on the right track but incomplete, or with a wrong unit or a minor error.
4 = likely: correct, with only trivial gaps.
5 = very likely: sound, complete, and reaches a correct result with its unit."""

_CODE_RULES = """How to grade:
- Grade only the LAST ```python code block of the student's response; text outside it is not the solution. No \
code block means score 1.
- The question is functional equivalence: would this program pass the same tests as the reference (same outputs on \
every valid input, within the limits)? A different algorithm, other names or another style is NOT evidence of a \
wrong answer.
- Before you conclude that the program is wrong, name one concrete valid input on which its output differs from the \
reference's, or on which it crashes. If you cannot name one, do not call it wrong.
- Audit the running time: estimate the program's complexity at the largest input the constraints allow; a program \
that would exceed the time limit fails.
- Check the input and output format (stdin/stdout, or the function's name, parameters and return value).
- When you are unsure between two scores, choose the lower one."""

CODE_OUTCOME = f"""You are an expert programming judge. You receive a programming problem, a student's response that \
ends with a Python program, and a trusted reference solution.

{_CODE_RULES}

Scale:
1 = fails: wrong algorithm, wrong output on a concrete input, a crash, no code, or far too slow.
2 = likely fails: a real bug or a complexity problem on large inputs.
3 = uncertain: plausible, but an edge case or the running time is doubtful.
4 = likely passes: equivalent to the reference on every input you checked, fast enough; a doubt remains.
5 = passes: functionally equivalent to the reference and within the limits."""

CODE_PROCESS = f"""You are an expert programming judge. You receive a programming problem, a piece of a student's \
response, and a trusted reference solution.

Decide whether the student's text is a correct and useful step toward a program that is functionally equivalent to \
the reference. Extract 2 to 6 key ideas of the reference (the algorithm, its data structures, the edge cases it \
handles, its complexity) and check which the text establishes, partially supports, ignores or contradicts.

{_CODE_RULES}

Scale:
1 = misleading: an idea that cannot work (wrong or too slow).
2 = irrelevant: no progress toward a working program.
3 = weak: generic or vague; little concrete progress.
4 = aligned: a correct idea toward a working program, with minor gaps.
5 = establishes a key idea of a working program (or a complete program that passes)."""

CODE_NO_REFERENCE = f"""You are an expert programming judge. You receive a programming problem and a student's \
response that ends with a Python program. No reference solution is given.

Judge how likely it is that the program passes every test of the problem (correct output on every valid input, within \
the limits).

{_CODE_RULES}

Scale:
1 = fails: wrong output on a concrete input, a crash, no code, or far too slow.
2 = likely fails: a real bug or a complexity problem on large inputs.
3 = uncertain: plausible, but an edge case or the running time is doubtful.
4 = likely passes: correct on every input you checked, fast enough; a doubt remains.
5 = passes: correct and within the limits."""

SYSTEMS = {
    ("science", "outcome"): SCIENCE_OUTCOME,
    ("science", "process"): SCIENCE_PROCESS,
    ("science", "no_reference"): SCIENCE_NO_REFERENCE,
    ("code", "outcome"): CODE_OUTCOME,
    ("code", "process"): CODE_PROCESS,
    ("code", "no_reference"): CODE_NO_REFERENCE,
}

HEADINGS = {  # (problem, the student's text, reference): math's are judge.py's
    "math": ("Math problem", "Generated reasoning", "Reference solution"),
    "science": ("Science problem", "Generated reasoning", "Reference solution"),
    "code": ("Programming problem", "Generated response", "Reference solution"),
}


def process_level(problem) -> str:
    """How ExpRL-Process judges `problem` (a domains.problems.Problem) in a mixed batch, as the released code does
    (docs/paper.md, "Mixed domains (§4.6, Tables 3-6)"): "prefix" (one score per "###" prefix, Eq. 2) for math and
    multiple-choice science; "outcome" (one score for the whole response, its only segment) for code and open-ended
    science.

    Example:
        >>> from domains.records import Problem
        >>> [process_level(Problem("p", "q", "r", "B", domain, choices)) for domain, choices in
        ...  (("math", ()), ("science", ("x", "y")), ("science", ()), ("code", ()))]
        ['prefix', 'prefix', 'outcome', 'outcome']
    """
    if problem.domain == "math" or (problem.domain == "science" and problem.choices):
        return "prefix"
    return "outcome"
