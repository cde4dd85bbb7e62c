"""The toy-world reproduction of the paper's Tables 1 and 2 (docs/paper.md, "Main results (Tables 1 and 2)").

    python -m scripts.reproduce   # 6 priming methods x 5 seeds -> Stage I -> Stage II -> results.md + plots

For each seed and each priming method (base = none, SFT, sparse GRPO, self-distillation, ExpRL-Outcome,
ExpRL-Process) it runs Stage I, evaluates held-out pass@k (the Table 2 analogue), runs the same Stage II from that
checkpoint and evaluates again (the Table 1 analogue). Every run is a plain command of this repository (printed and
logged), `--jobs` of them at a time with one torch thread each, so any cell can be rerun or inspected on its own.
A finished run is skipped when the driver is started again, so an interrupted reproduction continues where it stopped.

The Stage-I set is the committed toy_data/stage1_train.jsonl: the hard problems the base solves 0 times in 512
samples (`python -m toy.world data`; `--mine true` re-mines into output_dir/data). The held-out set is not mined.

Outputs in --output_dir: data/ (with --mine true), s<seed>/<method>/{stage1,stage2}/ (run directories),
results.md (mean ± sample std over seeds; the headline table with 95% t intervals; every ordering seed by seed),
passk.png (pass@k curves), paired.png (ExpRL against each baseline after Stage II, paired by seed, with intervals),
stage1_training.png (fully-unsolved fraction and entropy over Stage-I steps, and Stage-II answer accuracy).
"""

import glob
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from transformers import HfArgumentParser

from plumbing.common import REPO, write_json
from scripts.reproduce_report import LABELS, report
from toy import TOY_DATA

STAGE1 = {  # method -> its Stage-I command (None = no Stage I); the tables' labels are reproduce_report.LABELS
    "base": None,
    "sft": ["baselines.py", "sft"],
    "sparse": ["train_stage1.py", "--reward", "sparse"],
    "self_distill": ["baselines.py", "self_distill"],
    "outcome": ["train_stage1.py", "--reward", "outcome"],
    "process": ["train_stage1.py", "--reward", "process"],
}
METHODS = {m: (LABELS[m], command) for m, command in STAGE1.items()}  # name -> (label, Stage-I command)
STAGE2_DEFAULT_LR = 1e-4  # train_stage2.Args().lr (inherited from config.Args; tests check they agree)


@dataclass(frozen=True)
class Recipe:
    """A Stage-II recipe: its size and optimiser; every other flag is train_stage2's default (clip 0.3, no KL,
    entropy bonus 1e-4, A = r - group mean). Compared on dev by scripts/stage2_recipes.py."""

    steps: int  # Stage-II steps of the dev comparison (paper: 500)
    group_size: int  # rollouts per prompt, G (paper: 32)
    prompts_per_step: int  # prompts per step (paper: 32)
    lr: float = STAGE2_DEFAULT_LR  # AdamW learning rate (paper: 1e-6 on a 4B model)

    def flags(self) -> list[str]:
        """train_stage2 flags; the learning rate only where it differs from the default, so that `toy-40` is the
        committed reproduction's Stage-II command flag for flag."""
        out = ["--steps", str(self.steps), "--group_size", str(self.group_size)]
        out += ["--prompts_per_step", str(self.prompts_per_step)]
        return out + (["--lr", f"{self.lr:g}"] if self.lr != STAGE2_DEFAULT_LR else [])

    @property
    def rollouts(self) -> int:
        """Rollouts sampled over the whole run (its cost): steps x G x prompts."""
        return self.steps * self.group_size * self.prompts_per_step


# The Stage-II recipes, in the pre-registered order of priority and with the rule that chose among them:
# docs/results.md, "Stage II in the toy world: choosing the recipe (dev split)".
RECIPES = {
    "toy-40": Recipe(40, 8, 8),  # the committed results' Stage II: in the reproduction, Stage I's size and steps
    "g32x2-40": Recipe(40, 32, 2),  # more attempts per prompt, same rollouts per step
    "lr2e-5-120": Recipe(120, 8, 8, lr=2e-5),  # a lower learning rate, 3x the steps
    "g16x4-40": Recipe(40, 16, 4),
    "g32x2-lr2e-5-120": Recipe(120, 32, 2, lr=2e-5),  # the two together
    "g32x8-40": Recipe(40, 32, 8),  # 4x the rollouts per step
}
STAGE2_RECIPE = "lr2e-5-120"  # the closest to the pre-registered rule of the recipes finished on dev (none passed)


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
            "help": "mine a fresh hard set with `python -m toy.world data` first (about 17 min at mine_k 512); "
            "False: the committed toy_data/, mined by that command"
        },
    )
    mine_candidates: int = field(default=320, metadata={"help": "hard candidates generated before mining"})
    mine_k: int = field(default=512, metadata={"help": "keep the candidates the base solves 0 times in mine_k samples"})
    stage1_steps: int = field(default=40, metadata={"help": "Stage-I steps of every RL-style method (paper: 230)"})
    stage2_steps: int = field(
        default=0, metadata={"help": "Stage-II steps (paper: 500); 0 = those of --stage2_recipe (toy-40: 40)"}
    )
    stage2_recipe: str = field(
        default=STAGE2_RECIPE,
        metadata={
            "help": "Stage II's rollouts per prompt, prompts per step and learning rate: "
            + ", ".join(RECIPES)
            + " (chosen on dev by scripts/stage2_recipes.py); toy-40 = the committed results' Stage II: 40 "
            "steps of --group_size x --prompts_per_step as Stage I, lr 1e-4",
            "choices": list(RECIPES),
        },
    )
    group_size: int = field(default=8, metadata={"help": "rollouts per prompt in Stage I and Stage II"})
    prompts_per_step: int = field(default=8, metadata={"help": "prompts per step in Stage I and Stage II"})
    sft_epochs: int = field(default=2, metadata={"help": "SFT passes over the hard set (paper: 2)"})
    eval_n: int = field(default=64, metadata={"help": "samples per held-out problem (pass@k up to k = eval_n)"})
    eval_limit: int = field(default=48, metadata={"help": "held-out (development) problems evaluated"})
    judge: str = field(default="toy", metadata={"help": "the judge of ExpRL-Outcome and ExpRL-Process (--judge)"})
    test_data: str = field(
        default=TOY_DATA["toy:test"], metadata={"help": "the untouched test split: final checkpoints are scored on it"}
    )
    test_n: int = field(default=32, metadata={"help": "samples per test problem (0: no test-split evaluation)"})
    test_limit: int = field(default=0, metadata={"help": "test problems evaluated (0 = all)"})
    jobs: int = field(default=2, metadata={"help": "runs in parallel, one torch thread each (2 on a 2-core machine)"})
    logs_dir: str = field(
        default="",
        metadata={
            "help": "where each finished column's logs go (no checkpoints; commit them), and from where a driver "
            "started later restores the columns finished there, so a reproduction resumes on a fresh checkout "
            "('' = off; needs --mine false)"
        },
    )


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _methods(args: Args) -> list[str]:
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    return names


# ------------------------------------------------------------------------------------------------ the commands
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
    if method in ("outcome", "process") and args.judge != "toy":
        command = command + ["--judge", args.judge]
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
        *stage2_flags(args),
        "--eval_before",
        "false",
    ]
    second += common
    steps = [(stage1, first), (stage2, second)]
    if args.test_n:  # the untouched test split, read by nothing else: every final checkpoint, seeded like the rest
        for run_dir, model in ((stage1, start), (stage2, os.path.join(stage2, "checkpoint"))):
            test = ["evaluate.py", "--model", model, "--data", args.test_data, "--n", str(args.test_n)]
            test += ["--limit", str(args.test_limit)] if args.test_limit else []
            test += ["--seed", str(seed), "--threads", "1", "--output_dir", os.path.join(run_dir, "test")]
            steps.append((os.path.join(run_dir, "test"), test))
    return steps


def stage2_flags(args: Args) -> list[str]:
    """--steps, --group_size, --prompts_per_step (and --lr) of Stage II: --stage2_recipe, its steps unless
    --stage2_steps is set; `toy-40` takes Stage I's sizes, as the committed results did."""
    recipe = RECIPES[args.stage2_recipe]
    steps = args.stage2_steps or recipe.steps
    if args.stage2_recipe == "toy-40":
        return Recipe(steps, args.group_size, args.prompts_per_step).flags()
    return Recipe(steps, recipe.group_size, recipe.prompts_per_step, recipe.lr).flags()


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


LOG_FILES = ("metrics.jsonl", "pass_at_k.json", "config.json", "judge_samples.jsonl", "log.txt", "done")


def copy_logs(src: str, dest: str) -> None:
    """The small files of the run directories under src (LOG_FILES, not checkpoints) into dest, same layout; every
    `done` marker last, so that a copy cut short is never taken for a finished run."""
    paths = sorted(glob.glob(os.path.join(src, "**", "*"), recursive=True), key=lambda p: p.endswith("done"))
    for path in paths:
        rel = os.path.relpath(path, src)
        if "checkpoint" in rel.split(os.sep) or os.path.basename(path) not in LOG_FILES or not os.path.isfile(path):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copyfile(path, os.path.join(dest, rel))


def column_logs(args: Args, steps: list[tuple[str, list[str]]]) -> tuple[str, str]:
    """(the column's directory in output_dir, its copy in logs_dir): s<seed>/<name>, the parent of Stage I's."""
    root = os.path.dirname(steps[0][0])
    return root, os.path.join(args.logs_dir, os.path.relpath(root, args.output_dir))


def check_logs_dir(args: Args) -> None:
    """--logs_dir restores columns trained on the committed toy_data/, so it cannot go with --mine (checked first)."""
    if args.logs_dir and args.mine:
        raise SystemExit("error: --logs_dir needs --mine false (a restored column was trained on toy_data/)")


def restore(args: Args, chains: list) -> int:
    """Copy the columns that logs_dir holds finished (every run's done marker) into output_dir, so they are skipped;
    a column half done there is rerun whole (its Stage-I checkpoint is not in the logs). -> columns restored."""
    restored = 0
    for steps in chains:
        root, logged = column_logs(args, steps)
        moved = [os.path.join(logged, os.path.relpath(d, root)) for d, _ in steps]
        if all(is_done(d) for d in moved) and not all(is_done(d) for d, _ in steps):
            copy_logs(logged, root)
            restored += 1
    print(f"restored {restored} finished columns from {args.logs_dir}", flush=True)
    return restored


def run_columns(args: Args, chains: list) -> None:
    """Every column, `--jobs` at a time (the first failure is re-raised); with --logs_dir, each column's logs are
    copied there as soon as it finishes."""

    def run_column(steps: list[tuple[str, list[str]]]) -> None:
        run_chain(steps)
        if args.logs_dir:  # the finished column's logs, ready to commit
            copy_logs(*column_logs(args, steps))

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(run_column, chains))


def mine(args: Args) -> dict:
    """The hard set: `python -m toy.world data` into output_dir/data (or the committed toy_data with --mine false)."""
    if not args.mine:
        return {"train": TOY_DATA["toy:train"], "heldout": TOY_DATA["toy:heldout"]}
    out = os.path.join(args.output_dir, "data")
    run(
        out,
        [
            "-m",
            "toy.world",
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


def cli_diff(args: Args) -> list[str]:
    """The flags that differ from the defaults of args' own class, so a results file names the exact command."""
    default = asdict(type(args)())
    return [f"--{k} {v}" for k, v in asdict(args).items() if v != default[k]]


def main(args: Args) -> str:
    start = time.time()
    methods, seeds = _methods(args), _ints(args.seeds)
    check_logs_dir(args)
    command = " ".join(["python -m scripts.reproduce"] + cli_diff(args))
    args.stage2_steps = args.stage2_steps or RECIPES[args.stage2_recipe].steps  # config.json holds the steps run
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "config.json"), asdict(args))
    if args.logs_dir:  # so that the seeds finished so far can be reported from the logs alone
        write_json(os.path.join(args.logs_dir, "config.json"), asdict(args))
    data = mine(args)
    kept = sum(1 for _ in open(data["train"]))
    mined = (
        f"Mining kept {kept} of {args.mine_candidates} hard candidates (0 of {args.mine_k} samples correct)."
        if args.mine
        else f"Stage-I set: the committed {os.path.relpath(data['train'], REPO)} ({kept} problems)."
    )
    # Seed by seed, so that a reproduction cut short leaves whole seeds (`reproduce_report --seeds`); within a seed
    # the longest chains first (RL Stage I), the base's evaluation last: fewer idle workers at the end.
    light = lambda c: c[0][1][0] == "evaluate.py" or c[0][1][:2] == ["baselines.py", "sft"]
    chains = [c for s in seeds for c in sorted((chain(args, data, m, s) for m in methods), key=light)]
    if args.logs_dir:
        restore(args, chains)
    runs = [run_dir for c in chains for run_dir, _ in c]
    already = sum(is_done(run_dir) for run_dir in runs)  # a restarted driver times only what it ran itself
    resumed = f" in this invocation ({already} of {len(runs)} runs were done before it)" if already else ""
    run_columns(args, chains)
    minutes = (time.time() - start) / 60
    header = (
        f"Command: `{command}` — {minutes:.1f} min{resumed} "
        f"on this machine ({args.jobs} runs in parallel, 1 thread each). {mined}"
    )
    text = report(args.output_dir, header)
    if args.logs_dir:
        for name in ("results.md", "passk.png", "stage1_training.png", "paired.png"):  # config.json: at the start
            if os.path.exists(os.path.join(args.output_dir, name)):  # paired.png needs 2 seeds and the test split
                shutil.copyfile(os.path.join(args.output_dir, name), os.path.join(args.logs_dir, name))
    print(text)
    return text


if __name__ == "__main__":
    (cli_args,) = HfArgumentParser(Args).parse_args_into_dataclasses()
    main(cli_args)
