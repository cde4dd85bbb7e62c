"""analysis/toy_labels.py: the calibration's misplacement under the final-answer label and the "sound" label."""

import json

from analysis.toy_labels import split_labels


def test_a_lucky_rollout_counts_as_correct_for_the_answer_label_only(tmp_path):
    # question "47 +8 *2" (answer 110): a sound correct rollout, a lucky one (110 by other steps), an incorrect one
    rows = [
        {"question": "47 +8 *2", "response": "47+8=55###55*2=110###\\boxed{110}", "correct": True},
        {"question": "47 +8 *2", "response": "47+7=54###54+56=110###\\boxed{110}", "correct": True},
        {"question": "47 +8 *2", "response": "47+8=55###55*2=100###\\boxed{100}", "correct": False},
    ]
    rollouts = tmp_path / "rollouts.jsonl"
    rollouts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = [1.0, 0.25, 0.75]  # the judge: sound 5, lucky 2, incorrect 4 (a false positive)
    cal = {"rollouts": [str(rollouts)], "min_score": 4, "conditions": {"reference": {"scores": scores}}}
    (tmp_path / "calibration.json").write_text(json.dumps(cal))
    result = split_labels(str(tmp_path))
    # answer label: 2 correct (1 judged incorrect: FNR 50%), 1 incorrect judged correct (FPR 100%) -> 75%
    assert result["answer"] == {"FPR": 100.0, "FNR": 50.0, "misplacement": 75.0, "positives": 2, "negatives": 1}
    # sound label: 1 positive judged correct (FNR 0); negatives lucky (judged incorrect) and incorrect (judged
    # correct): FPR 1/2 = 50% -> 25%
    assert result["sound"] == {"FPR": 50.0, "FNR": 0.0, "misplacement": 25.0, "positives": 1, "negatives": 2}
    assert (result["correct"], result["lucky"], result["lucky judged correct"]) == (2, 1, 0)
