"""The judge-quality dial: how good must the judge be for ExpRL to pay off? (toy world; beyond the paper, which could
only swap judge models.)

    python -m scripts.judge_dial   # shares runs/reproduce with scripts.reproduce: its p = 0 columns are reused
    python -m scripts.judge_dial --logs_dir results/reproduce   # ... and resumes from (and adds to) committed logs

The toy judge's `--judge_error_rate p` makes it misread the whole reference on a share p of the texts it judges, on
top of its own errors (toy.llm_like_judge.LLMLikeJudge). For each p this driver
  1. measures the judge's misplacement on fixed base rollouts at EACH LEVEL (analysis.calibrate, correct-reference
     condition, (FPR + FNR) / 2 at "score >= 4": `--level outcome` for ExpRL-Outcome's x, `--level process`, the
     final prefix's s_T, for ExpRL-Process's), so each curve's x axis is its own measured judge quality, with the
     bootstrap 95% interval as its error bar;
  2. runs ExpRL-Outcome and ExpRL-Process Stage I with that judge, then the reproduction's Stage II (sparse, no
     judge), with exactly the reproduction's sizes and commands (scripts/reproduce.py `chain`);
and plots development-split pass@1 after Stage I and after Stage II (mean over seeds with its 95% t interval) against
the measured misplacement, sparse GRPO (which never calls the judge) as the flat line; the table also pairs each
cell with sparse GRPO seed by seed (analysis.paired). At p = 0 the commands are the
reproduction's own, in the same directories, so a finished reproduction is reused, not rerun; every other cell is
s<seed>/<method>_p<p>/. The dial reads the development split only (test_n 0): the test split stays the final
reproduction's.

Outputs in --output_dir: dial/ (the calibration rollouts and one calibration per level and p), judge_dial.md (the
table), judge_dial.json (every point, per seed), judge_dial.png.
"""

import json
import os
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
from transformers import HfArgumentParser

from analysis import paired
from plumbing.common import REPO, write_json
from scripts import reproduce
from scripts.reproduce import chain, cli_diff, is_done, mine, restore, run, run_columns
from scripts.reproduce_report import LABELS as METHOD_LABELS
from scripts.reproduce_report import final_eval, mean_interval
from toy import TOY_DATA

LABELS = {m: METHOD_LABELS[m] for m in ("outcome", "process")} | {"sparse": METHOD_LABELS["sparse"] + " (no judge)"}
LEVEL = {"outcome": "outcome", "process": "process"}  # the calibration level that measures each method's judge


@dataclass
class Args(reproduce.Args):
    methods: str = field(default="outcome,process", metadata={"help": "the judged methods: outcome, process"})
    seeds: str = field(
        default="0,1,2,3,4", metadata={"help": "comma-separated seeds of every cell (and the sparse line)"}
    )
    test_n: int = field(default=0, metadata={"help": "test-split samples per problem (0: the dial reads dev only)"})
    error_rates: str = field(default="0,0.25,0.5,0.75,1", metadata={"help": "the judge's --judge_error_rate values"})
    calibration_problems: int = field(
        default=64, metadata={"help": "held-out and easy problems whose base rollouts (x4, x2) calibrate the judge"}
    )


def cell(method: str, p: float) -> str:
    """The directory name of one (method, p) column: the reproduction's own at p = 0."""
    return method if p == 0 else f"{method}_p{p:g}"


def calibration_rollouts(args: Args) -> list[str]:
    """The toy base on held-out x 4 and easy x 2 (docs/analyses.md's "base" rollouts: both outcomes well sampled)."""
    out = os.path.join(args.output_dir, "dial", "rollouts")
    paths = []
    for name, data, n in (
        ("heldout", TOY_DATA["toy:heldout"], 4),
        ("easy", os.path.join(REPO, "toy_data", "easy.jsonl"), 2),
    ):
        path = os.path.join(out, f"base_{name}.jsonl")
        command = ["evaluate.py", "--model", "toy", "--data", data, "--n", str(n), "--rollouts", path]
        run(os.path.join(out, name), command + ["--limit", str(args.calibration_problems), "--threads", "1"])
        paths.append(path)
    return paths


def misplacement(args: Args, rollouts: list[str], p: float, level: str) -> dict:
    """The judge's rates at error rate p and one level on the fixed rollouts: {"misplacement", "fpr", "fnr", "ci",
    "inversion"} (fractions; ci = the bootstrap 95% interval of the misplacement)."""
    out = os.path.join(args.output_dir, "dial", f"calibration_{level}_p{p:g}")
    command = ["-m", "analysis.calibrate", "--rollouts", *rollouts, "--judge", "toy", "--judge_error_rate", str(p)]
    run(out, command + ["--level", level, "--bootstrap", "200", "--out", out])
    reference = json.load(open(os.path.join(out, "calibration.json")))["conditions"]["reference"]
    rates = reference["rates"]
    keys = ("misplacement", "fpr", "fnr", "inversion")
    return {k: rates.get(k) for k in keys} | {"ci": reference["ci"]["misplacement"]}


def pass_at_1(args: Args, seed: int, name: str, stage: str) -> float | None:
    run_dir = os.path.join(args.output_dir, f"s{seed}", name, stage)
    return json.load(open(final_eval(run_dir)))["pass@k"]["1"] if is_done(run_dir) else None


def collect(args: Args, methods: list[str], seeds: list[int], rates: list[float], judges: dict) -> dict:
    """{"points": [{method, p, misplacement, stage1: [per seed], stage2: [per seed]}], "sparse": {stage: [...]}}."""
    points = [
        {
            "method": m,
            "p": p,
            "misplacement": judges[m, p]["misplacement"],
            "misplacement_ci": judges[m, p]["ci"],
            **{stage: [pass_at_1(args, s, cell(m, p), stage) for s in seeds] for stage in ("stage1", "stage2")},
        }
        for m in methods
        for p in rates
    ]
    sparse = {stage: [pass_at_1(args, s, "sparse", stage) for s in seeds] for stage in ("stage1", "stage2")}
    calibrations = {f"{LEVEL[m]} p={p:g}": judges[m, p] for m in methods for p in rates}
    return {"seeds": seeds, "judges": calibrations, "points": points, "sparse": sparse}


def markdown(args: Args, result: dict, minutes: float) -> str:
    seeds = ", ".join(map(str, result["seeds"]))
    lines = [
        f"# The judge-quality dial (seeds {seeds}; development-split pass@1: mean over seeds [95% t interval] "
        "(per seed))",
        "",
        f"Command: `{' '.join(['python -m scripts.judge_dial'] + cli_diff(args))}` — "
        f"{minutes:.1f} min in this invocation ({args.jobs} runs in parallel). Misplacement: analysis.calibrate on "
        f"the base's rollouts ({args.calibration_problems} held-out x 4 + {args.calibration_problems} easy x 2), "
        "correct-reference condition, at each method's own level (outcome: the response; process: s_T), with its "
        "bootstrap 95% interval.",
        "",
        "The last column pairs each seed's cell with sparse GRPO's run of that seed: seeds where the cell is higher - "
        "equal - lower, the mean difference with its 95% paired-t interval (analysis.paired); **held** / "
        "**reversed** where the interval excludes 0.",
        "",
        "| method | judge_error_rate | misplacement % [95% CI] | pass@1 after Stage I | after Stage II "
        "| after Stage II minus sparse GRPO |",
        "|---|---|---|---|---|---|",
    ]
    sparse = result["sparse"]
    for pt in result["points"]:
        lo, hi = pt["misplacement_ci"]
        lines.append(
            f"| {LABELS[pt['method']]} | {pt['p']:g} | {100 * pt['misplacement']:.1f} [{100 * lo:.1f}, "
            f"{100 * hi:.1f}] | {_cell(pt['stage1'])} | {_cell(pt['stage2'])} | "
            f"{_against(pt['stage2'], sparse['stage2'])} |"
        )
    lines.append(f"| {LABELS['sparse']} | - | - | {_cell(sparse['stage1'])} | {_cell(sparse['stage2'])} | - |")
    return "\n".join(lines + ["", "![judge dial](judge_dial.png)", ""])


def _cell(values: list) -> str:
    """Mean over the finished seeds, its 95% t interval (2 or more seeds), the seeds' own values."""
    done = [v for v in values if v is not None]
    if not done:
        return "not run"
    per_seed = f"({', '.join(f'{v:.3f}' for v in done)})"
    return f"{done[0]:.3f} {per_seed}" if len(done) < 2 else f"{mean_interval(done)} {per_seed}"


def _against(values: list, sparse: list) -> str:
    """The cell against sparse GRPO over the seeds where both finished: W-T-L, mean difference [95% paired t]."""
    pairs = [(a, b) for a, b in zip(values, sparse) if a is not None and b is not None]
    if len(pairs) < 2:
        return "-"
    return paired.compare(*zip(*pairs))["cell"]


def plot(result: dict, path: str) -> None:
    """Two panels (after Stage I, after Stage II): pass@1 vs measured misplacement, per-seed dots, sparse flat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, stage, title in zip(axes, ("stage1", "stage2"), ("after Stage I", "after Stage I + Stage II")):
        for color, method in (("C4", "outcome"), ("C5", "process")):
            pts = sorted((p for p in result["points"] if p["method"] == method), key=lambda p: p["misplacement"])
            xs = np.array([100 * p["misplacement"] for p in pts])
            xerr = np.array([[x - 100 * p["misplacement_ci"][0], 100 * p["misplacement_ci"][1] - x]
                             for x, p in zip(xs, pts)]).T.reshape(2, -1)  # fmt: skip
            runs = [[v for v in p[stage] if v is not None] for p in pts]
            means = [np.mean(r) if r else np.nan for r in runs]
            halves = [paired.interval(r).high - np.mean(r) if len(r) > 1 else 0.0 for r in runs]  # 95% t
            ax.errorbar(xs, means, xerr=xerr, yerr=halves, marker="o", color=color, capsize=3, label=LABELS[method])
            for x, seeds in zip(xs, runs):
                ax.scatter([x] * len(seeds), seeds, color=color, alpha=0.3, s=12)
        sparse = [v for v in result["sparse"][stage] if v is not None]
        if sparse:
            ax.axhline(np.mean(sparse), color="C2", linestyle="--", label=LABELS["sparse"])
        ax.axvline(17.8, color="grey", linestyle=":", label="paper's 4B judge (17.8%)")
        ax.set(xlabel="judge misplacement at the method's level, base rollouts (%)", title=f"dev pass@1 {title}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@1")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(args: Args) -> dict:
    start = time.time()
    seeds, rates = reproduce._ints(args.seeds), [float(p) for p in args.error_rates.split(",") if p.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in ("outcome", "process")]
    if bad or not all(0 <= p <= 1 for p in rates):
        raise SystemExit(f"--methods must be outcome/process (got {bad}) and --error_rates in [0, 1] (got {rates})")
    reproduce.check_logs_dir(args)
    os.makedirs(args.output_dir, exist_ok=True)
    if args.logs_dir and os.path.isdir(os.path.join(args.logs_dir, "dial")):  # finished calibrations are kept
        shutil.copytree(os.path.join(args.logs_dir, "dial"), os.path.join(args.output_dir, "dial"), dirs_exist_ok=True)
    rollouts = calibration_rollouts(args)
    judges = {(m, p): misplacement(args, rollouts, p, LEVEL[m]) for m in methods for p in rates}
    data = mine(args)
    flags = {p: ("--judge_error_rate", f"{p:g}") if p else () for p in rates}
    chains = [chain(args, data, "sparse", s) for s in seeds]
    chains += [
        chain(args, data, m, s, name=cell(m, p), stage1_flags=flags[p]) for s in seeds for p in rates for m in methods
    ]
    if args.logs_dir:
        restore(args, chains)
    run_columns(args, chains)
    result = collect(args, methods, seeds, rates, judges)
    write_json(os.path.join(args.output_dir, "judge_dial.json"), result)
    text = markdown(args, result, (time.time() - start) / 60)
    with open(os.path.join(args.output_dir, "judge_dial.md"), "w") as f:
        f.write(text)
    plot(result, os.path.join(args.output_dir, "judge_dial.png"))
    if args.logs_dir:  # the table, its figure and the calibrations beside the columns' logs
        for name in ("judge_dial.md", "judge_dial.json", "judge_dial.png"):
            shutil.copyfile(os.path.join(args.output_dir, name), os.path.join(args.logs_dir, name))
        shutil.copytree(os.path.join(args.output_dir, "dial"), os.path.join(args.logs_dir, "dial"), dirs_exist_ok=True)
    print(text)
    return result


if __name__ == "__main__":
    (cli_args,) = HfArgumentParser(Args).parse_args_into_dataclasses()
    main(cli_args)
