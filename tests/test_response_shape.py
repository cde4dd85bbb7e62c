"""analysis/response_shape.py on a hand-made Stage-I run directory: every number below is computed by hand."""

import json

import pytest

from analysis.response_shape import main


def write_run(path, metrics: list[dict], samples: list[dict]) -> None:
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    (path / "judge_samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


def test_first_and_last_window_by_hand(tmp_path, capsys):
    # 4 steps, window 2: steps 1-2 are "first", steps 3-4 "last"
    metrics = [
        {"step": t, "segments_per_response": seg, "response_length": n, "judge_score": j, "answer_accuracy": a}
        for t, seg, n, j, a in [
            (1, 9, 80, 0.2, 0.0),
            (2, 9, 82, 0.4, 0.0),
            (3, 10, 90, 0.1, 0.0),
            (4, 12, 100, 0.1, 0.0),
        ]
    ]
    samples = [
        # scores 4, 5, 1 -> s = 0.75, 1, 0: A_1 = 0.75, A_T = -1; boxed; the drop is the last segment: 0 after it
        {"step": 1, "response": "a###b###\\boxed{1}", "judge_text": ["Score: 4", "Score: 5", "Score: 1"]},
        # scores 5, 5 -> A_1 = 0, A_T = 0; no boxed answer; no drop (not counted in "after first drop")
        {"step": 2, "response": "a###b", "judge_text": ["Score: 5", "Score: 5"]},
        # scores 4, 1, 2, 1 -> s = 0.75, 0, 0.25, 0: A_1 = 0.75, A_T = -0.25; first drop at segment 2: 2 after it
        {
            "step": 3,
            "response": "a###b###c###\\boxed{2}",
            "judge_text": ["Score: 4", "Score: 1", "Score: 2", "Score: 1"],
        },
        # an unparseable prefix: boxed counted, advantages not
        {"step": 4, "response": "a###\\boxed{3}", "judge_text": ["Score: 4", "no verdict"]},
    ]
    write_run(tmp_path / "s0" / "process" / "stage1", metrics, samples)
    result = main([str(tmp_path / "s0" / "process" / "stage1"), "--window", "2"])
    first, last = next(iter(result.values()))["first"], next(iter(result.values()))["last"]
    assert first["segments_per_response"] == 9 and last["segments_per_response"] == 11  # (10 + 12) / 2
    assert first["response_length"] == 81 and last["judge_score"] == pytest.approx(0.1)
    assert first["boxed"] == 0.5 and last["boxed"] == 1.0
    assert first["A_1"] == pytest.approx(0.375) and first["A_T"] == pytest.approx(-0.5)  # (0.75 + 0) / 2, (-1 + 0) / 2
    assert last["A_1"] == pytest.approx(0.75) and last["A_T"] == pytest.approx(-0.25)  # the parseable sample only
    assert first["after_drop"] == 0 and last["after_drop"] == 2
    assert capsys.readouterr().out.startswith("s0/process  segments 9.00 -> 11.00")


def test_a_directory_without_judge_samples_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    with pytest.raises(SystemExit, match="no judge_samples.jsonl"):
        main([str(tmp_path / "run")])
