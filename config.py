"""The command line of Stage I (and, by subclassing, Stage II and self-distillation): the Args dataclass, the paper
preset, the checks that stop a bad command line or input with one line before anything is loaded, and what each
--judge name builds (`build_judge`, the one place that imports the toy world's judges, lazily).

Every field has a help string; defaults run the toy world; the paper's value is named where it differs.
"""

import importlib.util
import json
from dataclasses import dataclass

import torch

from advantages import PROCESS_MODES
from grpo import AGGREGATIONS, LossConfig
from plumbing.cli import arg, check_flags, fail, parse_cli
from plumbing.common import check_model_path, load_model, load_problem_set

REWARDS = ("outcome", "process", "sparse", "self_distill")
ERROR_DIAL_JUDGES = ("toy", "toy-v3", "toy-fresh", "toy-v2", "toy-rubric")  # the toy judges with an error dial


@dataclass
class Args:
    # --- what to train, on what
    model: str = arg("toy", "policy: 'toy' (the committed toy base) or a directory")
    judge: str = arg(
        "toy",
        "'toy' (toy world only: the LLM-like rubric judge of toy/llm_like_judge.py, errs like the paper's 4B judge; "
        "'toy-v3' / 'toy-v2' its earlier versions, 'toy-fresh' with fresh dice per prefix), 'toy-rubric' (the exact "
        "rubric judge), 'toy-progress' (the checkpoint counter), "
        "a judge model directory, or an OpenAI-compatible server URL http://host:port/v1 (e.g. vLLM's api_server on "
        "the judge GPUs; needs `pip install openai`)",
    )
    judge_error_rate: float = arg(
        0.0,
        "--judge toy (any version) or toy-rubric: the share of judged texts scored against a misread reference "
        "(toy/llm_like_judge.py; scripts/judge_dial.py measures the misplacement per value)",
    )
    judge_model: str = arg("judge", "with an http judge: the model name the server serves (its --served-model-name)")
    train_data: str = arg("toy:train", "'toy:train', a JSONL file or an HF dataset (question/reference/answer)")
    eval_data: str = arg(
        "toy:heldout", "held-out problems for pass@k ('' to skip; no reference needed; several: comma-separated)"
    )
    data_domain: str = arg(
        "",
        "domain of the train/eval rows that carry no 'ability' or 'domain' column: math | science | code ('' = math; "
        "docs/mixed-domains.md)",
        choices=("", "math", "science", "code"),
    )
    output_dir: str = arg("runs/stage1", "run directory: config.json, metrics.jsonl, eval/, checkpoint/")
    # --- the reward
    reward: str = arg(
        "outcome",
        "outcome | process (ExpRL) | sparse (the GRPO baseline, 0/1 answer) | self_distill (the self-distillation "
        "baseline: python baselines.py self_distill)",
        choices=REWARDS,
    )
    process_view: str = arg(
        "prefix", "prefix (PAPER: judge y_<=t) | segment (CODE: judge segment t alone)", choices=("prefix", "segment")
    )
    advantage: str = arg(
        "delta",
        "process advantages: delta (Eq. 2, the default) | delta_code | delta_from_zero | end | group_norm "
        "(docs/results.md: the measurement that chose it)",
        choices=PROCESS_MODES,
    )
    delimiter: str = arg("###", "segment delimiter for process judging")
    # --- sampling
    group_size: int = arg(8, "rollouts per prompt, G (paper: 10 outcome, 16 process)")
    prompts_per_step: int = arg(8, "prompts per step (paper: 36)")
    temperature: float = arg(1.0, "sampling temperature (paper: 0.8)")
    max_new_tokens: int = arg(160, "response length limit; over-length responses get reward/advantage 0 (paper: 16384)")
    judge_max_tokens: int = arg(
        2048, "judge output limit, greedy (paper: 2048); an output cut before its 'Score:' line fails to parse"
    )
    judge_patience: int = arg(
        3,
        "stop (after a resumable checkpoint) when every judge request of this many steps in a row failed or gave no "
        "score; 0 = never stop",
    )
    # --- optimisation
    steps: int = arg(60, "Stage-I steps (paper: 230)")
    lr: float = arg(1e-4, "AdamW learning rate, constant (paper: 1e-6 for Qwen3-4B)")
    weight_decay: float = arg(0.01, "AdamW weight decay")
    updates_per_step: int = arg(
        1, "mini-batches (optimiser steps) per step; 1 = fully on-policy (paper: 2 outcome, 1 process)"
    )
    micro_batch_size: int = arg(64, "rows per forward/backward (memory only; the gradient is the same)")
    gradient_checkpointing: bool = arg(
        False, "recompute each layer's activations in backward (long responses on GPUs; docs/real-models.md)"
    )
    logprob_chunk_size: int = arg(
        0,
        "LM head over this many response tokens at a time when computing log-probs (logprobs.py): memory grows with "
        "tokens x hidden size instead of tokens x vocabulary; same numbers to float rounding; 0 = all at once (paper "
        "preset: 1024; docs/memory-budget.md)",
    )
    clip_low: float = arg(0.2, "PPO clip, lower bound (ratio >= 1 - clip_low)")
    clip_high: float = arg(0.28, "PPO clip, upper bound (paper: 0.28 outcome, 0.26 process)")
    dual_clip: float = arg(3.0, "dual-clip constant for negative advantages (> 1)")
    kl_coef: float = arg(0.001, "k3 KL to the frozen base in the loss (0 = no reference)")
    max_grad_norm: float = arg(1.0, "gradient-norm clip")
    loss_agg: str = arg("token-mean", "loss aggregation over the mini-batch (grpo.aggregate)", choices=AGGREGATIONS)
    scale_advantages: bool = arg(
        True, "outcome/sparse advantages divided by the group std (Stage I); False = r - group mean (Stage II)"
    )
    entropy_coef: float = arg(0.0, "entropy bonus (paper: 0 in Stage I, 1e-4 in Stage II)")
    skip_no_signal: bool = arg(
        True,
        "no optimiser step for a mini-batch whose advantages are all 0: Adam would turn the KL / entropy term alone "
        "into a full-lr step (docs/results.md)",
    )
    # --- bookkeeping
    eval_before: bool = arg(True, "evaluate before training too")
    eval_every: int = arg(0, "evaluate every N steps (0: only before and after)")
    eval_n: int = arg(64, "samples per held-out problem for pass@k (paper: 128)")
    eval_limit: int = arg(64, "held-out problems evaluated (0 = all)")
    log_group_every: int = arg(
        10,
        "every N steps, one whole GRPO group (texts, segments, scores, advantages) to groups.jsonl; 0 = off (python "
        "-m analysis.show_group RUN_DIR draws it)",
    )
    save_every: int = arg(
        0, "resumable checkpoint every N steps in output_dir/checkpoints/step_N (0: only the final one)"
    )
    keep_last: int = arg(2, "periodic checkpoints kept, newest first (0 = all)")
    resume: bool = arg(
        False, "continue from the newest complete checkpoint in output_dir (same flags; later rows dropped)"
    )
    data_parallel: str = arg(
        "auto",
        "under torchrun: ddp | fsdp (FSDP2, needs --engine vllm) | auto; see scale/distributed.py",
        choices=("auto", "ddp", "fsdp"),
    )
    seed: int = arg(0, "seeds Python, NumPy, torch and sampling")
    threads: int = arg(2, "torch CPU threads (0 = torch default; 1 on a busy machine)")
    device: str = arg("cuda" if torch.cuda.is_available() else "cpu", "cpu | cuda", choices=("cpu", "cuda"))
    engine: str = arg(
        "hf",
        "rollout engine: hf (generate; anywhere) | vllm (in-process vLLM, weights synced each step)",
        choices=("hf", "vllm"),
    )
    vllm_memory: float = arg(0.3, "vLLM gpu_memory_utilization of the policy engine")
    vllm_kwargs: str = arg("{}", "extra vllm.LLM arguments as a JSON object, e.g. '{\"enforce_eager\": true}'")
    preset: str = arg(
        "",
        "'paper-4b': the paper's Stage-I settings for Qwen3-4B-Instruct-2507 on a GPU node with vLLM "
        '(docs/paper.md, "Stage I optimiser settings"); flags given explicitly still win',
        choices=("", "paper-4b"),
    )
    report_to: str = arg(
        "none",
        "also log the metrics to tensorboard (output_dir/tensorboard) or wandb; metrics.jsonl is always kept",
        choices=("none", "tensorboard", "wandb"),
    )
    benchmark: bool = arg(
        False, "time the steps only: no evaluation, no checkpoint; print median/min/max seconds per phase"
    )


# docs/paper.md, "Stage I optimiser settings": shared settings, then the ones that differ between Outcome and Process.
PRESETS = {
    "paper-4b": {
        "common": dict(
            prompts_per_step=36,
            lr=1e-6,
            weight_decay=0.01,
            clip_low=0.2,
            kl_coef=0.001,
            dual_clip=3.0,
            max_grad_norm=1.0,
            temperature=0.8,
            max_new_tokens=16384,
            steps=230,
            loss_agg="token-mean",
            engine="vllm",
            micro_batch_size=4,
            logprob_chunk_size=1024,
            eval_n=128,
            eval_limit=0,
            advantage="delta",
            threads=0,
        ),
        "outcome": dict(group_size=10, updates_per_step=2, clip_high=0.28),
        "process": dict(group_size=16, updates_per_step=1, clip_high=0.26),
        "sparse": dict(group_size=16, prompts_per_step=32, updates_per_step=2, clip_high=0.26),
    }
}

# docs/paper.md, "Stage II", for Qwen3-4B on a GPU node; flags given explicitly still win.
STAGE2_PRESETS = {
    "paper-4b": {
        "common": dict(
            group_size=32,
            prompts_per_step=32,
            steps=500,
            lr=1e-6,
            weight_decay=0.01,
            kl_coef=0.0,
            entropy_coef=1e-4,
            max_grad_norm=0.3,
            temperature=0.8,
            max_new_tokens=16384,
            updates_per_step=1,
            engine="vllm",
            micro_batch_size=4,
            logprob_chunk_size=1024,
            eval_n=128,
            eval_limit=0,
            threads=0,
        )
    }
}


def apply_preset(args, given: set[str], presets: dict) -> None:
    """--preset NAME: every field the command line did not set explicitly (`given`) takes the value of presets[NAME],
    its shared settings ("common") first, then those of args.reward (PRESETS, STAGE2_PRESETS)."""
    preset = presets[args.preset]
    for name, value in {**preset["common"], **preset.get(args.reward, {})}.items():
        if name not in given:
            setattr(args, name, value)


def parse_args(argv: list[str] | None = None) -> Args:
    """Command line -> Args; a --preset fills every field the command line does not set explicitly. A bad flag or
    value stops here with one line and exit status 2 (plumbing.cli.parse_cli, check_args), before anything is loaded."""
    args, given = parse_cli(Args, argv)
    if args.preset:
        apply_preset(args, given, PRESETS)
        judged = args.reward in ("outcome", "process")
        if "model" not in given or ("judge" not in given and judged) or "train_data" not in given:
            fail(
                f"--preset {args.preset} needs --model and --judge (local Qwen3-4B-Instruct-2507 directories; the "
                "paper's judge is a frozen copy of the base policy) and --train_data (your hard problems)"
            )
    check_args(args)
    return args


def loss_config(args: Args) -> LossConfig:
    """The GRPO loss of the command line (grpo.LossConfig: clip bounds, KL and entropy terms, aggregation), the one
    place it is built (train_stage1.update_policy)."""
    return LossConfig(
        clip_low=args.clip_low,
        clip_high=args.clip_high,
        dual_clip=args.dual_clip,
        kl_coef=args.kl_coef,
        entropy_coef=args.entropy_coef,
        agg=args.loss_agg,
        temperature=args.temperature,
        log_entropy=True,
        norm_length=args.max_new_tokens,
        chunk_size=args.logprob_chunk_size or None,
    )


def check_args(args: Args) -> None:
    """Every numeric flag in range, every JSON flag parseable; the first bad one stops the run (one line, exit 2)."""
    rules = [
        ("group_size", args.group_size >= 1, ">= 1"),
        ("prompts_per_step", args.prompts_per_step >= 1, ">= 1"),
        ("steps", args.steps >= 0, ">= 0"),
        ("lr", args.lr > 0 and args.lr < float("inf"), "> 0 and finite"),
        ("weight_decay", args.weight_decay >= 0, ">= 0"),
        ("temperature", 0 < args.temperature < float("inf"), "> 0 and finite"),
        ("max_new_tokens", args.max_new_tokens >= 1, ">= 1"),
        ("judge_max_tokens", args.judge_max_tokens >= 1, ">= 1"),
        ("judge_error_rate", 0 <= args.judge_error_rate <= 1, "in [0, 1]"),
        ("judge_error_rate", not args.judge_error_rate or args.judge in ERROR_DIAL_JUDGES, "0 but for a toy judge"),
        ("updates_per_step", args.updates_per_step >= 1, ">= 1"),
        ("micro_batch_size", args.micro_batch_size >= 1, ">= 1"),
        ("logprob_chunk_size", args.logprob_chunk_size >= 0, ">= 0"),
        ("clip_low", 0 <= args.clip_low < 1, "in [0, 1)"),
        ("clip_high", args.clip_high >= 0, ">= 0"),
        ("dual_clip", args.dual_clip > 1, "> 1"),
        ("kl_coef", args.kl_coef >= 0, ">= 0"),
        ("max_grad_norm", args.max_grad_norm > 0, "> 0"),
        ("entropy_coef", args.entropy_coef >= 0, ">= 0"),
        ("eval_every", args.eval_every >= 0, ">= 0"),
        ("eval_n", args.eval_n >= 1, ">= 1"),
        ("eval_limit", args.eval_limit >= 0, ">= 0"),
        ("log_group_every", args.log_group_every >= 0, ">= 0"),
        ("save_every", args.save_every >= 0, ">= 0"),
        ("keep_last", args.keep_last >= 0, ">= 0"),
        ("threads", args.threads >= 0, ">= 0"),
        ("judge_patience", args.judge_patience >= 0, ">= 0"),
        ("vllm_memory", 0 < args.vllm_memory <= 1, "in (0, 1]"),
        ("delimiter", bool(args.delimiter), "a non-empty string"),
    ]
    check_flags(args, rules)
    try:
        assert isinstance(json.loads(args.vllm_kwargs), dict)
    except (ValueError, AssertionError):
        fail(f"--vllm_kwargs {args.vllm_kwargs!r}: must be a JSON object, e.g. '{{\"enforce_eager\": true}}'")
    if args.report_to != "none" and importlib.util.find_spec(args.report_to) is None:
        fail(
            f"--report_to {args.report_to}: the {args.report_to} package is not installed: pip install {args.report_to}"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is visible here (use --device cpu)")


def check_hardware(args: Args) -> None:
    """Fail early, with the reason, when the chosen engine cannot run here."""
    if args.engine == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            fail("--engine vllm needs vLLM: `pip install vllm` on a GPU node (docs/real-models.md)")
    if args.preset and not torch.cuda.is_available():
        fail(
            f"--preset {args.preset} is the paper's GPU setting (Qwen3-4B, 16k-token responses); no CUDA device is "
            "visible here. Run the toy world on a CPU instead: python train_stage1.py"
        )


def load_inputs(args: Args, teacher=None):
    """Every check before any model loads or anything is written: the flags (check_args), the hardware, the problem
    files, the model paths. Returns (problems, held-out problems)."""
    check_args(args)
    check_hardware(args)
    if args.reward == "self_distill" and teacher is None:
        fail("--reward self_distill runs from baselines.py: python baselines.py self_distill")
    domain = args.data_domain or None
    needs_reference = args.reward != "sparse"  # the judge (outcome, process) and the teacher read it; Stage II does not
    problems = load_problem_set(args.train_data, flag="--train_data", domain=domain, require_reference=needs_reference)
    eval_problems = (
        load_problem_set(
            args.eval_data, limit=args.eval_limit or None, flag="--eval_data", domain=domain, require_reference=False
        )
        if args.eval_data
        else []
    )
    check_model_path(args.model, "--model")
    judged = args.reward in ("outcome", "process")
    if judged and is_toy_judge(args.judge) and args.judge not in toy_judge_names():
        fail(f"--judge {args.judge!r}: not a toy judge (one of {', '.join(toy_judge_names())})")
    if judged and not is_toy_judge(args.judge) and not args.judge.startswith(("http://", "https://")):
        check_model_path(args.judge, "--judge")
    if judged and args.judge.startswith(("http://", "https://")):
        if importlib.util.find_spec("openai") is None:
            fail(f"--judge {args.judge}: an HTTP judge needs the openai client: pip install openai")
    return problems, eval_problems


# ----------------------------------------------------------------------------------------------------------------------
# What --judge builds


def is_toy_judge(name: str) -> bool:
    """'toy' and 'toy-*' name the toy world's stand-in judges (no model): 'toy-rubric' yes, 'judges/qwen' no."""
    return name == "toy" or name.startswith("toy-")


def toy_judge_names() -> tuple[str, ...]:
    """The --judge names of the toy judges (toy/llm_like_judge.py); imports the toy world."""
    from toy.llm_like_judge import TOY_JUDGES

    return TOY_JUDGES


def build_judge(
    name: str,
    error_rate: float = 0.0,
    max_tokens: int = 2048,
    served_model: str = "judge",
    device: str = "cpu",
    batch_size: int = 256,
):
    """--judge NAME -> a judge with score_outcome / score_process, the one place a judge is chosen (Stage I and
    analysis.calibrate):

    - 'toy' (and its versions 'toy-v3', 'toy-v2', 'toy-fresh'), 'toy-rubric', 'toy-progress' -> the toy world's
      stand-in judges (toy/llm_like_judge.py), and
      'toy-mixed' -> the mixed world's (toy/mixed_judges.py); error_rate is their error dial. The toy world is imported
      here and nowhere else in the method;
    - an http(s) URL -> judge.LLMJudge behind that OpenAI-compatible server (served_model: its --served-model-name),
      the paper's layout with the judge on GPUs of its own;
    - otherwise a save_pretrained judge model, greedy, on the HF engine (batch_size prompts per generate call).
    """
    if is_toy_judge(name):
        if name == "toy-mixed":  # the mixed toy world (docs/toy-mixed.md): one stand-in judge per domain
            from toy.mixed_judges import MixedJudge

            return MixedJudge(error_rate)
        from toy.llm_like_judge import build_toy_judge

        return build_toy_judge(name, error_rate)
    if error_rate:
        raise ValueError("--judge_error_rate applies to the toy judges only")
    from judge import LLMJudge

    if name.startswith(("http://", "https://")):
        from scale.openai_engine import OpenAIEngine

        return LLMJudge(OpenAIEngine(name, served_model), max_tokens=max_tokens)
    from rollout import HFSampler

    model, tokenizer = load_model(name, device=device)
    engine = HFSampler(model, tokenizer, max_new_tokens=max_tokens, temperature=0.0, batch_size=batch_size)
    return LLMJudge(engine, tokenizer, max_tokens=max_tokens)
