"""Benchmarks' own column layouts -> our record fields (docs/paper.md, "Datasets of the mixed-domain setting").

The mixed-domain setting reads public benchmarks as they are published, from the hub or from a JSONL file that
`datasets` exported (`Dataset.to_json`: the same columns). A row is recognised by its columns (`layout_of`) and turned
into the fields of domains.problems.Problem (`convert_row`):

    sciknoweval     hicai-zju/SciKnowEval: question, answer, choices {label, text}, answerKey, type, domain, details
                    -> science; multiple choice when it has options ("mcq-..." types), else open-ended
    livecodebench   livecodebench/code_generation_lite: question_content, starter_code, public_test_cases,
                    private_test_cases (JSON, or base64(zlib(pickle(JSON)))), metadata {"func_name"}, contest_date
                    -> code, its public and private tests merged (domains.rule_rewards.decode_tests)
    gpqa            Idavidrein/gpqa: Question, Correct Answer, Incorrect Answer 1-3, Explanation
                    -> science, multiple choice, the four options shuffled by a seeded RNG per row
    olympiadbench   Hothan/OlympiadBench: question, context, solution [...], final_answer [...], unit, error, subject
                    -> science (math for its math subsets), the unit named in the question

A row that already carries a "reference" column keeps it (a benchmark row rarely has one: to train Stage I on it,
add one). Missing or unreadable fields raise domains.problems.DataError naming the row and the field.
"""

import json
import random
from collections.abc import Mapping

from domains.records import LETTERS, DataError

GPQA_SEED = 0  # the option order of a GPQA row: random.Random(f"{GPQA_SEED}:{record id}") shuffles it

# The columns that identify each layout (all must be present).
SIGNATURES = {
    "livecodebench": ("question_content", "public_test_cases"),
    "gpqa": ("Question", "Correct Answer", "Incorrect Answer 1"),
    "olympiadbench": ("question", "final_answer", "solution", "unit"),
    "sciknoweval": ("question", "answerKey", "choices", "type"),
}


def layout_of(columns) -> str | None:
    """The name of the layout whose columns are all in `columns`, or None (our own question/reference/answer layout).

    Example:
        >>> layout_of(["question_content", "starter_code", "public_test_cases"]), layout_of(["question", "answer"])
        ('livecodebench', None)
    """
    for name, needed in SIGNATURES.items():
        if all(column in columns for column in needed):
            return name
    return None


def convert_row(row: Mapping, where: str) -> dict | None:
    """The row in our field names (question, reference, answer, domain, choices, tests, starter_code, id), or None
    when it is in no benchmark layout."""
    name = layout_of(row)
    if name is None:
        return None
    fields = {"sciknoweval": from_sciknoweval, "livecodebench": from_livecodebench, "gpqa": from_gpqa}
    fields = fields.get(name, from_olympiadbench)(row, where)
    if isinstance(row.get("reference"), str) and row["reference"].strip():
        fields["reference"] = row["reference"]
    return fields


def _text(row: Mapping, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field '{key}' is missing or empty")
    return value.strip()


def from_sciknoweval(row: Mapping, where: str) -> dict:
    """SciKnowEval: options with labels and an answerKey (multiple choice), or an open-ended answer text, which is
    then both the reference and the answer.

    Example:
        >>> row = {"question": "Unit of force?", "answer": "", "type": "mcq-2-choices", "answerKey": "B",
        ...        "choices": {"label": ["A", "B"], "text": ["joule", "newton"]}, "domain": "Physics"}
        >>> fields = from_sciknoweval(row, "row 0")
        >>> fields["choices"], fields["answer"], fields["domain"]
        (('joule', 'newton'), 'B', 'science')
    """
    question = _text(row, "question", where)
    choices = row.get("choices") or {}
    labels, texts = list(choices.get("label") or []), list(choices.get("text") or [])
    if texts:
        if len(labels) != len(texts):
            raise DataError(f"{where}: field 'choices' has {len(labels)} labels but {len(texts)} texts")
        key = str(row.get("answerKey") or "").strip()
        if key not in labels:
            raise DataError(f"{where}: field 'answerKey' must be one of the labels {labels}, got {key!r}")
        answer = LETTERS[labels.index(key)]  # the options are re-lettered A, B, ... in their order
        return {"question": question, "reference": "", "answer": answer, "domain": "science", "choices": tuple(texts)}
    answer = _text(row, "answer", where)
    return {"question": question, "reference": answer, "answer": answer, "domain": "science"}


def from_livecodebench(row: Mapping, where: str) -> dict:
    """LiveCodeBench: the statement, the starter code, and every public and private test in one JSON text; functional
    problems name their function in metadata's "func_name".

    Example:
        >>> row = {"question_id": "abc1", "question_content": "Print a+b.", "starter_code": "",
        ...        "public_test_cases": '[{"input": "1 2\\\\n", "output": "3\\\\n", "testtype": "stdin"}]',
        ...        "private_test_cases": '[{"input": "5 5\\\\n", "output": "10\\\\n", "testtype": "stdin"}]',
        ...        "metadata": "{}"}
        >>> json.loads(from_livecodebench(row, "row 0")["tests"])
        {'inputs': ['1 2\\n', '5 5\\n'], 'outputs': ['3\\n', '10\\n'], 'fn_name': None}
    """
    from domains.rule_rewards import decode_tests

    metadata = row.get("metadata") or {}
    try:
        metadata = json.loads(metadata) if isinstance(metadata, str) else dict(metadata)
    except ValueError:
        raise DataError(f"{where}: field 'metadata' is not a JSON object") from None
    inputs, outputs = [], []
    for key in ("public_test_cases", "private_test_cases"):
        if not row.get(key):
            continue
        try:
            tests = decode_tests(row[key])
        except Exception as e:
            raise DataError(f"{where}: field '{key}' cannot be read ({type(e).__name__}: {e})") from None
        inputs, outputs = inputs + tests["inputs"], outputs + tests["outputs"]
    tests = {"inputs": inputs, "outputs": outputs, "fn_name": metadata.get("func_name") or None}
    return {
        "id": row.get("question_id"),
        "question": _text(row, "question_content", where),
        "reference": "",
        "answer": "",
        "domain": "code",
        "tests": json.dumps(tests),
        "starter_code": row.get("starter_code") or "",
    }


def from_gpqa(row: Mapping, where: str) -> dict:
    """GPQA: the correct answer and three distractors, shuffled by a per-row seeded RNG so that the gold letter is
    not always A and the same row always gets the same order; the expert's Explanation is the reference.

    Example:
        >>> row = {"Record ID": "r1", "Question": "Which?", "Correct Answer": "right", "Incorrect Answer 1": "w1",
        ...        "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3", "Explanation": "Because."}
        >>> fields = from_gpqa(row, "row 0")
        >>> fields["choices"][LETTERS.index(fields["answer"])]
        'right'
    """
    correct = _text(row, "Correct Answer", where)
    options = [correct] + [_text(row, f"Incorrect Answer {i}", where) for i in (1, 2, 3)]
    key = row.get("Record ID") or row.get("Question")
    random.Random(f"{GPQA_SEED}:{key}").shuffle(options)
    explanation = row.get("Explanation")
    return {
        "id": row.get("Record ID"),
        "question": _text(row, "Question", where),
        "reference": explanation.strip() if isinstance(explanation, str) else "",
        "answer": LETTERS[options.index(correct)],
        "domain": "science",
        "choices": tuple(options),
    }


def from_olympiadbench(row: Mapping, where: str) -> dict:
    """OlympiadBench (text-only, open-ended): context + question, the unit named in the question, the worked
    solutions as the reference, the final answers (joined by ", " when several) as the answer. The `error` column (a
    numeric tolerance) is not applied: math-verify compares the boxed answer exactly.

    Example:
        >>> row = {"id": 7, "question": "Find the speed.", "context": None, "solution": ["v = d / t = 3"],
        ...        "final_answer": ["$3$"], "unit": "m/s", "error": None, "subject": "Physics"}
        >>> fields = from_olympiadbench(row, "row 0")
        >>> fields["question"].splitlines()[-1], fields["answer"], fields["domain"]
        ('The final answer is in m/s: put only its value inside \\\\boxed{}, without the unit.', '$3$', 'science')
    """
    question = _text(row, "question", where)
    if isinstance(row.get("context"), str) and row["context"].strip():
        question = f"{row['context'].strip()}\n\n{question}"
    unit = row.get("unit")
    if isinstance(unit, str) and unit.strip():
        unit_rule = f"The final answer is in {unit.strip()}: put only its value inside \\boxed{{}}, without the unit."
        question += f"\n\n{unit_rule}"
    finals = row.get("final_answer")
    finals = [finals] if isinstance(finals, str) else list(finals or [])
    if not finals or not all(isinstance(f, str) and f.strip() for f in finals):
        raise DataError(f"{where}: field 'final_answer' is missing or empty")
    solutions = row.get("solution")
    solutions = [solutions] if isinstance(solutions, str) else list(solutions or [])
    return {
        "id": row.get("id"),
        "question": question,
        "reference": "\n\n".join(s.strip() for s in solutions if isinstance(s, str) and s.strip()),
        "answer": ", ".join(f.strip() for f in finals),
        "domain": "math" if str(row.get("subject", "")).lower().startswith("math") else "science",
    }
