import json
import os

import pytest

from domains.problems import SYSTEM_PROMPT, load_problems, mine_hard, policy_messages, save_problems
from domains.records import DataError, Problem

PROBLEMS = [
    Problem(id="p0", question="What is 2+3?", reference="Add: 2+3 = 5.", answer="5"),
    Problem(id="p1", question="Half of 1?", reference="1/2 = \\frac{1}{2}. Ünïcode ok.", answer="\\frac{1}{2}"),
]


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def record(**fields):
    base = {"id": "a", "question": "q?", "reference": "r.", "answer": "1"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


# --- JSONL ------------------------------------------------------------------------------------------------------------


def test_save_then_load_round_trip(tmp_path):
    path = str(tmp_path / "problems.jsonl")
    save_problems(PROBLEMS, path)
    assert load_problems(path) == PROBLEMS
    assert [f for f in os.listdir(tmp_path)] == ["problems.jsonl"]  # the temp file was renamed, nothing left over


def test_save_is_atomic_when_interrupted(tmp_path):
    path = str(tmp_path / "problems.jsonl")
    save_problems(PROBLEMS, path)
    bad = Problem(id="x", question="q", reference="r", answer=object())  # json.dumps fails on the second record
    with pytest.raises(TypeError):
        save_problems([PROBLEMS[0], bad], path)
    assert load_problems(path) == PROBLEMS  # the old file is intact
    assert os.listdir(tmp_path) == ["problems.jsonl"]  # and the partial temp file is gone


def test_blank_lines_skipped_missing_id_numbered_and_numbers_become_text(tmp_path):
    path = write_lines(
        tmp_path / "set.jsonl",
        [
            json.dumps({"question": "q0", "reference": "r0", "answer": 42}),
            "",
            "   ",
            json.dumps({"question": "q1", "reference": "r1", "answer": "7"}),
        ],
    )
    problems = load_problems(path)
    assert [p.id for p in problems] == ["set-0", "set-1"]  # f"{basename}-{index}", index counts records
    assert problems[0].answer == "42"


def test_limit(tmp_path):
    path = str(tmp_path / "problems.jsonl")
    save_problems(PROBLEMS, path)
    assert load_problems(path, limit=1) == PROBLEMS[:1]
    assert load_problems(path, limit=0) == []


@pytest.mark.parametrize(
    "line, message",
    [
        (record(reference=...), "problems.jsonl line 3: field 'reference' is missing or empty"),
        (record(reference="   "), "problems.jsonl line 3: field 'reference' is missing or empty"),
        (record(question=""), "problems.jsonl line 3: field 'question' is missing or empty"),
        (record(answer=None), "problems.jsonl line 3: field 'answer' is missing or empty"),
        (record(answer=["5"]), "problems.jsonl line 3: field 'answer' must be a string"),
        ('{"question": "q?", "reference": ', "problems.jsonl line 3: invalid JSON"),
        ("[1, 2]", "problems.jsonl line 3: expected a JSON object"),
    ],
)
def test_bad_record_error_names_file_line_and_field(tmp_path, line, message):
    # line 1 good, line 2 blank, line 3 bad: the reported number counts blank lines (it is the editor's line number)
    path = write_lines(tmp_path / "problems.jsonl", [record(id="ok"), "", line])
    with pytest.raises(DataError) as error:
        load_problems(path)
    assert message in str(error.value)


def test_mapped_field_error_names_column_and_field(tmp_path):
    path = write_lines(tmp_path / "problems.jsonl", [json.dumps({"problem": "q", "solution": "", "final": "1"})])
    with pytest.raises(DataError, match=r"line 1: field 'solution' \(reference\) is missing or empty"):
        load_problems(path, question_key="problem", reference_key="solution", answer_key="final")


def test_duplicate_ids_name_both_lines(tmp_path):
    path = write_lines(tmp_path / "problems.jsonl", [record(id="p7"), record(id="p8"), record(id="p7")])
    with pytest.raises(DataError, match=r"problems.jsonl line 3: duplicate id 'p7' \(first seen at .*line 1\)"):
        load_problems(path)


def test_missing_file_and_wrong_type_are_named(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="cannot read problems file .*nope.jsonl"):
        load_problems(missing)
    other = tmp_path / "problems.csv"
    other.write_text("a,b\n")
    with pytest.raises(DataError, match="problems.csv: unsupported file type"):
        load_problems(str(other))
    assert issubclass(DataError, ValueError)


def test_invalid_utf8_is_named(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_bytes(record().encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match="problems.jsonl line 2: not valid UTF-8"):
        load_problems(str(path))


# --- Hugging Face datasets --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory):
    datasets = pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("hf")
    rows = [
        {"problem": "What is 2+3?", "solution": "2+3 = 5.", "final": "5"},
        {"problem": "What is 3*3?", "solution": "3*3 = 9.", "final": "9"},
        {"problem": "What is 1-1?", "solution": "", "final": "0"},  # bad row 2
    ]
    good = datasets.Dataset.from_list(rows[:2])
    good.save_to_disk(str(root / "plain"))
    datasets.DatasetDict({"test": good}).save_to_disk(str(root / "with_splits"))
    datasets.Dataset.from_list(rows).save_to_disk(str(root / "bad"))
    return root


MAPPING = dict(question_key="problem", reference_key="solution", answer_key="final")


def test_hf_dataset_from_disk_with_column_mapping(saved_dataset):
    problems = load_problems(str(saved_dataset / "plain"), **MAPPING)
    assert problems == [
        Problem(id="plain-0", question="What is 2+3?", reference="2+3 = 5.", answer="5"),
        Problem(id="plain-1", question="What is 3*3?", reference="3*3 = 9.", answer="9"),
    ]
    assert len(load_problems(str(saved_dataset / "plain"), limit=1, **MAPPING)) == 1


def test_hf_dataset_dict_picks_split(saved_dataset):
    assert len(load_problems(str(saved_dataset / "with_splits"), split="test", **MAPPING)) == 2
    with pytest.raises(DataError, match="no split 'train'"):
        load_problems(str(saved_dataset / "with_splits"), **MAPPING)


def test_hf_dataset_errors_name_row_and_column(saved_dataset):
    with pytest.raises(DataError, match=r"row 2: field 'solution' \(reference\) is missing or empty"):
        load_problems(str(saved_dataset / "bad"), **MAPPING)
    with pytest.raises(DataError, match=r"no column 'question' .*columns: problem, solution, final"):
        load_problems(str(saved_dataset / "plain"))  # default keys do not match these columns


# --- policy prompt and mining -----------------------------------------------------------------------------------------


def test_policy_messages_hold_the_question_only():
    problem = Problem(id="p", question="Find x if x+1=3.", reference="SECRET-REFERENCE x = 2", answer="SECRET-ANSWER")
    messages = policy_messages(problem)
    assert messages == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": problem.question}]
    assert policy_messages(problem.question) == messages
    assert "SECRET" not in json.dumps(messages)


def test_reference_absent_after_chat_template():
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    vocab = tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizers.Tokenizer(vocab), unk_token="[UNK]")
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    problem = Problem(id="p", question="Find x if x+1=3.", reference="SECRET-REFERENCE x = 2", answer="2")
    text = tokenizer.apply_chat_template(policy_messages(problem), tokenize=False, add_generation_prompt=True)
    assert problem.question in text and SYSTEM_PROMPT in text
    assert "SECRET-REFERENCE" not in text


def test_mine_hard_keeps_zero_correct():
    a, b, c = (Problem(id=i, question="q", reference="r", answer="1") for i in "abc")
    assert mine_hard([a, b, c], [0, 5, 0]) == [a, c]
    assert mine_hard([a, b, c], {"a": 1, "b": 0, "c": 64}) == [b]
    with pytest.raises(ValueError):
        mine_hard([a, b], [0])
    with pytest.raises(ValueError):
        mine_hard([a, b], {"a": 0})
