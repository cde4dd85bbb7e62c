"""ExpRL Stage II: ordinary sparse-reward GRPO, started from a Stage-I checkpoint (or any checkpoint).

docs/paper.md, "Stage II": the same prompts with the reference removed; reward 1 if the \\boxed{} answer is
equivalent to the gold answer (math-verify), else 0; A = r - group mean (no std division); no KL; entropy bonus 1e-4;
grad clip 0.3.
The claim under test: Stage I raised coverage (pass@k), so Stage II now has correct samples to amplify.

Stage II IS the Stage-I loop with the sparse reward: this file only changes the defaults (a subclass of Stage I's
Args, config.py, where the Stage-II paper preset is too) and calls train_stage1.main, so the two stages can never drift
apart.

    python train_stage1.py                   # Stage I (ExpRL-Outcome on the toy world) -> runs/stage1/checkpoint
    python train_stage2.py                   # Stage II from it -> runs/stage2
    python train_stage2.py --model toy --output_dir runs/stage2_from_base   # the base-primed control
"""

import os
from dataclasses import dataclass, field

import config
import train_stage1
from plumbing.cli import fail, parse_cli
from scale import distributed


@dataclass
class Args(config.Args):
    model: str = field(
        default="runs/stage1/checkpoint",
        metadata={
            "help": "starting checkpoint: a Stage-I (or SFT, self-distillation) checkpoint, or 'toy' for the base"
        },
    )
    output_dir: str = field(
        default="runs/stage2", metadata={"help": "run directory: config.json, metrics.jsonl, eval/, checkpoint/"}
    )
    reward: str = field(
        default="sparse",
        metadata={"help": "Stage II is sparse by definition (0/1 final answer)", "choices": ["sparse"]},
    )
    judge: str = field(default="", metadata={"help": "unused in Stage II (no judge)"})
    # docs/paper.md, "Stage II", scaled to the toy world: 8 x 8 rollouts instead of 32 x 32, lr 1e-4 instead of 1e-6.
    scale_advantages: bool = field(
        default=False, metadata={"help": "False: A = r - group mean (PAPER); True: divide by the group std too"}
    )
    kl_coef: float = field(default=0.0, metadata={"help": "no KL in Stage II (PAPER)"})
    entropy_coef: float = field(default=1e-4, metadata={"help": "entropy bonus (PAPER: 1e-4)"})
    max_grad_norm: float = field(default=0.3, metadata={"help": "gradient-norm clip (PAPER: 0.3)"})
    clip_high: float = field(default=0.28, metadata={"help": "PPO clip, upper bound"})
    steps: int = field(default=60, metadata={"help": "Stage-II steps (paper: 500)"})


def parse_args(argv: list[str] | None = None) -> Args:
    """Command line -> Args (Stage II defaults; --preset paper-4b fills docs/paper.md, "Stage II"); a bad flag or
    value stops with one line and exit status 2 before anything is loaded."""
    args, given = parse_cli(Args, argv)
    if args.preset:
        config.apply_preset(args, given, config.STAGE2_PRESETS)
        if "model" not in given or "train_data" not in given:
            fail(f"--preset {args.preset} needs --model (the Stage-I checkpoint) and --train_data")
    if args.model != "toy" and not os.path.isfile(os.path.join(args.model, "config.json")):
        fail(
            f"--model {args.model!r}: no checkpoint there (config.json missing). Run Stage I first (python "
            "train_stage1.py writes runs/stage1/checkpoint) or pass --model toy for the base."
        )
    config.check_args(args)
    return args


def main(args: Args) -> dict:
    return train_stage1.main(args)


if __name__ == "__main__":
    main(parse_args())
    distributed.cleanup()  # torchrun: leave the process group cleanly
