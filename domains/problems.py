"""Question / reference / answer records: loading, saving, the policy prompt, hard-problem mining.

ExpRL (docs/paper.md, "The idea", "Data") trains on hard question/reference pairs. Each record carries three texts:

    question   what the policy sees (and nothing else, docs/paper.md, "Policy prompt"),
    reference  a worked solution that only the judge sees,
    answer     the gold final answer, used by the sparse reward of Stage II and by evaluation.

Beside math, a record may be science (multiple choice or open-ended) or code
(docs/paper.md, "Mixed domains (§4.6, Tables 3-6)"): its `domain` comes from an "ability" or "domain" column, else
from the caller's `domain` argument, else "math". Records come from a JSONL file (one JSON object per line) or from a
Hugging Face dataset, with the column names mapped by keyword arguments; rows in the column layout of a known
benchmark (SciKnowEval, LiveCodeBench, GPQA, OlympiadBench) are recognised by their columns and read by
domains/benchmarks.py.
Bad input stops with one `DataError` that names the file, the line (or row) and the field.
"""

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields

from domains.records import DOMAINS, LETTERS, DataError, Problem

# docs/paper.md, "Policy prompt"
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
# The other domains' instructions (docs/paper.md, "Policy prompts and references beyond math"); our own wording.
CHOICE_PROMPT = (
    "Please reason step by step about the question and its lettered options, then end your response with one line of "
    'the form "Answer: X", where X is the letter of the option you choose.'
)
CODE_PROMPT_STDIN = (
    "Solve the programming problem in Python 3. Your program reads the input from standard input and prints the "
    "answer to standard output. Reason about the algorithm and its running time first, then give the complete program "
    "in one ```python code block at the end of your response."
)
CODE_PROMPT_FUNCTION = (
    "Solve the programming problem in Python 3 by completing the starter code: keep its class, function name and "
    "parameters; each test calls that function with its arguments and checks the returned value (nothing is read "
    "from standard input). Reason about the algorithm and its running time first, then give the complete code, "
    "starter included, in one ```python code block at the end of your response."
)
# ----------------------------------------------------------------------------------------------------------------------
# Loading


def load_problems(
    source: str,
    split: str = "train",
    question_key: str = "question",
    reference_key: str = "reference",
    answer_key: str = "answer",
    id_key: str = "id",
    limit: int | None = None,
    domain: str | None = None,
    require_reference: bool = True,
) -> list[Problem]:
    """Load problems from a .jsonl file or a Hugging Face dataset (docs/paper.md, "Data").

    `source` is one of:
      - a path ending in ".jsonl": one JSON object per line, blank lines skipped;
      - a local directory: a dataset written by `datasets.Dataset.save_to_disk` (or any folder `load_dataset` reads);
      - anything else: a dataset name for `datasets.load_dataset` (needs the hub cache or network), optionally with a
        configuration and a split: "Hothan/OlympiadBench:OE_TO_physics_en_COMP@train".
    The *_key arguments name the columns. A record without an id gets f"{basename}-{index}" (index counts records
    from 0). `limit` keeps the first `limit` problems. A row in a benchmark's own column layout (domains/benchmarks.py)
    is read by that layout whatever the *_key arguments say.

    `domain` is the domain of rows without an "ability" or "domain" column (None: "math"). `require_reference=False`
    accepts rows without a reference (evaluation sets; Stage I needs one for every row). A code row needs `tests`
    instead of an answer; a multiple-choice row's answer is the letter of one of its choices.

    Example: toy.jsonl holds the one line {"problem": "1+1?", "solution": "1+1=2", "final": "2"}; then
        load_problems("toy.jsonl", question_key="problem", reference_key="solution", answer_key="final")
        == [Problem(id="toy-0", question="1+1?", reference="1+1=2", answer="2")]
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    if domain is not None and domain not in DOMAINS:
        raise ValueError(f"domain must be one of {', '.join(DOMAINS)} or None, got {domain!r}")
    keys = {"question": question_key, "reference": reference_key, "answer": answer_key, "id": id_key}
    name = source if os.path.exists(source) else source.split("@")[0].split(":")[0]  # a hub id without config, split
    stem = os.path.splitext(os.path.basename(os.path.normpath(name)))[0]
    if source.endswith(".jsonl"):
        records = _jsonl_records(source)
    elif os.path.isdir(source):
        records = _hf_records(source, split, keys, local=True, require_reference=require_reference)
    elif os.path.isfile(source):
        raise DataError(f"{source}: unsupported file type; expected a .jsonl file or a dataset directory")
    else:
        records = _hf_records(source, split, keys, local=False, require_reference=require_reference)

    problems: list[Problem] = []
    first_seen: dict[str, str] = {}  # id -> where it was first seen, to name both places of a duplicate
    for index, (where, row) in enumerate(records):
        if limit is not None and len(problems) >= limit:
            break
        problem = _problem_from_row(
            row, where, keys, f"{stem}-{index}", domain=domain or "math", require_reference=require_reference
        )
        if problem.id in first_seen:
            raise DataError(f"{where}: duplicate id {problem.id!r} (first seen at {first_seen[problem.id]})")
        first_seen[problem.id] = where
        problems.append(problem)
    return problems


def _jsonl_records(path: str):
    """Yield (where, row) for each non-blank line of a JSONL file; where = "<path> line <n>" (1-based)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DataError(f"cannot read problems file {path}: {e.strerror or e}") from None
    for number, raw in enumerate(lines, start=1):
        where = f"{path} line {number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{where}: not valid UTF-8 text") from None
        if not line.strip():
            continue  # blank lines (often a trailing newline) are allowed
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, row


def _hf_records(source: str, split: str, keys: dict[str, str], local: bool, require_reference: bool = True):
    """Yield (where, row) for each row of a Hugging Face dataset; where = "dataset <source> split <s> row <i>"."""
    import datasets  # lazy: importing datasets costs seconds and JSONL users never need it

    from domains.benchmarks import layout_of

    name, config = source, None
    if not local:  # "owner/name:config@split"
        name, _, split = name.partition("@") if "@" in name else (name, "", split)
        name, _, config = name.partition(":")
    try:
        if local and _is_saved_dataset(source):
            dataset = datasets.load_from_disk(source)
            if isinstance(dataset, datasets.DatasetDict):
                if split not in dataset:
                    raise DataError(f"dataset {source}: no split {split!r} (splits: {', '.join(dataset)})")
                dataset = dataset[split]
        else:
            dataset = datasets.load_dataset(name, config or None, split=split)
    except DataError:
        raise
    except Exception as e:  # a missing name, no network, a corrupt folder: one message naming the source
        raise DataError(f"cannot load dataset {source} (split {split!r}): {type(e).__name__}: {e}") from None

    columns = dataset.column_names
    needed = ("question", "reference") if require_reference else ("question",)
    for field in needed if layout_of(columns) is None else ():  # a wrong mapping fails once, not on every row
        if keys[field] not in columns:
            raise DataError(
                f"dataset {source} split {split!r}: no column {keys[field]!r} for field '{field}' "
                f"(columns: {', '.join(columns)}); pass {field}_key=... to map it"
            )
    for index, row in enumerate(dataset):
        yield f"dataset {source} split {split!r} row {index}", row


def _is_saved_dataset(path: str) -> bool:
    """True for a folder written by save_to_disk (Dataset or DatasetDict); other folders go to load_dataset."""
    return any(os.path.exists(os.path.join(path, name)) for name in ("state.json", "dataset_dict.json"))


def _problem_from_row(
    row: Mapping, where: str, keys: dict[str, str], default_id: str, domain: str = "math", require_reference=True
) -> Problem:
    """Build a Problem from one record, or raise DataError naming `where` and the bad field."""
    from domains.benchmarks import convert_row

    converted = convert_row(row, where)  # a benchmark's own columns -> ours (None: the row is in our layout)
    if converted is not None:
        row, keys = converted, {"question": "question", "reference": "reference", "answer": "answer", "id": keys["id"]}
    domain = _domain_field(row, where, domain)
    optional = {"reference"} if not require_reference else set()
    if domain == "code":
        optional.add("answer")  # the tests decide
    texts = {
        field: _text_field(row, keys[field], field, where, optional=field in optional)
        for field in ("question", "reference", "answer")
    }
    raw_id = row.get(keys["id"])
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        problem_id = default_id
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool):
        problem_id = str(raw_id).strip()
    else:
        raise DataError(f"{where}: field {keys['id']!r} (id) must be a string or integer, got {type(raw_id).__name__}")
    extra = {f.name: row[f.name] for f in fields(Problem)[5:] if row.get(f.name) not in (None, "", [])}
    if "choices" in extra:
        extra["choices"] = tuple(extra["choices"])
        letters, letter = LETTERS[: len(extra["choices"])], texts["answer"].strip().upper()
        if len(letter) != 1 or letter not in letters:
            raise DataError(f"{where}: field 'answer' must be one of the letters {', '.join(letters)}, got {letter!r}")
        texts["answer"] = letter
    if domain == "code":
        _check_tests(extra.get("tests", ""), where)
    return Problem(id=problem_id, **texts, domain=domain, **extra)


def _domain_field(row: Mapping, where: str, default: str) -> str:
    """The row's domain: its "ability" (the authors' name) or "domain" column, else `default`."""
    for key in ("ability", "domain"):
        value = row.get(key)
        if value not in (None, ""):
            if not isinstance(value, str) or value.strip().lower() not in DOMAINS:
                raise DataError(f"{where}: field '{key}' (domain) must be one of {', '.join(DOMAINS)}, got {value!r}")
            return value.strip().lower()
    return default


def _check_tests(tests: str, where: str) -> None:
    """A code row's tests must be there and readable by domains.rule_rewards.decode_tests, with at least one test."""
    from domains.rule_rewards import decode_tests

    if not tests:
        raise DataError(f"{where}: field 'tests' is missing or empty (a code problem needs its tests)")
    try:
        count = len(decode_tests(tests)["inputs"])
    except Exception as e:
        raise DataError(f"{where}: field 'tests' cannot be read ({type(e).__name__}: {e})") from None
    if count == 0:
        raise DataError(f"{where}: field 'tests' holds no test")


def _text_field(row: Mapping, key: str, field: str, where: str, optional: bool = False) -> str:
    """The non-empty text in row[key] ("" when `optional` and absent); numbers become text (JSON answers are often
    bare integers like 42)."""
    value = row.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return ""
        label = f"'{key}'" if key == field else f"'{key}' ({field})"
        needed = " (training with a judge or a teacher needs every problem's reference)" if field == "reference" else ""
        raise DataError(f"{where}: field {label} is missing or empty{needed}")
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------------------------------------------------
# Saving


def save_problems(problems: Sequence[Problem], path: str) -> None:
    """Write problems as JSONL, atomically: an interrupted write leaves the old file (or none), never half of one.

    Example: save_problems([Problem("p0", "1+1?", "1+1=2", "2")], "hard.jsonl") writes the line
        {"id": "p0", "question": "1+1?", "reference": "1+1=2", "answer": "2"}, which load_problems reads back.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # The temp file lives in the same directory so os.replace is a rename on one filesystem (atomic on POSIX).
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", suffix=".jsonl", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for problem in problems:
                record = {k: list(v) if k == "choices" else v for k, v in asdict(problem).items()}
                defaults = {f.name: f.default for f in fields(Problem)[4:]}
                record = {k: v for k, v in record.items() if k not in defaults or v != defaults[k] and v != []}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())  # the bytes reach the disk before the rename makes them visible
        os.replace(tmp_path, path)
    except BaseException:  # includes KeyboardInterrupt: remove the partial temp file, keep the old target
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


# ----------------------------------------------------------------------------------------------------------------------
# The policy prompt and hard-problem mining


def question_text(problem: Problem) -> str:
    """The question as the policy and the judge read it: a multiple-choice question with its options lettered A, B, ...
    one per line; a code question with its starter code; otherwise the question itself, unchanged.

    Example:
        >>> print(question_text(Problem("p", "Which is a noble gas?", "", "B", "science", ("N2", "Ne"))))
        Which is a noble gas?
        <BLANKLINE>
        A) N2
        B) Ne
    """
    if problem.choices:
        options = "\n".join(f"{letter}) {text}" for letter, text in zip(LETTERS, problem.choices))
        return f"{problem.question}\n\n{options}"
    if problem.starter_code:
        return f"{problem.question}\n\nStarter code:\n```python\n{problem.starter_code.rstrip()}\n```"
    return problem.question


def policy_messages(problem_or_question: Problem | str) -> list[dict[str, str]]:
    """Chat messages the policy samples from: the system prompt and the question ONLY (docs/paper.md, "Policy prompt").

    The reference is the judge's hidden information; it must never enter the policy context, so this function takes
    the question out of a Problem and drops everything else. The system prompt depends on the problem's kind
    (docs/paper.md, "Policy prompts and references beyond math"): multiple choice ends with "Answer: X"; code ends
    with a ```python block that reads stdin, or completes the starter code; math and open-ended science box their
    final answer (the math prompt is the paper's).

    Example:
        >>> policy_messages("What is 2+3?")[1]
        {'role': 'user', 'content': 'What is 2+3?'}
        >>> policy_messages(Problem("p", "Which?", "", "A", "science", ("yes", "no")))[0]["content"] == CHOICE_PROMPT
        True
    """
    if not isinstance(problem_or_question, Problem):
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": problem_or_question}]
    problem = problem_or_question
    if problem.domain == "code":
        system = CODE_PROMPT_FUNCTION if problem.starter_code else CODE_PROMPT_STDIN
    else:
        system = CHOICE_PROMPT if problem.choices else SYSTEM_PROMPT
    return [{"role": "system", "content": system}, {"role": "user", "content": question_text(problem)}]


def encode_prompts(tokenizer, messages_list: list[list[dict]], **chat_template_kwargs) -> list[list[int]]:
    """Chat messages -> prompt token ids ending with the assistant header (add_generation_prompt).

    `chat_template_kwargs` reach the template, e.g. `enable_thinking=False` for hybrid Qwen3 models
    (docs/paper.md, "Policy prompt": thinking mode off).
    """
    return [
        list(
            tokenizer.apply_chat_template(
                m, add_generation_prompt=True, tokenize=True, return_dict=False, **chat_template_kwargs
            )
        )
        for m in messages_list
    ]


def mine_hard(problems: Sequence[Problem], correct_counts: Sequence[int] | Mapping[str, int]) -> list[Problem]:
    """Keep the problems the base model never solved: 0 correct out of k samples (docs/paper.md, "Data": k = 64).

    `correct_counts` is either aligned with `problems` or a mapping id -> count. The sampling that produces the counts
    lives with the sampler; this filter is pure.

    Example:
        >>> easy, hard = Problem("a", "q", "r", "1"), Problem("b", "q", "r", "2")
        >>> [p.id for p in mine_hard([easy, hard], [3, 0])]
        ['b']
    """
    if isinstance(correct_counts, Mapping):
        missing = [p.id for p in problems if p.id not in correct_counts]
        if missing:
            raise ValueError(f"mine_hard: no correct count for {len(missing)} problem(s), e.g. {missing[0]!r}")
        counts = [correct_counts[p.id] for p in problems]
    else:
        counts = list(correct_counts)
        if len(counts) != len(problems):
            raise ValueError(f"mine_hard: {len(problems)} problems but {len(counts)} correct counts")
    return [problem for problem, count in zip(problems, counts) if count == 0]
