"""The first-command sweep's table comes from the runs' own evaluations (faked here): counts and ranges by hand."""

import json

from scripts.first_command import Args, main


def _fake(root, seed, before, after):
    for tag, values in (("step_0000", before), ("step_0060", after)):
        path = root / "outcome-60" / f"s{seed}" / "eval" / tag / "pass_at_k.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"pass@k": {"1": values[0], "16": values[1]}}))
    (root / "outcome-60" / f"s{seed}" / "done").write_text("1.0\n")


def test_table_counts_rises_and_ranges(tmp_path):
    _fake(tmp_path, 0, (0.018, 0.103), (0.093, 0.289))
    _fake(tmp_path, 1, (0.021, 0.140), (0.018, 0.127))  # both fell
    _fake(tmp_path, 2, (0.019, 0.114), (0.097, 0.114))  # pass@16 equal: not a rise
    text = main(Args(settings="outcome-60", seeds="0,1,2", output_dir=str(tmp_path), report_only=True))
    assert "| 1 | 0.021 | 0.140 | 0.018 | 0.127 |" in text
    # means: before (0.018 + 0.021 + 0.019) / 3 = 0.0193, after (0.093 + 0.018 + 0.097) / 3 = 0.0693
    # pass@1 changes +0.075, -0.003, +0.078: mean 0.05, std 0.04592, half 4.3027 * 0.04592 / sqrt(3) = 0.1141
    assert ("- pass@1: 0.018-0.021 -> 0.018-0.097 (mean 0.019 -> 0.069); rose in 2 of 3 seeds; mean change "
            "+0.050 [-0.064, +0.164] (95% paired t)") in text  # fmt: skip
    assert "- pass@16: 0.103-0.140 -> 0.114-0.289 (mean 0.119 -> 0.177); rose in 1 of 3 seeds" in text
    assert (tmp_path / "summary.md").read_text() == text
