"""The toy-world reproduction of the paper's Tables 1 and 2 (PAPER.md, "Baselines", "Stage II", "Evaluation").

    python -m scripts.reproduce   # 6 priming methods x 5 seeds -> Stage I -> Stage II -> results.md + plots

For each seed and each priming method (base = none, SFT, sparse GRPO, self-distillation, ExpRL-Outcome,
ExpRL-Process) it runs Stage I, evaluates held-out pass@k (the Table 2 analogue), runs the same Stage II from that
checkpoint and evaluates again (the Table 1 analogue). Every run is a plain command of this repository (printed and
logged), `--jobs` of them at a time with one torch thread each, so any cell can be rerun or inspected on its own.
A finished run is skipped when the driver is started again, so an interrupted reproduction continues where it stopped.

The Stage-I set is the committed toy_data/stage1_train.jsonl: the hard problems the base solves 0 times in 512
samples (`python toy.py data`; `--mine true` re-mines into output_dir/data). The held-out set is not mined.

Outputs in --output_dir: data/ (with --mine true), s<seed>/<method>/{stage1,stage2}/ (run directories),
results.md (mean ± sample std over seeds), passk.png (pass@k curves), stage1_training.png (fully-unsolved fraction and
entropy over Stage-I steps, and Stage-II answer accuracy).
"""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
from transformers import HfArgumentParser

from common import REPO, TOY_DATA, write_json

METHODS = {  # name -> (label in the tables, Stage-I command; None = no Stage I)
    "base": ("Base (no Stage I)", None),
    "sft": ("SFT on references", ["baselines.py", "sft"]),
    "sparse": ("Sparse GRPO", ["train_stage1.py", "--reward", "sparse"]),
    "self_distill": ("Self-distillation", ["baselines.py", "self_distill"]),
    "outcome": ("ExpRL-Outcome", ["train_stage1.py", "--reward", "outcome"]),
    "process": ("ExpRL-Process", ["train_stage1.py", "--reward", "process"]),
}


@dataclass
class Args:
    output_dir: str = field(default="runs/reproduce", metadata={"help": "where every run, results.md and the plots go"})
    methods: str = field(
        default=",".join(METHODS), metadata={"help": "comma-separated subset of " + ", ".join(METHODS)}
    )
    seeds: str = field(
        default="0,1,2,3,4", metadata={"help": "comma-separated seeds (each seeds every run of its column)"}
    )
    mine: bool = field(
        default=False,
        metadata={
            "help": "mine a fresh hard set with `python toy.py data` first (about 17 min at mine_k 512); "
            "False: the committed toy_data/, mined by that command"
        },
    )
    mine_candidates: int = field(default=320, metadata={"help": "hard candidates generated before mining"})
    mine_k: int = field(default=512, metadata={"help": "keep the candidates the base solves 0 times in mine_k samples"})
    stage1_steps: int = field(default=40, metadata={"help": "Stage-I steps of every RL-style method (paper: 230)"})
    stage2_steps: int = field(default=40, metadata={"help": "Stage-II steps (paper: 500)"})
    group_size: int = field(default=8, metadata={"help": "rollouts per prompt in Stage I and Stage II"})
    prompts_per_step: int = field(default=8, metadata={"help": "prompts per step in Stage I and Stage II"})
    sft_epochs: int = field(default=2, metadata={"help": "SFT passes over the hard set (paper: 2)"})
    eval_n: int = field(default=64, metadata={"help": "samples per held-out problem (pass@k up to k = eval_n)"})
    eval_limit: int = field(default=48, metadata={"help": "held-out problems evaluated"})
    jobs: int = field(default=2, metadata={"help": "runs in parallel, one torch thread each (2 on a 2-core machine)"})


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _methods(args: Args) -> list[str]:
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    return names


# ------------------------------------------------------------------------------------------------ the commands
def final_eval(run_dir: str) -> str:
    """The pass_at_k.json of a run's last evaluation (the highest step directory under run_dir/eval)."""
    tags = sorted(os.listdir(os.path.join(run_dir, "eval")))
    return os.path.join(run_dir, "eval", tags[-1], "pass_at_k.json")


def is_done(run_dir: str) -> bool:
    """The driver writes run_dir/done only after the command exited cleanly."""
    return os.path.exists(os.path.join(run_dir, "done"))


def chain(
    args: Args, data: dict, method: str, seed: int, name: str = "", stage1_flags: tuple[str, ...] = ()
) -> list[tuple[str, list[str]]]:
    """The (run_dir, command) pairs of one table column: Stage I (or the base evaluation), then Stage II.

    `name` (default: the method) names the column's directory; `stage1_flags` are appended to the Stage-I command
    (scripts/judge_dial.py adds `--judge_error_rate p` this way); Stage II is the same for every column.
    """
    root = os.path.join(args.output_dir, f"s{seed}", name or method)
    stage1, stage2 = os.path.join(root, "stage1"), os.path.join(root, "stage2")
    common = [
        "--seed",
        str(seed),
        "--threads",
        "1",
        "--eval_data",
        data["heldout"],
        "--eval_n",
        str(args.eval_n),
        "--eval_limit",
        str(args.eval_limit),
        "--train_data",
        data["train"],
    ]
    rl = [
        "--steps",
        str(args.stage1_steps),
        "--group_size",
        str(args.group_size),
        "--prompts_per_step",
        str(args.prompts_per_step),
        "--eval_before",
        "false",
    ]
    _, command = METHODS[method]
    if command is None:  # the base is evaluated as it is: the Table 2 row "Base"
        first = [
            "evaluate.py",
            "--model",
            "toy",
            "--data",
            data["heldout"],
            "--n",
            str(args.eval_n),
            "--limit",
            str(args.eval_limit),
            "--seed",
            str(seed),
            "--output_dir",
            os.path.join(stage1, "eval", "step_0000"),
        ]
        start = "toy"
    elif method == "sft":
        first = command + common + ["--output_dir", stage1, "--epochs", str(args.sft_epochs), "--eval_before", "false"]
        start = os.path.join(stage1, "checkpoint")
    else:
        first = command + common + rl + list(stage1_flags) + ["--output_dir", stage1]
        start = os.path.join(stage1, "checkpoint")
    second = [
        "train_stage2.py",
        "--model",
        start,
        "--output_dir",
        stage2,
        "--steps",
        str(args.stage2_steps),
        "--group_size",
        str(args.group_size),
        "--prompts_per_step",
        str(args.prompts_per_step),
        "--eval_before",
        "false",
    ] + common
    return [(stage1, first), (stage2, second)]


def run(run_dir: str, command: list[str]) -> float:
    """Run one command (skipped when run_dir is already done); its output goes to run_dir/log.txt."""
    if is_done(run_dir):
        return 0.0
    os.makedirs(run_dir, exist_ok=True)
    start = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(os.path.join(run_dir, "log.txt"), "w") as log:
        log.write("python " + " ".join(command) + "\n")
        log.flush()
        done = subprocess.run([sys.executable, *command], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"failed (exit {done.returncode}): python {' '.join(command)}\n  see {run_dir}/log.txt")
    seconds = time.time() - start
    with open(os.path.join(run_dir, "done"), "w") as f:
        f.write(f"{seconds:.1f}\n")
    print(f"[{seconds:6.1f}s] python {' '.join(command)}", flush=True)
    return seconds


def run_chain(steps: list[tuple[str, list[str]]]) -> float:
    return sum(run(run_dir, command) for run_dir, command in steps)


def mine(args: Args) -> dict:
    """The hard set: `python toy.py data` into output_dir/data (or the committed toy_data with --mine false)."""
    if not args.mine:
        return {"train": TOY_DATA["toy:train"], "heldout": TOY_DATA["toy:heldout"]}
    out = os.path.join(args.output_dir, "data")
    run(
        out,
        [
            "toy.py",
            "data",
            "--output_dir",
            out,
            "--num_candidates",
            str(args.mine_candidates),
            "--mine_k",
            str(args.mine_k),
        ],
    )
    return {"train": os.path.join(out, "stage1_train.jsonl"), "heldout": os.path.join(out, "heldout.jsonl")}


# ------------------------------------------------------------------------------------------------- the results
def collect(args: Args, methods: list[str], seeds: list[int]) -> dict:
    """-> {stage: {method: [pass_at_k.json per seed]}} for stage in stage1, stage2."""
    table = {}
    for stage in ("stage1", "stage2"):
        table[stage] = {
            m: [json.load(open(final_eval(os.path.join(args.output_dir, f"s{s}", m, stage)))) for s in seeds]
            for m in methods
        }
    return table


def mean_std(values: list[float]) -> str:
    """'0.123 ± 0.045' with the sample std over seeds (ddof 1); a single seed has no spread: '0.123'."""
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def results_markdown(args: Args, table: dict, seeds: list[int], minutes: float, mined: str, resumed: str = "") -> str:
    n = args.eval_n
    ks = [k for k in ("1", "16", str(n)) if k in next(iter(table["stage1"].values()))[0]["pass@k"]]
    ks = list(dict.fromkeys(ks))
    lines = [
        f"# Toy-world reproduction (seeds {', '.join(map(str, seeds))}; mean ± sample std over seeds)",
        "",
        f"Command: `{' '.join(['python -m scripts.reproduce'] + _cli_diff(args))}` — {minutes:.1f} min{resumed} "
        f"on this machine ({args.jobs} runs in parallel, 1 thread each). {mined}",
        "",
        f"Held-out: {table['stage1'][next(iter(table['stage1']))][0]['num_problems']} hard problems x {n} samples "
        f"(temperature 1.0). Stage I: {args.stage1_steps} steps x {args.prompts_per_step} prompts x "
        f"{args.group_size} rollouts (SFT: {args.sft_epochs} epochs); Stage II: {args.stage2_steps} steps, same size.",
        "",
    ]
    for stage, title in (
        ("stage1", "After Stage I (the Table 2 analogue)"),
        ("stage2", "After Stage I + the same Stage II (the Table 1 analogue)"),
    ):
        lines += [
            f"## {title}",
            "",
            "| method | " + " | ".join(f"pass@{k}" for k in ks) + " |",
            "|---|" + "---|" * len(ks),
        ]
        for method, results in table[stage].items():
            cells = [mean_std([r["pass@k"][k] for r in results]) for k in ks]
            lines.append(f"| {METHODS[method][0]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["![pass@k](passk.png)", "", "![Stage-I training](stage1_training.png)", ""]
    return "\n".join(lines)


def _cli_diff(args: Args) -> list[str]:
    """The flags that differ from the defaults, so results.md names the exact command."""
    default = asdict(Args())
    return [f"--{k} {v}" for k, v in asdict(args).items() if v != default[k]]


def plot(args: Args, table: dict, methods: list[str], seeds: list[int]) -> None:
    """passk.png (mean pass@k curve per method, after Stage I and after Stage II) and stage1_training.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, stage, title in zip(axes, ("stage1", "stage2"), ("after Stage I", "after Stage II")):
        for method in methods:
            ks = [int(k) for k in table[stage][method][0]["pass@k"]]
            curve = np.mean([[r["pass@k"][str(k)] for k in ks] for r in table[stage][method]], axis=0)
            ax.plot(ks, curve, marker="o", label=METHODS[method][0], color=_color(method))
        ax.set(xscale="log", xlabel="k", title=f"held-out pass@k {title}")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@k")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.output_dir, "passk.png"), dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = [
        ("stage1", "fully_unsolved", "Stage I: fully-unsolved prompts"),
        ("stage1", "entropy", "Stage I: token entropy"),
        ("stage2", "answer_accuracy", "Stage II: answer accuracy"),
    ]
    for ax, (stage, key, title) in zip(axes, panels):
        for method in methods:
            runs = [
                _metric_curve(os.path.join(args.output_dir, f"s{s}", method, stage, "metrics.jsonl"), key)
                for s in seeds
            ]
            runs = [r for r in runs if r]
            if runs:
                length = min(len(r) for r in runs)
                curve = np.mean([r[:length] for r in runs], axis=0)  # mean over seeds
                window = min(5, length)  # a 5-step moving average: 8 prompts per step make a noisy fraction
                smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
                ax.plot(range(window, length + 1), smooth, label=METHODS[method][0], color=_color(method))
        ax.set(xlabel="step", title=f"{title} (5-step mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.output_dir, "stage1_training.png"), dpi=90)
    plt.close(fig)


def diagnostics_markdown(args: Args, methods: list[str], seeds: list[int]) -> str:
    """A table of what happened during training, mean over seeds: fully-unsolved fraction (first -> last 10 Stage-I
    steps), final token entropy, and how many optimiser steps had no advantage at all (skipped, `--skip_no_signal`)."""
    first, last, every = slice(0, 10), slice(-10, None), slice(None)

    def stat(method: str, stage: str, key: str, part: slice, reduce=np.mean, fmt: str = ".2f") -> str:
        """reduce(key over the steps in part) per seed, averaged over seeds; "" when the run logged no such key."""
        values = [
            _metric_curve(os.path.join(args.output_dir, f"s{s}", method, stage, "metrics.jsonl"), key)[part]
            for s in seeds
        ]
        values = [reduce(v) for v in values if len(v)]
        return format(np.mean(values), fmt) if values else ""

    def skipped(method: str, stage: str) -> str:  # optimiser steps skipped over a whole run
        return stat(method, stage, "skipped_update", every, np.sum, ".1f")

    lines = [
        "## During training (mean over seeds)",
        "",
        "| method | S-I fully unsolved, first -> last 10 steps | S-I entropy, last 10 | S-I skipped updates | "
        "S-II skipped updates | S-II answer accuracy, last 10 |",
        "|---|---|---|---|---|---|",
    ]
    for m in methods:
        before, after = stat(m, "stage1", "fully_unsolved", first), stat(m, "stage1", "fully_unsolved", last)
        unsolved = f"{before} -> {after}" if before else ""  # base and SFT have no Stage-I RL log
        lines.append(
            f"| {METHODS[m][0]} | {unsolved} | {stat(m, 'stage1', 'entropy', last)} | {skipped(m, 'stage1')} | "
            f"{skipped(m, 'stage2')} of {args.stage2_steps} | {stat(m, 'stage2', 'answer_accuracy', last)} |"
        )
    return "\n".join(lines + [""])


def _color(method: str) -> str:
    """One colour per method in every panel (base and SFT have no Stage-I curves, so the default cycle would shift)."""
    return f"C{list(METHODS).index(method)}"


def _metric_curve(path: str, key: str) -> list[float]:
    if not os.path.exists(path):
        return []
    rows = [json.loads(line) for line in open(path)]
    return [r[key] for r in rows if key in r]


def main(args: Args) -> str:
    start = time.time()
    methods, seeds = _methods(args), _ints(args.seeds)
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "config.json"), asdict(args))
    data = mine(args)
    mined = ""
    if args.mine:
        kept = sum(1 for _ in open(data["train"]))
        mined = f"Mining kept {kept} of {args.mine_candidates} hard candidates (0 of {args.mine_k} samples correct)."
    chains = [chain(args, data, m, s) for s in seeds for m in methods]
    # Longest chains first (RL Stage I), the base's evaluation last: fewer idle workers at the end.
    chains.sort(key=lambda c: c[0][1][0] == "evaluate.py" or c[0][1][:2] == ["baselines.py", "sft"])
    runs = [run_dir for c in chains for run_dir, _ in c]
    already = sum(is_done(run_dir) for run_dir in runs)  # a restarted driver times only what it ran itself
    resumed = f" in this invocation ({already} of {len(runs)} runs were done before it)" if already else ""
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(run_chain, chains))  # re-raises the first failure
    table = collect(args, methods, seeds)
    minutes = (time.time() - start) / 60
    text = (
        results_markdown(args, table, seeds, minutes, mined, resumed)
        + "\n"
        + diagnostics_markdown(args, methods, seeds)
    )
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(text)
    plot(args, table, methods, seeds)
    print(text)
    return text


if __name__ == "__main__":
    (cli_args,) = HfArgumentParser(Args).parse_args_into_dataclasses()
    main(cli_args)
