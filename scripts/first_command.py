"""Which setting should `python train_stage1.py` (the README's first command) run? Candidate settings over seeds 0-9.

    python -m scripts.first_command                                   # every setting x seeds 0-9, 2 runs at a time
    python -m scripts.first_command --report_only true --output_dir results/first_command   # the table from logs

Each run is the first command plus the setting's flags, `--seed S` and `--threads 1` (two runs share the 2 cores; a
run gives the same numbers with 1 thread as with the default 2), on the held-out development split (64 problems x 64
samples, evaluated before and after). The table gives, per setting, pass@1 and pass@16 before and after per seed,
their means and ranges, in how many seeds each rose, and the mean change with its 95% paired-t interval. The README's
measured line is written from it, and `python -m scripts.check_first_command` checks a run against that line. A
finished run (its `done` marker) is skipped, and each finished run's logs are copied to --logs_dir (committed), so
the sweep resumes on a fresh checkout.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from transformers import HfArgumentParser

from analysis import paired
from plumbing.common import REPO
from scripts.reproduce import copy_logs, is_done, run

SETTINGS = {  # name -> flags added to `python train_stage1.py`
    "outcome-60": [],  # ExpRL-Outcome, 60 steps at lr 1e-4: the first command's defaults before this sweep
    "process-60": ["--reward", "process"],  # ExpRL-Process (Eq. 2), the paper's main method, same size
}


@dataclass
class Args:
    settings: str = field(default=",".join(SETTINGS), metadata={"help": "comma-separated subset of the settings"})
    seeds: str = field(default="0,1,2,3,4,5,6,7,8,9", metadata={"help": "comma-separated seeds"})
    output_dir: str = field(default="runs/first_command", metadata={"help": "the runs (with checkpoints)"})
    logs_dir: str = field(default="results/first_command", metadata={"help": "each finished run's logs (committed)"})
    jobs: int = field(default=2, metadata={"help": "runs in parallel"})
    threads: int = field(
        default=1,
        metadata={"help": "torch threads per run (the first command's default is 2; 1 and 2 give the same numbers)"},
    )
    report_only: bool = field(default=False, metadata={"help": "only rebuild the table from output_dir's logs"})


def before_after(run_dir: str) -> dict:
    """{"before": {"1": p, "16": p}, "after": {...}}: the first and the last evaluation of a finished run."""
    tags = sorted(os.listdir(os.path.join(run_dir, "eval")))
    read = lambda tag: json.load(open(os.path.join(run_dir, "eval", tag, "pass_at_k.json")))["pass@k"]
    first, last = read(tags[0]), read(tags[-1])
    return {"before": {k: first[k] for k in ("1", "16")}, "after": {k: last[k] for k in ("1", "16")}}


def summary(rows: dict[int, dict]) -> dict:
    """Per metric: the seeds' before and after values, means, ranges and how many seeds rose.

    Example (two seeds):
        >>> s = summary({0: {"before": {"1": 0.02, "16": 0.1}, "after": {"1": 0.05, "16": 0.08}},
        ...              1: {"before": {"1": 0.02, "16": 0.1}, "after": {"1": 0.01, "16": 0.2}}})
        >>> s["1"]["rose"], s["16"]["rose"], s["1"]["after_range"], round(s["16"]["after_mean"], 3), s["1"]["change"]
        (1, 1, (0.01, 0.05), 0.14, '+0.010 [-0.244, +0.264]')
    """
    out = {}
    for k in ("1", "16"):
        before = np.array([r["before"][k] for r in rows.values()])  # [seeds]
        after = np.array([r["after"][k] for r in rows.values()])  # [seeds]
        out[k] = {"before_mean": float(before.mean()), "after_mean": float(after.mean()),
                  "before_range": (float(before.min()), float(before.max())),
                  "after_range": (float(after.min()), float(after.max())),
                  "rose": int((after > before).sum()), "seeds": len(rows),
                  "change": paired.interval(after - before).text() if len(rows) > 1 else ""}  # fmt: skip
    return out


def markdown(found: dict[str, dict[int, dict]]) -> str:
    lines = ["# The first command over seeds (held-out development split, 64 problems x 64 samples)", ""]
    for name, rows in found.items():
        flags = " ".join(SETTINGS[name])
        lines += [f"## `{name}`: `python train_stage1.py {flags} --seed S`".replace("  ", " "), "",
                  "| seed | before: pass@1 | pass@16 | after: pass@1 | pass@16 |", "|---|---|---|---|---|"]  # fmt: skip
        for seed, r in sorted(rows.items()):
            b, a = r["before"], r["after"]
            lines.append(f"| {seed} | {b['1']:.3f} | {b['16']:.3f} | {a['1']:.3f} | {a['16']:.3f} |")
        s = summary(rows)
        mean = " | ".join(f"{s[k]['before_mean']:.3f}" for k in ("1", "16"))
        mean += " | " + " | ".join(f"{s[k]['after_mean']:.3f}" for k in ("1", "16"))
        lines += [f"| mean | {mean} |", ""]
        for k in ("1", "16"):
            (b0, b1), (a0, a1) = s[k]["before_range"], s[k]["after_range"]
            lines.append(f"- pass@{k}: {b0:.3f}-{b1:.3f} -> {a0:.3f}-{a1:.3f} (mean {s[k]['before_mean']:.3f} -> "
                         f"{s[k]['after_mean']:.3f}); rose in {s[k]['rose']} of {s[k]['seeds']} seeds; mean change "
                         f"{s[k]['change']} (95% paired t)")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main(args: Args) -> str:
    names, seeds = [n.strip() for n in args.settings.split(",") if n.strip()], [int(s) for s in args.seeds.split(",")]
    if unknown := [n for n in names if n not in SETTINGS]:
        raise SystemExit(f"error: --settings: unknown {unknown}; choose from {list(SETTINGS)}")
    runs = [(n, s, os.path.join(args.output_dir, n, f"s{s}")) for n in names for s in seeds]
    if not args.report_only:
        for n, s, run_dir in runs:  # restore what the logs hold finished
            logged = os.path.join(args.logs_dir, n, f"s{s}")
            if is_done(logged) and not is_done(run_dir):
                copy_logs(logged, run_dir)

        def one(job: tuple[str, int, str]) -> None:
            n, s, run_dir = job
            flags = ["--seed", str(s), "--threads", str(args.threads), "--output_dir", run_dir]
            run(run_dir, ["train_stage1.py", *SETTINGS[n], *flags])
            copy_logs(run_dir, os.path.join(args.logs_dir, n, f"s{s}"))

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, runs))
    found: dict[str, dict[int, dict]] = {}
    for n, s, run_dir in runs:
        if is_done(run_dir):
            found.setdefault(n, {})[s] = before_after(run_dir)
    text = markdown(found)
    target = args.logs_dir if not args.report_only else args.output_dir
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    return text


if __name__ == "__main__":
    os.chdir(REPO)
    (cli_args,) = HfArgumentParser(Args).parse_args_into_dataclasses()
    main(cli_args)
