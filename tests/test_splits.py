"""The toy problem files: the untouched test split shares no question with any other file, and
`python -m toy.world test` rebuilds it byte for byte."""

import glob
import os

import toy.world as toy
from domains.problems import load_problems
from plumbing.common import REPO

DATA = os.path.join(REPO, "toy_data")


def test_test_split_shares_no_question_with_any_other_file():
    test = [p.question for p in load_problems(os.path.join(DATA, "test.jsonl"))]
    assert len(test) == len(set(test)) == 128  # 128 distinct problems
    assert all(len(toy.parse_question(q)[1]) == 8 for q in test)  # the held-out difficulty: 8 operations
    for path in glob.glob(os.path.join(DATA, "**", "*.jsonl"), recursive=True):  # sub-folders too
        if not path.endswith("test.jsonl"):
            others = {p.question for p in load_problems(path)}
            assert not others & set(test), os.path.basename(path)


def test_test_split_is_rebuilt_by_its_command(tmp_path):
    out = tmp_path / "test.jsonl"
    others = [os.path.join(DATA, f) for f in ("stage1_train.jsonl", "heldout.jsonl", "easy.jsonl")]
    made = toy.make_test_split(toy.SplitArgs(output=str(out)), others)
    assert out.read_bytes() == open(os.path.join(DATA, "test.jsonl"), "rb").read()
    assert made[0].id == "test-1004-0"  # seed 1004, used by no other file (1 train, 2 held-out, 3 easy; 1001-3 retired)


def test_a_question_in_another_file_is_skipped(tmp_path):
    # put the first test question into a fake "other" file: the split must draw a replacement instead
    first = load_problems(os.path.join(DATA, "test.jsonl"))[0]
    other = tmp_path / "other.jsonl"
    other.write_text(f'{{"id": "x", "question": "{first.question}", "reference": "r", "answer": "1"}}\n')
    made = toy.make_test_split(toy.SplitArgs(output=str(tmp_path / "t.jsonl")), [str(other)])
    assert first.question not in {p.question for p in made} and len(made) == 128
