"""The toy mixed-domain Table 4 (docs/paper.md, "Mixed domains (§4.6, Tables 3-6)"): per-domain pass@1 and
pass@16 on the development split after Stage I on the mixed hard set, for every priming method.

    python -m scripts.table4   # 6 methods x 3 seeds, Stage I only -> table4.md

Methods: the mixed base as it is; sparse GRPO (the rule-based reward of each row: math-verify, the multiple-choice
letter, the code's tests run in the sandbox); SFT on references; self-distillation; ExpRL-Outcome and ExpRL-Process
judged by the mixed toy judge (`--judge toy-mixed`: toy.mixed_judges.MixedJudge; in the process run, math and science
rows are judged per prefix and code rows at the outcome level, as in the authors' mixed run). Every run is a plain
command of this repository (scripts/reproduce.py's `run`: printed, logged, skipped when already done), `--jobs` at a
time with one torch thread each.

The trainers grade and route by the problem's domain (domains.rule_rewards.rule_reward, the judge's `domains=`);
per-domain pass@k is computed here from each run's last pass_at_k.json (correct counts in the order of the evaluated
problems) joined with the domain of the same problem in the data file (scripts/table4_report.py).
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from transformers import HfArgumentParser

from plumbing.common import REPO, write_json
from scripts.reproduce import cli_diff, is_done, run
from scripts.table4_report import report

STAGE1 = {  # method -> its Stage-I command (None: the base evaluated as it is)
    "base": None,
    "sparse": ["train_stage1.py", "--reward", "sparse"],
    "sft": ["baselines.py", "sft"],
    "self_distill": ["baselines.py", "self_distill"],
    "outcome": ["train_stage1.py", "--reward", "outcome", "--judge", "toy-mixed"],
    "process": ["train_stage1.py", "--reward", "process", "--judge", "toy-mixed"],
}
MIXED = os.path.join(REPO, "toy_data", "mixed")


@dataclass
class Args:
    output_dir: str = field(default="runs/table4", metadata={"help": "where every run and table4.md go"})
    methods: str = field(default=",".join(STAGE1), metadata={"help": "comma-separated subset of " + ", ".join(STAGE1)})
    seeds: str = field(default="0,1,2", metadata={"help": "comma-separated seeds (each seeds every run of its column)"})
    model: str = field(default="toy_mixed_base", metadata={"help": "the base every method starts from"})
    train_data: str = field(
        default=os.path.join(MIXED, "stage1_train.jsonl"), metadata={"help": "the mixed Stage-I set (mined)"}
    )
    dev_data: str = field(
        default=os.path.join(MIXED, "dev.jsonl"), metadata={"help": "development split, domains interleaved"}
    )
    steps: int = field(default=30, metadata={"help": "Stage-I steps of every RL-style method (paper: 230)"})
    group_size: int = field(default=8, metadata={"help": "rollouts per prompt"})
    prompts_per_step: int = field(default=6, metadata={"help": "prompts per step"})
    sft_epochs: int = field(default=2, metadata={"help": "SFT passes over the hard set (paper: 2)"})
    eval_n: int = field(default=16, metadata={"help": "samples per development problem (pass@k up to k = eval_n)"})
    eval_limit: int = field(
        default=72, metadata={"help": "development problems evaluated (the first ones: 24 per domain, interleaved)"}
    )
    jobs: int = field(default=2, metadata={"help": "runs in parallel, one torch thread each (2 on a 2-core machine)"})


def _list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def stage1_command(args: Args, method: str, seed: int) -> tuple[str, list[str]]:
    """(run_dir, command) of one cell: the method's Stage I on the mixed hard set, evaluated on the dev split."""
    if method not in STAGE1:
        raise SystemExit(f"--methods: unknown {method!r}; choose from {list(STAGE1)}")
    run_dir = os.path.join(args.output_dir, f"s{seed}", method)
    evaluation = ["--eval_data", args.dev_data, "--eval_n", str(args.eval_n), "--eval_limit", str(args.eval_limit)]
    common = ["--model", args.model, "--seed", str(seed), "--threads", "1", "--train_data", args.train_data]
    common += evaluation + ["--eval_before", "false", "--output_dir", run_dir]
    if STAGE1[method] is None:
        out = os.path.join(run_dir, "eval", "step_0000")
        command = ["evaluate.py", "--model", args.model, "--data", args.dev_data, "--n", str(args.eval_n)]
        return run_dir, command + ["--limit", str(args.eval_limit), "--seed", str(seed), "--output_dir", out]
    if method == "sft":
        return run_dir, STAGE1[method] + common + ["--epochs", str(args.sft_epochs)]
    size = ["--steps", str(args.steps), "--group_size", str(args.group_size)]
    return run_dir, STAGE1[method] + common + size + ["--prompts_per_step", str(args.prompts_per_step)]


def main(args: Args) -> str:
    start = time.time()
    seeds, methods = [int(s) for s in _list(args.seeds)], _list(args.methods)
    cells = [stage1_command(args, m, s) for s in seeds for m in methods]
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "config.json"), asdict(args))
    already = sum(is_done(run_dir) for run_dir, _ in cells)
    cells.sort(key=lambda cell: cell[1][0] == "evaluate.py")  # the long training runs first
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(lambda cell: run(*cell), cells))  # re-raises the first failure
    minutes = (time.time() - start) / 60
    resumed = f" ({already} of {len(cells)} runs were done before this invocation)" if already else ""
    header = (
        f"Command: `{' '.join(['python -m scripts.table4'] + cli_diff(args))}`: {minutes:.1f} min{resumed} on this "
        f"machine ({args.jobs} runs in parallel, 1 thread each)."
    )
    text = report(args.output_dir, methods, seeds, args.dev_data, header)
    print(text)
    return text


if __name__ == "__main__":
    (cli_args,) = HfArgumentParser(Args).parse_args_into_dataclasses()
    main(cli_args)
