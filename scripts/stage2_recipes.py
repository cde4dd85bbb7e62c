"""Stage II in the toy world: which sparse-GRPO recipe keeps what it starts from; the decision rule, written before
any run: docs/results.md, "Stage II in the toy world: choosing the recipe (dev split)".

    python -m scripts.stage2_recipes                       # seeds 0-2 x {base, ExpRL-Outcome, ExpRL-Process} x recipes
    python -m scripts.stage2_recipes --report_only true --output_dir results/stage2_recipes/logs   # tables from logs

For each seed it runs the reproduction's own Stage-I commands (scripts.reproduce.chain: ExpRL-Outcome and
ExpRL-Process with `--judge toy`, and the base's evaluation), then every recipe's Stage II from each of the three
starting points, on the development split only (toy_data/heldout.jsonl, first 48 problems). Per Stage-II run:
dev pass@1 and pass@16 every steps/8 steps (16 samples per problem, the curve), the final checkpoint at 64 samples
per problem (seeded as the reproduction's evaluation, so start and end are measured alike), and from metrics.jsonl
the training answer accuracy, the skipped updates and the entropy. A finished run (its `done` marker) is skipped, so
an interrupted driver continues where it stopped. Every command runs under the driver's own niceness.

Outputs: output_dir/s<seed>/<start>/{stage1, <recipe>/, <recipe>/end/}; results_dir/summary.{md,json} and a copy of
each run's small files (results_dir/logs, the same layout) from which --report_only regenerates the tables;
figures/stage2_recipes.png (dev pass@1 against rollouts, mean over seeds).
"""

import glob
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
from transformers import HfArgumentParser

from plumbing.common import REPO, write_json
from scripts import reproduce
from scripts.reproduce import RECIPES  # the recipes and their flags live with the reproduction
from scripts.reproduce_report import final_eval

STARTS = ("base", "outcome", "process")  # the Stage-II starting points: the base, ExpRL-Outcome, ExpRL-Process


@dataclass
class Args:
    output_dir: str = field(default="runs/stage2_recipes", metadata={"help": "where every run goes"})
    results_dir: str = field(
        default="results/stage2_recipes", metadata={"help": "summary.md, summary.json and logs/ (committed)"}
    )
    figure: str = field(default="figures/stage2_recipes.png", metadata={"help": "the curves ('' = no figure)"})
    recipes: str = field(
        default=",".join(RECIPES), metadata={"help": "comma-separated subset of " + ", ".join(RECIPES)}
    )
    starts: str = field(default=",".join(STARTS), metadata={"help": "comma-separated subset of " + ", ".join(STARTS)})
    seeds: str = field(default="0,1,2", metadata={"help": "comma-separated seeds"})
    curve_n: int = field(default=16, metadata={"help": "samples per dev problem at each curve point (pass@16)"})
    eval_n: int = field(
        default=64, metadata={"help": "samples per dev problem at the start and the end (as reproduced)"}
    )
    eval_limit: int = field(default=48, metadata={"help": "dev problems (the reproduction's 48)"})
    tolerance: float = field(default=0.005, metadata={"help": "X of the rule: no seed's dev pass@1 falls by more"})
    jobs: int = field(default=2, metadata={"help": "runs in parallel, one torch thread each"})
    report_only: bool = field(default=False, metadata={"help": "only rebuild the summary from output_dir's logs"})


def _names(text: str, known) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if unknown := [x for x in names if x not in known]:
        raise SystemExit(f"unknown {unknown}; choose from {list(known)}")
    return names


# ----------------------------------------------------------------------------------------------------- probabilities
def p_any_success(p: float, G: int) -> float:
    """Chance that a group of G attempts with success rate p holds at least one success: 1 - (1 - p)^G.

    Example:
        >>> round(p_any_success(0.05, 8), 4), round(p_any_success(0.05, 32), 4)
        (0.3366, 0.8063)
    """
    return 1 - (1 - p) ** G


def update_skipped(correct: list[float], group_size: int) -> bool:
    """Whether Stage II skips a step's update (train_stage1.update_policy, --skip_no_signal): with A = r - group
    mean, every advantage is 0 exactly when every group is all wrong or all right.

    Example:
        >>> update_skipped([0, 0, 1, 1], 2), update_skipped([0, 1, 0, 0], 2)
        (True, False)
    """
    groups = [correct[i : i + group_size] for i in range(0, len(correct), group_size)]
    return all(min(g) == max(g) for g in groups)


# ------------------------------------------------------------------------------------------------------ the commands
def stage1_dir(out: str, seed: int, start: str) -> str:
    return os.path.join(out, f"s{seed}", start, "stage1")


def stage2_dir(out: str, seed: int, start: str, recipe: str) -> str:
    return os.path.join(out, f"s{seed}", start, recipe)


def stage1_command(args: Args, seed: int, start: str) -> tuple[str, list[str]]:
    """The reproduction's own Stage-I command (or the base's evaluation), dev only: scripts.reproduce.chain."""
    repro = reproduce.Args(output_dir=args.output_dir, eval_n=args.eval_n, eval_limit=args.eval_limit, test_n=0)
    run_dir, command = reproduce.chain(repro, reproduce.mine(repro), start, seed)[0]
    assert run_dir == stage1_dir(args.output_dir, seed, start)
    return run_dir, command


def stage2_commands(args: Args, seed: int, start: str, name: str) -> list[tuple[str, list[str]]]:
    """A recipe's Stage II from one start (curve every steps/8 steps at curve_n samples), then its final checkpoint
    evaluated at eval_n samples, seeded like every other evaluation of the run."""
    recipe, data = RECIPES[name], reproduce.mine(reproduce.Args())
    run_dir = stage2_dir(args.output_dir, seed, start, name)
    model = "toy" if start == "base" else os.path.join(stage1_dir(args.output_dir, seed, start), "checkpoint")
    dev = ["--data", data["heldout"], "--limit", str(args.eval_limit), "--seed", str(seed), "--threads", "1"]
    train = ["train_stage2.py", "--model", model, "--output_dir", run_dir, *recipe.flags(), "--eval_before", "false"]
    train += ["--eval_every", str(max(1, recipe.steps // 8)), "--seed", str(seed), "--threads", "1"]
    train += ["--eval_data", data["heldout"], "--eval_n", str(args.curve_n), "--eval_limit", str(args.eval_limit)]
    train += ["--train_data", data["train"]]
    end = ["evaluate.py", "--model", os.path.join(run_dir, "checkpoint"), "--n", str(args.eval_n), *dev]
    return [(run_dir, train), (os.path.join(run_dir, "end"), end + ["--output_dir", os.path.join(run_dir, "end")])]


def jobs(args: Args) -> list[tuple[list[str], list[tuple[str, list[str]]]]]:
    """(run dirs that must be done first, the job's (run_dir, command) pairs), in the order they are started:
    every Stage I first, then the recipes in priority order, seed by seed."""
    seeds, starts = reproduce._ints(args.seeds), _names(args.starts, STARTS)
    out = [([], [stage1_command(args, s, m)]) for s in seeds for m in starts]
    for name in _names(args.recipes, RECIPES):
        out += [([stage1_dir(args.output_dir, s, m)], stage2_commands(args, s, m, name)) for s in seeds for m in starts]
    return out


def run_all(args: Args) -> None:
    """`jobs` workers take the first job whose prerequisites are done; a failed job is reported and left undone."""
    pending, lock = jobs(args), threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                ready = next((j for j in pending if all(reproduce.is_done(d) for d in j[0])), None)
                if ready is None and not pending:
                    return
                if ready is not None:
                    pending.remove(ready)
            if ready is None:  # everything left waits for a Stage I that another worker runs
                time.sleep(10)
                continue
            try:
                reproduce.run_chain(ready[1])
            except RuntimeError as error:
                print(error, flush=True)
                with lock:
                    pending[:] = [j for j in pending if ready[1][0][0] not in j[0]]  # its dependants cannot run

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for f in [pool.submit(worker) for _ in range(args.jobs)]:
            f.result()


# ------------------------------------------------------------------------------------------------------- the summary
def _pass(path: str) -> dict:
    return json.load(open(path))["pass@k"]


def run_summary(out: str, seed: int, start: str, name: str) -> dict | None:
    """One finished Stage-II run from its files: dev pass@1/pass@16 at the start and the end (eval_n samples), the
    curve (step 0 = the start; later points curve_n samples), and from metrics.jsonl the skipped updates, answer
    accuracy and entropy (first and last 10 steps), seconds per step (median). None while it is not finished."""
    run_dir, first = stage2_dir(out, seed, start, name), stage1_dir(out, seed, start)
    end = os.path.join(run_dir, "end", "pass_at_k.json")
    if not (os.path.exists(end) and os.path.isdir(os.path.join(first, "eval"))):
        return None
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl")) if line.strip()]
    rows = [r for r in rows if "skipped_update" in r]

    def mean(key: str, part: slice) -> float:
        return float(np.mean([r[key] for r in rows[part]]))

    s, e = _pass(final_eval(first)), _pass(end)
    curve = [[0, s["1"], s["16"]]]
    for path in sorted(glob.glob(os.path.join(run_dir, "eval", "step_*", "pass_at_k.json"))):
        result = json.load(open(path))
        curve.append([result["step"], result["pass@k"]["1"], result["pass@k"].get("16")])
    return {
        "seed": seed,
        "start": start,
        "recipe": name,
        "start_pass1": s["1"],
        "end_pass1": e["1"],
        "delta_pass1": e["1"] - s["1"],
        "start_pass16": s["16"],
        "end_pass16": e["16"],
        "curve": curve,
        "steps": len(rows),
        "skipped": int(sum(r["skipped_update"] for r in rows)),
        "accuracy_first10": mean("answer_accuracy", slice(0, 10)),
        "accuracy_last10": mean("answer_accuracy", slice(-10, None)),
        "entropy_first10": mean("entropy", slice(0, 10)),
        "entropy_last10": mean("entropy", slice(-10, None)),
        "seconds_per_step": float(np.median([r["time_step"] for r in rows])),
    }


def decide(cells: dict, tolerance: float) -> dict:
    """The pre-registered rule, per recipe. cells: {recipe: {start: [per-seed runs]}} with all three starts and the
    same seeds. A recipe passes when (1) from the base, dev pass@1 does not fall: mean over seeds of end - start >= 0
    and no seed below -tolerance; (2) from each ExpRL checkpoint (Outcome, Process) the same holds. Among those that
    pass: the highest mean end pass@1 over the ExpRL-primed runs (within `tolerance` of it, the fewest rollouts); if
    none passes, the closest: the highest worst mean change over the three starts.
    Returns {"verdicts": {recipe: [reasons it fails]}, "passed", "chosen", "worst_mean_change", "primed_end"}."""
    verdicts, worst, primed_end = {}, {}, {}
    for name, by_start in cells.items():
        if set(by_start) != set(STARTS):
            continue  # an incomplete recipe is not judged
        reasons = []
        for start in STARTS:
            deltas = [r["delta_pass1"] for r in by_start[start]]
            if np.mean(deltas) < 0:
                reasons.append(f"{start}: mean change {np.mean(deltas):+.4f} < 0")
            if min(deltas) < -tolerance:
                reasons.append(f"{start}: a seed falls by {-min(deltas):.4f} > {tolerance}")
        verdicts[name] = reasons
        worst[name] = min(float(np.mean([r["delta_pass1"] for r in by_start[m]])) for m in STARTS)
        primed_end[name] = float(np.mean([r["end_pass1"] for m in STARTS[1:] for r in by_start[m]]))
    passed = [n for n, reasons in verdicts.items() if not reasons]
    if passed:  # the best primed end; within `tolerance` of it, the cheapest
        best = max(primed_end[n] for n in passed)
        chosen = min((n for n in passed if primed_end[n] >= best - tolerance), key=lambda n: RECIPES[n].rollouts)
    else:
        chosen = max(worst, key=worst.get) if worst else None
    return dict(verdicts=verdicts, passed=passed, chosen=chosen, worst_mean_change=worst, primed_end=primed_end)


def summary_markdown(runs: list[dict], decision: dict, tolerance: float) -> str:
    """One row per recipe and start: means over seeds, and the per-seed changes the rule reads."""
    lines = [
        "| recipe | start | seeds | dev pass@1 start -> end | change per seed | dev pass@16 start -> end | "
        "train accuracy steps 1-10 -> last 10 | skipped updates | entropy first 10 -> last 10 | s / step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in RECIPES:
        for start in STARTS:
            rs = [r for r in runs if r["recipe"] == name and r["start"] == start]
            if not rs:
                continue
            m = {k: float(np.mean([r[k] for r in rs])) for k in rs[0] if isinstance(rs[0][k], (int, float))}
            per_seed = ", ".join(f"{r['delta_pass1']:+.3f}" for r in rs)
            lines.append(
                f"| {name} | {start} | {','.join(str(r['seed']) for r in rs)} | {m['start_pass1']:.3f} -> "
                f"{m['end_pass1']:.3f} | {per_seed} | {m['start_pass16']:.3f} -> {m['end_pass16']:.3f} | "
                f"{m['accuracy_first10']:.3f} -> {m['accuracy_last10']:.3f} | {m['skipped']:.1f} of {rs[0]['steps']} "
                f"| {m['entropy_first10']:.3f} -> {m['entropy_last10']:.3f} | {m['seconds_per_step']:.1f} |"
            )
    lines += ["", f"Rule (tolerance X = {tolerance}):", ""]
    for name, reasons in decision["verdicts"].items():
        lines.append(f"- {name}: " + ("passes" if not reasons else "fails: " + "; ".join(reasons)))
    if decision["chosen"]:
        how = "passes the rule" if decision["passed"] else "the closest: none passes"
        judged = f"{len(decision['verdicts'])} of {len(RECIPES)} recipes judged"
        judged += " (the others have unfinished runs)" if len(decision["verdicts"]) < len(RECIPES) else ""
        lines.append(f"- chosen: **{decision['chosen']}** ({how}; {judged})")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], path: str) -> None:
    """Dev pass@1 against rollouts sampled, mean over seeds, one panel per start, one line per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(STARTS), figsize=(5 * len(STARTS), 3.6), sharey=True)
    for ax, start in zip(axes, STARTS):
        for name, recipe in RECIPES.items():
            rs = [r for r in runs if r["recipe"] == name and r["start"] == start]
            if rs:
                steps = [c[0] for c in rs[0]["curve"]]
                y = np.mean([[c[1] for c in r["curve"]] for r in rs if len(r["curve"]) == len(steps)], axis=0)
                x = [s * recipe.group_size * recipe.prompts_per_step for s in steps]
                ax.plot(x, y, marker="o", ms=3, label=f"{name} ({len(rs)} seeds)")
        ax.set(title=f"Stage II from {start}", xlabel="rollouts sampled", ylabel="dev pass@1")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def copy_logs(out: str, dest: str) -> None:
    """The small files the summary reads (metrics, pass@k, config, the command line) of every finished run into dest,
    same layout."""
    for path in glob.glob(os.path.join(out, "s*", "*", "**", "*"), recursive=True):
        rel = os.path.relpath(path, out)
        parts = rel.split(os.sep)
        run_dir = os.path.join(out, *parts[: 4 if len(parts) > 4 and parts[3] == "end" else 3])
        if "checkpoint" in rel or not os.path.isfile(path) or not reproduce.is_done(run_dir):
            continue  # a finished run's files only
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if path.endswith(("metrics.jsonl", "pass_at_k.json", "config.json", "done")):
            shutil.copyfile(path, target)
        elif path.endswith("log.txt"):  # the command line only (the progress bars are long)
            with open(path) as f, open(target, "w") as g:
                g.write(f.readline())


def starts_markdown(out: str, seeds: list[int]) -> tuple[str, dict]:
    """The starting points' dev pass@1 and pass@16 (64 samples) per seed: the base, and the Stage-I checkpoints."""
    found = {}
    for start in STARTS:
        for seed in seeds:
            eval_dir = os.path.join(stage1_dir(out, seed, start), "eval")
            if os.path.isdir(eval_dir) and os.listdir(eval_dir):
                found.setdefault(start, {})[seed] = _pass(final_eval(stage1_dir(out, seed, start)))
    lines = ["| start | seeds | dev pass@1 per seed | dev pass@16 per seed |", "|---|---|---|---|"]
    for start, by_seed in found.items():
        p1, p16 = (", ".join(f"{v[k]:.3f}" for v in by_seed.values()) for k in ("1", "16"))
        lines.append(f"| {start} | {','.join(map(str, by_seed))} | {p1} | {p16} |")
    return "\n".join(lines) + "\n", {m: {str(s): v for s, v in by.items()} for m, by in found.items()}


def summarize(args: Args) -> str:
    seeds = reproduce._ints(args.seeds)
    starts_text, starts = starts_markdown(args.output_dir, seeds)
    runs = [r for n in RECIPES for s in seeds for m in STARTS if (r := run_summary(args.output_dir, s, m, n))]
    cells: dict = {}
    for r in runs:
        cells.setdefault(r["recipe"], {}).setdefault(r["start"], []).append(r)
    cells = {n: by for n, by in cells.items() if all(len(by.get(m, [])) == len(seeds) for m in STARTS)}
    decision = decide(cells, args.tolerance)
    text = summary_markdown(runs, decision, args.tolerance)
    os.makedirs(args.results_dir, exist_ok=True)
    recipes = {n: {**asdict(r), "rollouts": r.rollouts} for n, r in RECIPES.items()}
    summary = {"recipes": recipes, "starts": starts, "runs": runs, **decision}
    write_json(os.path.join(args.results_dir, "summary.json"), summary)
    with open(os.path.join(args.results_dir, "summary.md"), "w") as f:
        f.write("# Stage II recipes on the development split\n\nStarting points (the runs' own evaluations):\n\n")
        f.write(starts_text + "\nStage II, mean over seeds:\n\n" + text)
    if args.figure and runs:
        plot(runs, args.figure)
    return text


def main(args: Args) -> str:
    if not args.report_only:
        os.makedirs(args.output_dir, exist_ok=True)
        write_json(os.path.join(args.output_dir, "config.json"), asdict(args))
        run_all(args)
    logs = os.path.join(args.results_dir, "logs")
    if os.path.abspath(args.output_dir) != os.path.abspath(logs):
        copy_logs(args.output_dir, logs)
    text = summarize(args)
    print(text)
    return text


if __name__ == "__main__":
    os.chdir(REPO)
    (cli_args,) = HfArgumentParser(Args).parse_args_into_dataclasses()
    main(cli_args)
