"""How an ExpRL-Process policy's responses change shape over Stage I, and where Eq. 2 puts their credit.

    python -m analysis.response_shape results/reproduce-toy-v3/s0/process/stage1 [more run directories]

For each run directory it reads metrics.jsonl (batch means per step: segments per response, response length, judge
score, answer accuracy) and judge_samples.jsonl (one sampled response per step with the judge's prefix verdicts
s_1..s_T), and prints, for the first and the last `--window` steps: the batch means, the share of sampled responses
that end on a boxed answer, and the mean Eq. 2 advantage (docs/paper.md, "Process judge and Eq. 2") of their first
segment (A_1 = s_1 - s_T) and last segment (A_T = s_T - s_{T-1}), and how many segments follow the first one the
judge scores 1-2 (s_t <= 0.25: where a response first goes visibly wrong). A policy that learns to put off its final
answer shows a falling boxed share; one that goes wrong earlier shows more segments after the first drop.

Example output line (window 10):
    s0/process  segments 9.36 -> 11.37  length 82 -> 101  judge 0.17 -> 0.03  accuracy 0.009 -> 0.000
                boxed 1.00 -> 1.00  A_1 +0.65 -> +0.68  A_T -0.12 -> -0.03  after first drop 5.6 -> 8.9
"""

import argparse
import os

from advantages import delta_advantages
from analysis.behaviour import load_jsonl
from judge import normalise, parse_score


def sample_credit(sample: dict) -> tuple[bool, float | None, float | None, int | None]:
    """(ends on a boxed answer, A_1, A_T, segments after the first s_t <= 0.25) of one judge sample; None where a
    prefix score did not parse or nothing dropped.

    Example (prefix scores 4, 5, 1 -> s = 0.75, 1.0, 0.0: A_1 = 0.75 - 0.0, A_T = 0.0 - 1.0; the drop is the last):
        >>> sample = {"response": "1+1=2###2*2=4###\\\\boxed{5}", "judge_text": ["Score: 4", "Score: 5", "Score: 1"]}
        >>> sample_credit(sample)
        (True, 0.75, -1.0, 0)
    """
    scores = [parse_score(text) for text in sample["judge_text"]]
    boxed = "\\boxed{" in sample["response"]
    if not scores or any(s is None for s in scores):
        return boxed, None, None, None
    s = [normalise(x) for x in scores]
    advantages = delta_advantages(s, "delta")
    drop = next((t for t, x in enumerate(s) if x <= 0.25), None)
    return boxed, advantages[0], advantages[-1], None if drop is None else len(s) - 1 - drop


def mean(values: list) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")


def shape(run_dir: str, window: int = 10) -> dict:
    """{"first": {...}, "last": {...}} over the first and last `window` steps of one Stage-I run."""
    metrics = load_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    samples = load_jsonl(os.path.join(run_dir, "judge_samples.jsonl"))
    last_step = max(r["step"] for r in metrics)
    out = {}
    for name, steps in (("first", range(1, window + 1)), ("last", range(last_step - window + 1, last_step + 1))):
        rows = [r for r in metrics if r["step"] in steps]
        credit = [sample_credit(s) for s in samples if s["step"] in steps]
        out[name] = {key: mean([r.get(key) for r in rows]) for key in
                     ("segments_per_response", "response_length", "judge_score", "answer_accuracy")}  # fmt: skip
        boxed, first, last, after = zip(*credit) if credit else ((), (), (), ())
        out[name] |= {"boxed": mean([float(b) for b in boxed]), "A_1": mean(list(first)), "A_T": mean(list(last)),
                      "after_drop": mean(list(after)), "samples": len(credit)}  # fmt: skip
    return out


def line(name: str, s: dict) -> str:
    a, b = s["first"], s["last"]
    return (
        f"{name}  segments {a['segments_per_response']:.2f} -> {b['segments_per_response']:.2f}  "
        f"length {a['response_length']:.0f} -> {b['response_length']:.0f}  "
        f"judge {a['judge_score']:.2f} -> {b['judge_score']:.2f}  "
        f"accuracy {a['answer_accuracy']:.3f} -> {b['answer_accuracy']:.3f}\n"
        f"{' ' * len(name)}  boxed {a['boxed']:.2f} -> {b['boxed']:.2f}  "
        f"A_1 {a['A_1']:+.2f} -> {b['A_1']:+.2f}  A_T {a['A_T']:+.2f} -> {b['A_T']:+.2f}  "
        f"after first drop {a['after_drop']:.1f} -> {b['after_drop']:.1f}"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m analysis.response_shape", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="Stage-I run directories (metrics.jsonl, judge_samples.jsonl)")
    parser.add_argument("--window", type=int, default=10, help="steps at the start and at the end to average")
    args = parser.parse_args(argv)
    results = {}
    for run_dir in args.run_dirs:
        for needed in ("metrics.jsonl", "judge_samples.jsonl"):
            if not os.path.exists(os.path.join(run_dir, needed)):
                raise SystemExit(f"error: {run_dir}: no {needed} (a Stage-I run directory of --reward process)")
        name = "/".join(os.path.normpath(run_dir).split(os.sep)[-3:-1])  # .../s0/process/stage1 -> s0/process
        results[run_dir] = shape(run_dir, args.window)
        print(line(name, results[run_dir]))
    return results


if __name__ == "__main__":
    main()
