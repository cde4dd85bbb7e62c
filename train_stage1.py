"""ExpRL Stage I: RL mid-training on hard problems with dense, reference-conditioned judge rewards.

One step (PAPER.md; `main` below is the algorithm box):
    sample G responses per prompt from the question alone -> judge each response (outcome) or each prefix (process)
    against the hidden reference -> advantages (group-normalised, or Eq. 2 per segment) -> GRPO update(s) -> log.
`--reward sparse` swaps the judge for the 0/1 final-answer reward: the sparse-GRPO baseline.

Defaults run the embedded toy world on a CPU (python train_stage1.py); `--preset paper-4b` holds the paper's settings.
"""

import copy
import json
from dataclasses import dataclass, field

import torch

import distributed
from advantages import outcome_advantages, process_advantages, segment_spans, token_advantages
from common import check_model_path, fail, load_model, load_problem_set, parse_cli, resolve_model_path
from data import policy_messages
from grpo import AGGREGATIONS, LossConfig, aggregation_denominator, grpo_step, token_logprobs
from judge import JudgeResult, answer_reward
from judge_health import JudgeError, JudgeMonitor, probe_judge
from rollout import HFSampler, encode_prompts, sync_weights, to_batch
from run import Run, group_record, judge_sample, step_metrics

REWARDS = ("outcome", "process", "sparse")
ADVANTAGES = ("delta", "delta_code", "delta_from_zero", "end", "group_norm")


def choice(default: str, choices: tuple, help: str):
    """A dataclass field whose value must be one of `choices` (checked when the command line is parsed)."""
    return field(default=default, metadata={"help": help, "choices": list(choices)})


@dataclass
class Args:
    # --- what to train, on what
    model: str = field(default="toy", metadata={"help": "policy: 'toy' (the committed toy base) or a directory"})
    judge: str = field(
        default="toy",
        metadata={
            "help": "'toy' (checkpoint judge, toy world only), a judge model directory, or an OpenAI-compatible server "
            "URL http://host:port/v1 (e.g. vLLM's api_server on the judge GPUs; needs `pip install openai`)"
        },
    )
    judge_model: str = field(
        default="judge",
        metadata={"help": "with an http judge: the model name the server serves (its --served-model-name)"},
    )
    train_data: str = field(
        default="toy:train", metadata={"help": "'toy:train', a JSONL file or an HF dataset (question/reference/answer)"}
    )
    eval_data: str = field(default="toy:heldout", metadata={"help": "held-out problems for pass@k ('' to skip)"})
    output_dir: str = field(
        default="runs/stage1", metadata={"help": "run directory: config.json, metrics.jsonl, eval/, checkpoint/"}
    )
    # --- the reward
    reward: str = choice("outcome", REWARDS, "outcome | process (ExpRL) | sparse (the GRPO baseline, 0/1 answer)")
    process_view: str = choice(
        "prefix", ("prefix", "segment"), "prefix (PAPER: judge y_<=t) | segment (CODE: judge segment t alone)"
    )
    advantage: str = choice(
        "delta_from_zero",
        ADVANTAGES,
        "process advantages: delta (Eq. 2) | delta_code | "
        "delta_from_zero | end | group_norm (docs/results.md: why the toy default is not Eq. 2)",
    )
    delimiter: str = field(default="###", metadata={"help": "segment delimiter for process judging"})
    # --- sampling
    group_size: int = field(default=8, metadata={"help": "rollouts per prompt, G (paper: 10 outcome, 16 process)"})
    prompts_per_step: int = field(default=8, metadata={"help": "prompts per step (paper: 36)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (paper: 0.8)"})
    max_new_tokens: int = field(
        default=160,
        metadata={"help": "response length limit; over-length responses get reward/advantage 0 (paper: 16384)"},
    )
    judge_max_tokens: int = field(
        default=2048,
        metadata={
            "help": "judge output limit, greedy (paper: 2048); an output cut before its 'Score:' line fails to parse"
        },
    )
    judge_patience: int = field(
        default=3,
        metadata={
            "help": "stop (after a resumable checkpoint) when every judge request of this many steps in a row failed "
            "or "
            "gave no score; 0 = never stop"
        },
    )
    # --- optimisation
    steps: int = field(default=60, metadata={"help": "Stage-I steps (paper: 230)"})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate, constant (paper: 1e-6 for Qwen3-4B)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    updates_per_step: int = field(
        default=1,
        metadata={"help": "mini-batches (optimiser steps) per step; 1 = fully on-policy (paper: 2 outcome, 1 process)"},
    )
    micro_batch_size: int = field(
        default=64, metadata={"help": "rows per forward/backward (memory only; the gradient is the same)"}
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "recompute each layer's activations in backward (long responses on GPUs; docs/real-models.md)"
        },
    )
    clip_low: float = field(default=0.2, metadata={"help": "PPO clip, lower bound (ratio >= 1 - clip_low)"})
    clip_high: float = field(
        default=0.28, metadata={"help": "PPO clip, upper bound (paper: 0.28 outcome, 0.26 process)"}
    )
    dual_clip: float = field(default=3.0, metadata={"help": "dual-clip constant for negative advantages (> 1)"})
    kl_coef: float = field(default=0.001, metadata={"help": "k3 KL to the frozen base in the loss (0 = no reference)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip"})
    loss_agg: str = choice("token-mean", AGGREGATIONS, "loss aggregation over the mini-batch (grpo.aggregate)")
    scale_advantages: bool = field(
        default=True,
        metadata={
            "help": "outcome/sparse advantages divided by the group std (Stage I); False = r - group mean (Stage II)"
        },
    )
    entropy_coef: float = field(default=0.0, metadata={"help": "entropy bonus (paper: 0 in Stage I, 1e-4 in Stage II)"})
    skip_no_signal: bool = field(
        default=True,
        metadata={
            "help": "no optimiser step for a mini-batch whose advantages are all 0: Adam would turn the KL / entropy "
            "term "
            "alone into a full-lr step (docs/results.md)"
        },
    )
    # --- bookkeeping
    eval_before: bool = field(default=True, metadata={"help": "evaluate before training too"})
    eval_every: int = field(default=0, metadata={"help": "evaluate every N steps (0: only before and after)"})
    eval_n: int = field(default=64, metadata={"help": "samples per held-out problem for pass@k (paper: 128)"})
    eval_limit: int = field(default=64, metadata={"help": "held-out problems evaluated (0 = all)"})
    log_group_every: int = field(
        default=10,
        metadata={
            "help": "every N steps, one whole GRPO group (texts, segments, scores, advantages) to groups.jsonl; "
            "0 = off "
            "(python -m analysis.show_group RUN_DIR draws it)"
        },
    )
    save_every: int = field(
        default=0,
        metadata={
            "help": "resumable checkpoint every N steps in output_dir/checkpoints/step_N (0: only the final one)"
        },
    )
    keep_last: int = field(default=2, metadata={"help": "periodic checkpoints kept, newest first (0 = all)"})
    resume: bool = field(
        default=False,
        metadata={
            "help": "continue from the newest complete checkpoint in output_dir (same flags; later rows dropped)"
        },
    )
    data_parallel: str = choice(
        "auto",
        ("auto", "ddp", "fsdp"),
        "under torchrun: ddp | fsdp (FSDP2, needs --engine vllm) | auto; see distributed.py",
    )
    seed: int = field(default=0, metadata={"help": "seeds Python, NumPy, torch and sampling"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads (0 = torch default; 1 on a busy machine)"})
    device: str = choice("cuda" if torch.cuda.is_available() else "cpu", ("cpu", "cuda"), "cpu | cuda")
    engine: str = choice(
        "hf",
        ("hf", "vllm"),
        "rollout engine: hf (generate; anywhere) | vllm (in-process vLLM, weights synced each step)",
    )
    vllm_memory: float = field(default=0.3, metadata={"help": "vLLM gpu_memory_utilization of the policy engine"})
    vllm_kwargs: str = field(
        default="{}", metadata={"help": "extra vllm.LLM arguments as a JSON object, e.g. '{\"enforce_eager\": true}'"}
    )
    preset: str = choice(
        "",
        ("", "paper-4b"),
        "'paper-4b': the paper's Stage-I settings (PAPER.md) for "
        "Qwen3-4B-Instruct-2507 on a GPU node with vLLM; flags given explicitly still win",
    )
    benchmark: bool = field(
        default=False,
        metadata={"help": "time the steps only: no evaluation, no checkpoint; print median/min/max seconds per phase"},
    )


# PAPER.md, "Optimiser (Stage I)": shared settings, then the ones that differ between Outcome and Process.
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
            eval_n=128,
            eval_limit=0,
            advantage="delta",
            threads=0,
        ),
        "outcome": dict(group_size=10, updates_per_step=2, clip_high=0.28),
        "process": dict(group_size=16, updates_per_step=1, clip_high=0.26),
        "sparse": dict(group_size=16, prompts_per_step=32, updates_per_step=2, clip_high=0.26),
    },
}


def parse_args(argv: list[str] | None = None) -> Args:
    """Command line -> Args; a --preset fills every field the command line does not set explicitly. A bad flag or
    value stops here with one line and exit status 2 (common.parse_cli, check_args), before anything is loaded."""
    args, given = parse_cli(Args, argv)
    if args.preset:
        values = {**PRESETS[args.preset]["common"], **PRESETS[args.preset][args.reward]}
        for name, value in values.items():
            if name not in given:
                setattr(args, name, value)
        if "model" not in given or ("judge" not in given and args.reward != "sparse") or "train_data" not in given:
            fail(
                f"--preset {args.preset} needs --model and --judge (local Qwen3-4B-Instruct-2507 directories; the "
                "paper's judge is a frozen copy of the base policy) and --train_data (your hard problems)"
            )
    check_args(args)
    return args


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
        ("updates_per_step", args.updates_per_step >= 1, ">= 1"),
        ("micro_batch_size", args.micro_batch_size >= 1, ">= 1"),
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
    for name, ok, expected in rules:
        if not ok:  # NaN fails every comparison, so it lands here too
            fail(f"--{name} {getattr(args, name)!r}: must be {expected}")
    try:
        assert isinstance(json.loads(args.vllm_kwargs), dict)
    except (ValueError, AssertionError):
        fail(f"--vllm_kwargs {args.vllm_kwargs!r}: must be a JSON object, e.g. '{{\"enforce_eager\": true}}'")
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


def load_inputs(args: Args):
    """Read and check the problem files and model paths before any model loads: (problems, held-out problems)."""
    problems = load_problem_set(args.train_data, flag="--train_data")
    eval_problems = (
        load_problem_set(args.eval_data, limit=args.eval_limit or None, flag="--eval_data") if args.eval_data else []
    )
    check_model_path(args.model, "--model")
    judged = args.reward in ("outcome", "process")
    if judged and args.judge != "toy" and not args.judge.startswith(("http://", "https://")):
        check_model_path(args.judge, "--judge")
    if judged and args.judge.startswith(("http://", "https://")):
        import importlib.util

        if importlib.util.find_spec("openai") is None:
            fail(f"--judge {args.judge}: an HTTP judge needs the openai client: pip install openai")
    return problems, eval_problems


def make_judge(args: Args, device: str):
    """'toy' -> the checkpoint judge; an http(s) URL -> an LLM judge (judge.py) behind that OpenAI-compatible server;
    otherwise an LLM judge on the HF engine (a frozen model of its own)."""
    if args.judge == "toy":
        from toy import CheckpointJudge

        return CheckpointJudge()
    from judge import LLMJudge, OpenAIEngine

    if args.judge.startswith(("http://", "https://")):  # the paper's layout: the judge served on its own GPUs
        return LLMJudge(OpenAIEngine(args.judge, args.judge_model), max_tokens=args.judge_max_tokens)
    judge_model, judge_tokenizer = load_model(args.judge, device=device)
    return LLMJudge(
        HFSampler(judge_model, judge_tokenizer, max_new_tokens=args.judge_max_tokens, temperature=0.0),
        judge_tokenizer,
        max_tokens=args.judge_max_tokens,
    )


def make_sampler(args: Args, policy, tokenizer):
    """The rollout engine: HF generate on the training model itself, or a vLLM engine fed by sync_weights."""
    if args.engine == "hf":
        return HFSampler(policy, tokenizer, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    from rollout import VLLMSampler

    return VLLMSampler(
        resolve_model_path(args.model),
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        gpu_memory_utilization=args.vllm_memory,
        seed=args.seed * distributed.world_size() + distributed.rank(),  # one stream per rank
        **json.loads(args.vllm_kwargs),
    )


def main(args: Args, teacher=None) -> dict:
    """ExpRL Stage I (PAPER.md). Returns {"before": pass@k result, "after": ...} (None where not evaluated).

    teacher: replaces judge + advantages by a per-token signal, `teacher(policy, problems, rollouts) -> (per-token
    advantages, mean signal)`: the self-distillation baseline (baselines.py).
    """
    check_args(args)
    check_hardware(args)
    if args.reward == "self_distill" and teacher is None:
        fail("--reward self_distill runs from baselines.py: python baselines.py self_distill")
    problems, eval_problems = load_inputs(args)  # read and checked before anything is loaded or written
    run = Run(args)  # processes (torchrun or one), seeds, threads, the run directory (run.py)
    policy, tokenizer = load_model(args.model, device=args.device)
    # The frozen base for the KL term: a copy of the policy as loaded, not a second read from disk.
    ref_model = copy.deepcopy(policy).eval().requires_grad_(False) if args.kl_coef > 0 else None
    judge = make_judge(args, args.device) if args.reward in ("outcome", "process") else None
    if judge is not None:
        probe_judge(judge, args.judge)  # one request now: a dead or mute judge stops the run before step 1
    monitor = JudgeMonitor(args.judge, patience=args.judge_patience)
    sampler = make_sampler(args, policy, tokenizer)
    model, ref_model, optimizer = run.prepare(policy, ref_model, sampler, len(problems))  # DDP/FSDP2, AdamW, resume
    prompt_ids = encode_prompts(tokenizer, [policy_messages(p) for p in problems])  # question only, never the reference
    G = args.group_size

    for step in run.steps(tokenizer, eval_problems):  # evaluates the starting policy first
        # 1. sample: this step's prompts (this rank's share under torchrun), G rollouts each, ordered group by group
        idx = run.prompt_indices(step)
        rollouts = sampler.sample([prompt_ids[i] for i in idx], n=G)
        group_problems = [problems[i] for i in idx for _ in range(G)]  # the problem of each rollout
        questions, references = [p.question for p in group_problems], [p.reference for p in group_problems]
        correct = [answer_reward(r.text, p.answer) for r, p in zip(rollouts, group_problems)]  # 0/1, logged
        truncated = [r.truncated for r in rollouts]
        run.lap("sample")

        # 2. judge and 3. advantages, per token of each response
        if args.reward == "process":  # s_1..s_T: one score per prefix y_<=t (or per segment), Eq. 2 per segment
            spans = [segment_spans(r.response_ids, tokenizer, args.delimiter) for r in rollouts]
            segments = [
                [tokenizer.decode(r.response_ids[a:b], skip_special_tokens=True) for a, b in sp]
                for r, sp in zip(rollouts, spans)
            ]
            judged = judge.score_process(questions, references, segments, view=args.process_view)
            advantages, keep = process_advantages(judged.scores, truncated, G, args.advantage)
        elif args.reward in ("outcome", "sparse"):  # one score per response: the judge's, or the 0/1 final answer
            spans = [[(0, len(r.response_ids))] for r in rollouts]
            judged = (
                judge.score_outcome(questions, references, [r.text for r in rollouts])
                if args.reward == "outcome"
                else JudgeResult(scores=list(correct), texts=[""] * len(correct))
            )
            advantages, keep = outcome_advantages(judged.scores, truncated, G, args.scale_advantages)
            advantages = [[a] for a in advantages]  # (s - group mean) / (group std + eps), on every token
        else:  # self-distillation: the reference-conditioned teacher's per-token signal A_t = -d_t, no judge
            spans = [[(t, t + 1) for t in range(len(r.response_ids))] for r in rollouts]
            advantages, signal = teacher(policy, group_problems, rollouts)
            judged, keep = (
                JudgeResult(scores=[signal] * len(rollouts), texts=[""] * len(rollouts)),
                [True] * len(rollouts),
            )
        if judge is not None:  # a judge that gave no score for --judge_patience steps stops the run (checkpoint first)
            run.check_judge(step, monitor, judged, getattr(judge, "engine", None))
        per_token = [token_advantages(sp, a, len(r.response_ids)) for r, sp, a in zip(rollouts, spans, advantages)]
        run.lap("judge")

        # 4. update: GRPO on the step's batch (updates_per_step mini-batches); 5. the engine gets the new weights
        batch = build_batch(rollouts, per_token, keep, tokenizer.pad_token_id)
        update_metrics = update_policy(args, model, ref_model, optimizer, batch)
        if args.engine == "vllm":
            sync_weights(model, sampler)  # the next step samples from the updated policy
        run.lap("update")

        # 6. log; evaluate and checkpoint every N steps
        metrics = {**step_metrics(args, rollouts, correct, judged, keep, spans), **update_metrics}
        show_group = args.log_group_every > 0 and (step == 1 or step % args.log_group_every == 0)
        run.log(
            step,
            metrics,
            token_weighted=tuple(update_metrics),
            num_tokens=int(batch["response_mask"].sum()),
            num_rollouts=len(rollouts),
            sample=judge_sample(group_problems, rollouts, judged),
            group=group_record(args, group_problems, rollouts, spans, judged, advantages, correct, keep, tokenizer)
            if show_group
            else None,
        )
        run.evaluate_and_checkpoint(step)
    return run.finish()  # final checkpoint, held-out evaluation after training


def build_batch(rollouts, per_token_advantages, keep, pad_id: int) -> dict[str, torch.Tensor]:
    """Rollouts + per-token advantages -> the [B, L] training batch; dropped rollouts get an all-zero response mask."""
    batch = to_batch(rollouts, pad_id)
    P = batch["input_ids"].shape[1] - max(1, max(len(r.response_ids) for r in rollouts))  # prompt width
    advantages = torch.zeros(batch["input_ids"].shape, dtype=torch.float32)  # [B, L]
    for i, values in enumerate(per_token_advantages):
        advantages[i, P : P + len(values)] = values
    batch["advantages"] = advantages
    batch["response_mask"] = batch["response_mask"] * torch.tensor(keep, dtype=torch.long)[:, None]
    return batch


def update_policy(args: Args, model, ref_model, optimizer, batch) -> dict:
    """One Stage-I update: updates_per_step GRPO mini-batch steps over the step's batch (PAPER.md, "Optimiser").

    Under torchrun `batch` is this rank's shard; distributed.loss_scale makes the synchronised gradient the one of the
    GLOBAL mini-batch. A mini-batch without any advantage is not applied (--skip_no_signal): Adam divides by the
    running gradient RMS, so the lone KL / entropy gradient would still move every weight by about lr.
    """
    loss = LossConfig(
        args.clip_low,
        args.clip_high,
        args.dual_clip,
        args.kl_coef,
        args.entropy_coef,
        args.loss_agg,
        args.temperature,
        log_entropy=True,
        norm_length=args.max_new_tokens,
    )
    mask = batch["response_mask"]
    if args.kl_coef > 0:
        with torch.no_grad():
            batch["ref_logprobs"] = token_logprobs(
                ref_model,
                batch["input_ids"],
                batch["attention_mask"],
                mask,
                args.micro_batch_size,
                temperature=args.temperature,
            )
    if args.updates_per_step > 1:  # off-policy after the first mini-batch: freeze the behaviour log-probs first
        with torch.no_grad():
            batch["old_logprobs"] = token_logprobs(
                model,
                batch["input_ids"],
                batch["attention_mask"],
                mask,
                args.micro_batch_size,
                temperature=args.temperature,
            )
    order = torch.randperm(batch["input_ids"].shape[0])
    metrics = {}
    for chunk in order.chunk(args.updates_per_step):
        mini = {k: v[chunk] for k, v in batch.items()}
        denominator = aggregation_denominator(mini["response_mask"], args.loss_agg, loss.norm_length)
        scale = distributed.loss_scale(denominator, summed=args.loss_agg != "seq-mean-token-sum-norm")
        signal = distributed.all_reduce_sum(float((mini["advantages"] * mini["response_mask"]).abs().sum()))
        skip = args.skip_no_signal and signal == 0.0  # one decision for all ranks
        step_metrics = grpo_step(
            model, optimizer, mini, loss, args.micro_batch_size, args.max_grad_norm, scale, apply=not skip
        )
        step_metrics["loss"] /= distributed.world_size()  # this rank's part: summed over ranks, the global loss
        step_metrics["skipped_update"] = float(skip)
        for k, v in step_metrics.items():
            metrics[k] = metrics.get(k, 0.0) + v / args.updates_per_step
    return metrics


if __name__ == "__main__":
    try:
        main(parse_args())
    except JudgeError as error:  # one line naming the judge, what it answered, what to check; exit status 1
        raise SystemExit(f"error: {error}") from None
    distributed.cleanup()
