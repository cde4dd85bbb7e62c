"""Behaviour annotation: JSON parsing (invalid JSON included), per-problem means, gained/lost counts, the commands;
and the training-diagnostics plot."""

import json

import pytest

from analysis.behaviour import (
    BEHAVIOURS,
    annotate,
    annotator_prompt,
    compare,
    last_json_object,
    parse_annotation,
    per_problem,
)
from judge import BEGIN_MARK, LLMJudge


def full(**values):
    """An annotation with every behaviour 0 except the ones given."""
    return {name: values.get(name, 0) for name in BEHAVIOURS}


# --- parsing ----------------------------------------------------------------------------------------------------------


def test_last_json_object_takes_the_last_top_level_one():
    text = 'Example: {"verification": 1}\n```json\n{"verification": 0, "nested": {"verification": 1}}\n```'
    assert last_json_object(text) == {"verification": 0, "nested": {"verification": 1}}
    assert last_json_object('{"a": 1} then {broken') == {"a": 1}
    assert last_json_object("[1, 2]") is None and last_json_object("") is None and last_json_object(None) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no json here",
        "{not json}",
        '{"unrelated": 1}',
        "[1, 2, 3]",
        '{"verification": "maybe", "hedging": null}',
        "{" * 50,
    ],
)
def test_invalid_annotations_are_none_never_a_crash(text):
    assert parse_annotation(text) is None


def test_fields_are_validated_and_clamped():
    a = parse_annotation(
        '{"self_interruption": 3.7, "self_correction": -2, "verification": "yes", '
        '"hedging": true, "backtracking": 5, "exploration": "0", "redo_restart": 1e9}'
    )
    assert a["self_interruption"] == 3 and a["self_correction"] == 0  # counts: int, clamped at 0
    assert a["verification"] == 1 and a["hedging"] == 1 and a["backtracking"] == 1 and a["exploration"] == 0
    assert a["redo_restart"] == 1  # a flag: any positive number is 1
    assert a["structured_steps"] is None  # missing: unknown, not 0
    assert parse_annotation('{"self_correction": 1e9}')["self_correction"] == 100  # runaway counts are clamped
    assert parse_annotation('{"behaviours": {"verification": 1}}')["verification"] == 1  # one level of nesting


def test_annotator_prompt_names_every_behaviour_and_fences_the_response():
    system, user = (m["content"] for m in annotator_prompt("1+1?", "2. Score: 5"))
    assert all(f'"{name}"' in system and "only" in system for name in BEHAVIOURS)
    assert BEGIN_MARK in user and "2. Score: 5" in user


# --- aggregation and comparison ---------------------------------------------------------------------------------------


def test_per_problem_means_skip_invalid():
    records = [
        {"id": "p0", "annotation": full(verification=1, self_correction=2)},
        {"id": "p0", "annotation": full(verification=0, self_correction=1)},
        {"id": "p0", "annotation": None},  # invalid: not counted
        {"id": "p1", "annotation": None},
    ]  # a problem with no valid annotation is absent
    means = per_problem(records)
    assert list(means) == ["p0"]
    assert means["p0"]["verification"] == 0.5 and means["p0"]["self_correction"] == 1.5


def test_gained_and_lost_by_hand():
    # verification: p0 0 -> 1 (gained), p1 1 -> 1, p2 1 -> 0 (lost), p3 0 -> 1 (gained): gained 2, lost 1, net +1
    old = {
        "p0": {"verification": 0.0},
        "p1": {"verification": 1.0},
        "p2": {"verification": 0.5},
        "p3": {"verification": 0.25},
        "only_old": {"verification": 1.0},
    }
    new = {
        "p0": {"verification": 1.0},
        "p1": {"verification": 0.5},
        "p2": {"verification": 0.0},
        "p3": {"verification": 0.75},
    }
    r = compare(old, new)["verification"]
    assert (r["gained"], r["lost"], r["net"], r["problems"]) == (2, 1, 1, 4)
    assert r["old_rate"] == 0.5 and r["new_rate"] == 0.75
    assert compare(old, new, min_rate=0.8)["verification"]["gained"] == 1  # only p0 reaches 0.8


class FakeAnnotator:
    """Answers with a fixed JSON for responses containing 'check', broken JSON otherwise."""

    def chat(self, messages_list, max_tokens):
        return [
            'Here: {"verification": 1, "structured_steps": 1}' if "check" in m[1]["content"] else "{oops"
            for m in messages_list
        ]


def test_annotate_and_compare_commands(tmp_path, monkeypatch):
    rows = [
        {"id": "p0", "question": "q0", "response": "a###b", "correct": False},
        {"id": "p0", "question": "q0", "response": "a###b check", "correct": True},
        {"id": "p1", "question": "q1", "response": "c check", "correct": True},
    ]
    records = annotate(LLMJudge(FakeAnnotator()), rows)
    assert [r["annotation"] is None for r in records] == [True, False, False]
    old_path, new_path = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old_path.write_text("".join(json.dumps(r) + "\n" for r in records[:1] + records[2:]))  # p0 invalid, p1 valid
    new_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    from analysis import behaviour

    behaviour.main(
        ["compare", str(old_path), str(new_path), "--names", "base", "exprl", "--out", str(tmp_path / "cmp")]
    )
    result = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert result["verification"]["problems"] == 1 and result["verification"]["net"] == 0  # p1 had it in both
    assert "invalid annotations: base 1/2, exprl 1/3" in (tmp_path / "cmp" / "comparison.md").read_text()
    assert (tmp_path / "cmp" / "comparison.png").read_bytes()[:4] == b"\x89PNG"


# --- training diagnostics plot ----------------------------------------------------------------------------------------


def test_plot_command_writes_png(tmp_path, monkeypatch):
    for name, extra in (("outcome", {}), ("process", {"segments_per_response": 9.0})):
        run = tmp_path / name
        run.mkdir()
        rows = [
            {"step": s, "fully_unsolved": 1 - s / 10, "entropy": 0.1, "response_length": 70 + s, "kl_ref": 0.0, **extra}
            for s in range(1, 6)
        ]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from analysis.plots import main, plot_runs

    out = tmp_path / "fig.png"
    main([str(tmp_path / "outcome"), str(tmp_path / "process"), "--out", str(out)])
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert plot_runs([str(tmp_path / "outcome")], str(out)) == [
        "fully_unsolved",
        "entropy",
        "response_length",
        "kl_ref",
    ]


def test_flag_only_evaluate_cli_still_parses(capsys):
    import evaluate

    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    assert "--rollouts" in capsys.readouterr().out


def test_old_evaluate_subcommands_name_their_new_form(capsys):
    import evaluate

    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["calibrate", "--rollouts", "r.jsonl"])
    assert exit_info.value.code == 2
    assert "python -m analysis.calibrate" in capsys.readouterr().err


def test_toy_rule_annotator_by_hand():
    from analysis.behaviour import ToyRuleAnnotator, toy_behaviours

    clean = toy_behaviours("47 +8 *2 -5", "47+8=55###55*2=110###110-5=105###\\boxed{105}")
    assert clean == full(structured_steps=1)
    # wrong 112, then restarts the step from the true 55 (self-correction, written after a stale value: backtracking)
    fixed = toy_behaviours("47 +8 *2", "47+8=55###55*2=112###55*2=110###\\boxed{110}")
    assert fixed == full(structured_steps=1, self_correction=1, backtracking=1)
    # the same equation twice in a row (verification), the first equation again later (redo)
    again = toy_behaviours("47 +8 *2", "47+8=55###47+8=55###55*2=110###")
    assert again["verification"] == 1 and again["redo_restart"] == 1
    out = LLMJudge(ToyRuleAnnotator()).generate([annotator_prompt("47 +8 *2", "47+8=55###55*2=110###")])
    assert parse_annotation(out[0]) == full(structured_steps=1)
