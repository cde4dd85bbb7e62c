"""Toy world only: how much of a calibration's misplacement comes from the LABEL rather than the judge.

Calibration labels a rollout by its final answer (docs/paper.md, "Judge calibration"). A toy policy often reaches the
right number through steps that are not the question's (a misread operand and a dropped operation that cancel, say
`70+8=78###...###728+8=736` for "70 +6 +8 *2 +8 +2 +6 *2 *2"); the rubric tells the judge to check the steps, not the
number, so it scores such a "lucky" rollout low and the final-answer label counts a false negative. This splits the
correct rollouts into sound ones (every equation valid and exactly the question's operations, in order) and lucky
ones, and recomputes FPR / FNR / misplacement with the label "sound" (a lucky rollout counted as incorrect):

    python -m analysis.toy_labels --calibration results/calibration/base_outcome   # reads calibration.json there

A "judged correct" rollout is one with a 1-5 score >= calibration.json's min_score, as in analysis/calibrate.py.
"""

import argparse
import json
import os

from toy.reading import apply_op, equations, question_steps


def is_sound(question: str, response: str) -> bool:
    """Every equation's arithmetic is right and its operations are exactly the question's, in order.

    Example:
        >>> is_sound("47 +8 *2", "47+8=55###55*2=110###\\\\boxed{110}"), is_sound("47 +8 *2", "47*2=94###94+8=102")
        (True, False)
    """
    written = equations(response)
    return all(apply_op(a, op, b) == c for a, op, b, c in written) and [(op, b) for _, op, b, _ in written] == (
        question_steps(question)
    )


def rates(judged: list[bool], positive: list[bool]) -> dict:
    """FPR, FNR and misplacement (%) of `judged` (judged correct) against the label `positive`.

    Example (3 positives, one judged incorrect; 2 negatives, one judged correct: FNR 1/3, FPR 1/2):
        >>> rates([True, True, False, True, False], [True, True, True, False, False])
        {'FPR': 50.0, 'FNR': 33.3, 'misplacement': 41.7, 'positives': 3, 'negatives': 2}
    """
    pos = [j for j, p in zip(judged, positive) if p]
    neg = [j for j, p in zip(judged, positive) if not p]
    fpr = 100 * sum(neg) / len(neg) if neg else float("nan")
    fnr = 100 * (len(pos) - sum(pos)) / len(pos) if pos else float("nan")
    return {"FPR": round(fpr, 1), "FNR": round(fnr, 1), "misplacement": round((fpr + fnr) / 2, 1),
            "positives": len(pos), "negatives": len(neg)}  # fmt: skip


def split_labels(calibration_dir: str, condition: str = "reference") -> dict:
    """{"answer": rates, "sound": rates, "correct": n, "lucky": n, "lucky judged correct": n} for one condition."""
    with open(os.path.join(calibration_dir, "calibration.json")) as f:
        cal = json.load(f)
    rows = []
    for path in cal["rollouts"]:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    scores, threshold = cal["conditions"][condition]["scores"], (cal["min_score"] - 1) / 4  # s = (N - 1) / 4
    if len(scores) != len(rows):
        raise SystemExit(f"{calibration_dir}: {len(scores)} scores for {len(rows)} rollouts (a --limit draw?)")
    kept = [(r, s) for r, s in zip(rows, scores) if s is not None]  # parse failures are left out, as in calibrate
    judged = [s >= threshold for _, s in kept]
    answer = [bool(r["correct"]) for r, _ in kept]
    sound = [a and is_sound(r["question"], r["response"]) for a, (r, _) in zip(answer, kept)]
    lucky = [a and not s for a, s in zip(answer, sound)]
    return {
        "answer": rates(judged, answer),
        "sound": rates(judged, sound),
        "correct": sum(answer),
        "lucky": sum(lucky),
        "lucky judged correct": sum(j for j, luck in zip(judged, lucky) if luck),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", required=True, help="a directory analysis.calibrate wrote (calibration.json)")
    parser.add_argument("--condition", default="reference", help="reference, no_reference or wrong_reference")
    args = parser.parse_args(argv)
    result = split_labels(args.calibration, args.condition)
    print(f"{args.calibration} ({args.condition}): {result['correct']} correct rollouts, {result['lucky']} of them "
          f"lucky ({result['lucky judged correct']} judged correct)")  # fmt: skip
    for label in ("answer", "sound"):
        r = result[label]
        print(f"  label {label:6s}: misplacement {r['misplacement']}% (FPR {r['FPR']}%, FNR {r['FNR']}%; "
              f"{r['positives']} / {r['negatives']})")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
