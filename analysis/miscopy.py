"""The miscopied start and ExpRL-Process's collapse (docs/results.md, "Why ExpRL-Process collapses in some seeds").

    python -m analysis.miscopy probe [--judge toy] [--data toy:heldout]     # the blind spot on hand-made responses
    python -m analysis.miscopy recovery ROLLOUTS.jsonl [--judge toy]       # flaws forgotten by a later prefix
    python -m analysis.miscopy train -- <train_stage1 flags>               # Stage I, logging the start per step
    python -m analysis.miscopy reorder --seed 3 --order_of 2 --output F     # a training file in another seed's order
    python -m analysis.miscopy summary RUN_DIR ... [--out results/mechanism/summary.md]

probe: for every problem, the model-style solution and the same solution from a miscopied start (start + 3, every
later line consistent with it), judged at the process level: s_1, and Eq. 2's A_1 = s_1 - s_T and A_2 = s_2 - s_1.
recovery: among process-judged rollouts with a flagged prefix (a noticed flaw and a score of 1-2), the share where a
later prefix scores 4-5 with no flaw noticed (the judge forgot the flaw).
train: train_stage1.main with the judge wrapped so that every process call also writes one line to
RUN_DIR/miscopy.jsonl: the share of rollouts whose first number is not the question's start, the share of groups
with a constant s_T, the recovery share, and the mean s_1 and A_1 of miscopied and of other rollouts. The wrapper only
reads; the run's numbers are those of `python train_stage1.py` with the same flags.
reorder: train_stage1 draws its prompts as order = a seeded permutation of the training file's rows; this writes a
copy of the file whose rows are permuted so that `--seed SEED` draws seed ORDER_OF's prompts in seed ORDER_OF's
order (the permutations are read from the two seeds' final checkpoints, trainer_state.pt's data_order).
summary: one row per run: miscopied share and constant-s_T groups over steps 1-10 and 11-40, judge score over steps
1-10 and 31-40, answer accuracy over steps 31-40, dev pass@1 after Stage I, and the verdicts the pre-registration
defines (drift: miscopied share over steps 11-40 > 50% and above that of steps 1-10; degenerate: judge score of steps
31-40 more than 0.05 below that of steps 1-10).
"""

import json
import os
import sys

from plumbing.cli import ArgumentParser
from toy.reading import first_number, question_start

DRIFT, FALL = 0.50, 0.05  # the pre-registered thresholds (docs/results.md)


def load_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def miscopied(question: str, text: str) -> bool:
    """The response's first number is not the question's start (a response with no equation is not counted)."""
    first, start = first_number(text), question_start(question)
    return first is not None and bool(start) and first != start[0]


def flagged(text: str, score: float | None) -> bool:
    """A judge verdict that noticed a flaw and scored the prefix 1-2 (normalised score <= 0.25)."""
    return score is not None and score <= 0.25 and "flaws: none noticed" not in text


def recovered(texts: list[str], scores: list) -> bool:
    """A prefix after a flagged one scores 4-5 (normalised >= 0.75) with no flaw noticed: the flaw was forgotten."""
    first = next((t for t, (x, s) in enumerate(zip(texts, scores)) if flagged(x, s)), None)
    if first is None:
        return False
    return any(
        s is not None and s >= 0.75 and "flaws: none noticed" in x
        for x, s in zip(texts[first + 1 :], scores[first + 1 :])
    )


def step_record(questions, segments, judged, group_size: int) -> dict:
    """What one process call says about the start: see the module docstring."""
    texts = ["".join(s) for s in segments]
    copied = [miscopied(q, t) for q, t in zip(questions, texts)]
    finals = [row[-1] if row else None for row in judged.scores]
    groups = [finals[g : g + group_size] for g in range(0, len(finals), group_size)]
    ends = [{s for s in grp if s is not None} for grp in groups]
    a1 = [(row[0] - row[-1], row[0]) if row and None not in row else None for row in judged.scores]
    was_flagged = [any(flagged(x, s) for x, s in zip(tx, sc)) for tx, sc in zip(judged.texts, judged.scores)]

    def mean(values):
        values = [v for v in values if v is not None]
        return round(sum(values) / len(values), 4) if values else None

    return {
        "rollouts": len(texts),
        "miscopied_start": mean([float(c) for c in copied]),
        "constant_s_T_groups": mean([float(len(e) <= 1) for e in ends]),
        "flagged": mean([float(f) for f in was_flagged]),
        "recovered_of_flagged": mean(
            [float(recovered(tx, sc)) for tx, sc, f in zip(judged.texts, judged.scores, was_flagged) if f]
        ),
        "s_1_miscopied": mean([a[1] for a, c in zip(a1, copied) if a and c]),
        "A_1_miscopied": mean([a[0] for a, c in zip(a1, copied) if a and c]),
        "s_1_other": mean([a[1] for a, c in zip(a1, copied) if a and not c]),
        "A_1_other": mean([a[0] for a, c in zip(a1, copied) if a and not c]),
    }


class RecordingJudge:
    """A judge that passes every call through and appends a step_record per process call to `path`."""

    def __init__(self, judge, path: str, group_size: int):
        self.judge, self.path, self.group_size, self.step = judge, path, group_size, 0

    def __getattr__(self, name):
        return getattr(self.judge, name)

    def score_process(self, questions, references, segments, *args, **kwargs):
        judged = self.judge.score_process(questions, references, segments, *args, **kwargs)
        self.step += 1
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": self.step, **step_record(questions, segments, judged, self.group_size)}) + "\n")
        return judged


def train(argv: list[str]) -> None:
    """train_stage1.main with a RecordingJudge; skipped when the run's final checkpoint exists (resumable driver)."""
    import train_stage1
    from config import parse_args

    args = parse_args(argv)
    if os.path.isdir(os.path.join(args.output_dir, "checkpoint")):
        print(f"skip {args.output_dir}: its final checkpoint exists")
        return
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "miscopy.jsonl")
    if os.path.exists(path):
        os.remove(path)  # an interrupted run starts again from step 1 (no --resume here)
    build = train_stage1.build_judge
    train_stage1.build_judge = lambda *a, **k: RecordingJudge(build(*a, **k), path, args.group_size)
    result = train_stage1.main(args)
    after = result.get("after") or {}
    with open(os.path.join(args.output_dir, "dev_pass_at_k.json"), "w") as f:
        json.dump(after.get("pass@k", {}), f)


# ------------------------------------------------------------------------------------------------------ probe
def solution_segments(start: int, ops: list[tuple[str, int]], answer: int | None = None) -> list[str]:
    """The model's own style from `start`, cut into its "###" segments (the boxed answer is the last segment)."""
    from toy.reading import apply_op

    segs, value = [], start
    for op, b in ops:
        nxt = apply_op(value, op, b)
        segs.append(f"{value}{op}{b}={nxt}###")
        value = nxt
    return segs + [f"\\boxed{{{value if answer is None else answer}}}"]


def probe(judge_name: str, data: str, shift: int = 3) -> dict:
    """s_1, A_1 and A_2 (Eq. 2) of the correct and of the miscopied (start + shift) solution of every problem."""
    from config import build_judge
    from plumbing.common import load_problem_set
    from toy.world import parse_question

    judge = build_judge(judge_name)
    problems = load_problem_set(data)
    rows = {"correct": [], "miscopied": []}
    for p in problems:
        start, ops = parse_question(p.question)
        for name, s in (("correct", start), ("miscopied", start + shift)):
            scores = judge.score_process([p.question], [p.reference], [solution_segments(s, ops)]).scores[0]
            rows[name].append(scores)
    out = {"judge": judge_name, "data": data, "problems": len(problems), "shift": shift}
    for name, runs in rows.items():
        n = len(runs)
        out[name] = {
            "s_1 >= 4 (share)": round(sum(r[0] >= 0.75 for r in runs) / n, 4),
            "mean s_1": round(sum(r[0] for r in runs) / n, 4),
            "mean s_T": round(sum(r[-1] for r in runs) / n, 4),
            "mean A_1 = s_1 - s_T": round(sum(r[0] - r[-1] for r in runs) / n, 4),
            "mean A_2 = s_2 - s_1": round(sum(r[1] - r[0] for r in runs) / n, 4),
        }
    return out


def recovery(paths: list[str], judge_name: str) -> dict:
    """The share of flagged process-judged rollouts whose flaw a later prefix forgets (see the module docstring)."""
    from config import build_judge

    judge = build_judge(judge_name)
    rows = [r for p in paths for r in load_jsonl(p)]
    segments = [[s + "###" for s in r["response"].split("###")[:-1]] + [r["response"].split("###")[-1]] for r in rows]
    segments = [[s for s in segs if s] for segs in segments]
    judged = judge.score_process([r["question"] for r in rows], [r["reference"] for r in rows], segments)
    was = [any(flagged(x, s) for x, s in zip(tx, sc)) for tx, sc in zip(judged.texts, judged.scores)]
    back = [recovered(tx, sc) for tx, sc, f in zip(judged.texts, judged.scores, was) if f]
    return {
        "judge": judge_name,
        "rollouts": len(rows),
        "flagged": sum(was),
        "recovered": sum(back),
        "recovery rate": round(sum(back) / max(len(back), 1), 4),
    }


# ------------------------------------------------------------------------------------------------------ reorder
def data_order(run_dir: str) -> list[int]:
    import torch

    state = torch.load(os.path.join(run_dir, "checkpoint", "trainer_state.pt"), weights_only=False)
    return state["data_order"]


def reorder(train_file: str, seed_run: str, order_run: str, output: str) -> None:
    """Rows permuted so that the run of seed_run's seed sees order_run's prompt sequence: F[p_seed[j]] =
    rows[p_order[j]] for every position j (both permutations of the same rows)."""
    rows = open(train_file).read().splitlines()
    p_seed, p_order = data_order(seed_run), data_order(order_run)
    if sorted(p_seed) != list(range(len(rows))) or sorted(p_order) != list(range(len(rows))):
        raise SystemExit("reorder: the runs' data orders are not permutations of the training file's rows")
    out = [None] * len(rows)
    for j in range(len(rows)):
        out[p_seed[j]] = rows[p_order[j]]
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    with open(output, "w") as f:
        f.write("\n".join(out) + "\n")


# ------------------------------------------------------------------------------------------------------ summary
def summarise(run_dir: str) -> dict:
    metrics = load_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    steps = load_jsonl(os.path.join(run_dir, "miscopy.jsonl"))

    def avg(rows, key, a, b):
        values = [r[key] for r in rows[a:b] if r.get(key) is not None]
        return sum(values) / len(values) if values else float("nan")

    pass_path = os.path.join(run_dir, "dev_pass_at_k.json")
    passk = json.load(open(pass_path)) if os.path.exists(pass_path) else {}
    config = json.load(open(os.path.join(run_dir, "config.json")))
    row = {
        "run": os.path.basename(run_dir.rstrip("/")),
        "judge": config.get("judge"),
        "advantage": config.get("advantage"),
        "seed": config.get("seed"),
        "train_data": os.path.basename(config.get("train_data", "")),
        "miscopied 1-10": avg(steps, "miscopied_start", 0, 10),
        "miscopied 11-40": avg(steps, "miscopied_start", 10, 40),
        "const s_T 1-10": avg(metrics, "zero_std_groups", 0, 10),
        "const s_T 31-40": avg(metrics, "zero_std_groups", 30, 40),
        "recovered 1-40": avg(steps, "recovered_of_flagged", 0, 40),
        "s_1-s_T miscopied": avg(steps, "A_1_miscopied", 0, 40),
        "s_1-s_T other": avg(steps, "A_1_other", 0, 40),
        "score 1-10": avg(metrics, "judge_score", 0, 10),
        "score 31-40": avg(metrics, "judge_score", 30, 40),
        "accuracy 31-40": avg(metrics, "answer_accuracy", 30, 40),
        "dev pass@1": passk.get("1", float("nan")),
    }
    row["drift"] = row["miscopied 11-40"] > max(DRIFT, row["miscopied 1-10"])
    row["degenerate"] = row["score 31-40"] < row["score 1-10"] - FALL
    return row


def summary_table(rows: list[dict]) -> str:
    keys = list(rows[0])

    def fmt(v) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        rest = argv[1:]
        return train(rest[1:] if rest[:1] == ["--"] else rest)
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("probe", "recovery", "reorder", "summary"))
    parser.add_argument("paths", nargs="*", help="recovery: rollout JSONL files; summary: run directories")
    parser.add_argument("--judge", default="toy")
    parser.add_argument("--data", default="toy:heldout")
    parser.add_argument("--train_file", default="toy_data/stage1_train.jsonl")
    parser.add_argument("--seed_run", default="", help="reorder: a finished run of the seed that will draw")
    parser.add_argument("--order_run", default="", help="reorder: a finished run whose data order it draws")
    parser.add_argument("--output", default="", help="reorder: the file; probe/recovery/summary: optional file")
    args = parser.parse_args(argv)
    if args.command == "probe":
        text = json.dumps(probe(args.judge, args.data), indent=1)
    elif args.command == "recovery":
        text = json.dumps(recovery(args.paths, args.judge), indent=1)
    elif args.command == "reorder":
        reorder(args.train_file, args.seed_run, args.order_run, args.output)
        print(f"wrote {args.output}")
        return
    else:
        text = summary_table([summarise(p) for p in args.paths])
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
