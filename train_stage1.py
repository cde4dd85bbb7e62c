"""ExpRL Stage I: RL mid-training on hard problems with dense, reference-conditioned judge rewards.

One step (PAPER.md; DESIGN.md, "Data flow of one Stage-I step"):
    sample G responses per prompt from the question alone -> judge each response (outcome) or each prefix (process)
    against the hidden reference -> advantages (group-normalised, or Eq. 2 per segment) -> GRPO update(s) -> log.
`--reward sparse` swaps the judge for the 0/1 final-answer reward: the sparse-GRPO baseline.

Defaults run the embedded toy world on a CPU (python train_stage1.py); `--preset paper-4b` holds the paper's settings.
"""
import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm
from transformers import HfArgumentParser

import distributed
from advantages import outcome_advantages, process_advantages, segment_spans, token_advantages
from common import (MetricsLog, latest_checkpoint, load_model, load_problem_set, prune_checkpoints, resolve_model_path,
                    restore_training_state, save_training_checkpoint, seed_everything, set_threads, write_json)
from data import policy_messages
from evaluate import evaluate, format_pass_at_k
from grpo import aggregation_denominator, grpo_step, token_logprobs
from judge import answer_reward
from rollout import HFSampler, encode_prompts, sync_weights, to_batch


@dataclass
class Args:
    # --- what to train, on what
    model: str = field(default="toy", metadata={"help": "policy: 'toy' (the committed toy base) or a save_pretrained directory"})
    judge: str = field(default="toy", metadata={"help": "'toy' (checkpoint judge, toy world only), a judge model directory, or an OpenAI-compatible server URL http://host:port/v1 (e.g. vLLM's api_server on the judge GPUs)"})
    judge_model: str = field(default="judge", metadata={"help": "with an http judge: the model name the server serves (its --served-model-name)"})
    train_data: str = field(default="toy:train", metadata={"help": "'toy:train', a JSONL file or an HF dataset (question/reference/answer)"})
    eval_data: str = field(default="toy:heldout", metadata={"help": "held-out problems for pass@k ('' to skip evaluation)"})
    output_dir: str = field(default="runs/stage1", metadata={"help": "run directory: config.json, metrics.jsonl, eval/, checkpoint/"})
    # --- the reward
    reward: str = field(default="outcome", metadata={"help": "outcome | process (ExpRL) | sparse (the GRPO baseline, 0/1 answer reward) | self_distill (baselines.py); the toy default is the one that measured best (README)"})
    process_view: str = field(default="prefix", metadata={"help": "prefix (PAPER: judge y_<=t) | segment (CODE: judge segment t alone)"})
    advantage: str = field(default="delta_from_zero", metadata={"help": "process advantages: delta (Eq. 2) | delta_code | delta_from_zero | end | group_norm (README: why the toy default differs from Eq. 2)"})
    delimiter: str = field(default="###", metadata={"help": "segment delimiter for process judging"})
    # --- sampling
    group_size: int = field(default=8, metadata={"help": "rollouts per prompt, G (paper: 10 outcome, 16 process)"})
    prompts_per_step: int = field(default=8, metadata={"help": "prompts per step (paper: 36)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (paper: 0.8)"})
    max_new_tokens: int = field(default=160, metadata={"help": "response length limit; over-length responses get reward/advantage 0 (paper: 16384)"})
    judge_max_tokens: int = field(default=2048, metadata={"help": "judge output length limit, greedy (paper: 2048); an output cut before its 'Score:' line is a parse failure"})
    # --- optimisation
    steps: int = field(default=60, metadata={"help": "Stage-I steps (paper: 230)"})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate, constant (paper: 1e-6 for Qwen3-4B)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    updates_per_step: int = field(default=1, metadata={"help": "mini-batches (optimiser steps) per step; 1 = fully on-policy (paper: 2 outcome, 1 process)"})
    micro_batch_size: int = field(default=64, metadata={"help": "rows per forward/backward (memory only; the gradient is the same)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute each layer's activations in backward (long responses on GPUs; README memory budget)"})
    clip_low: float = field(default=0.2, metadata={"help": "PPO clip, lower bound (ratio >= 1 - clip_low)"})
    clip_high: float = field(default=0.28, metadata={"help": "PPO clip, upper bound (paper: 0.28 outcome, 0.26 process)"})
    dual_clip: float = field(default=3.0, metadata={"help": "dual-clip constant for negative advantages"})
    kl_coef: float = field(default=0.001, metadata={"help": "k3 KL to the frozen base in the loss (0 = no reference model)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip"})
    loss_agg: str = field(default="token-mean", metadata={"help": "token-mean | seq-mean-token-mean | seq-mean-token-sum-norm"})
    scale_advantages: bool = field(default=True, metadata={"help": "outcome/sparse advantages divided by the group std (Stage I); False = r - group mean (Stage II)"})
    entropy_coef: float = field(default=0.0, metadata={"help": "entropy bonus in the loss (paper: 0 in Stage I, 1e-4 in Stage II)"})
    skip_no_signal: bool = field(default=True, metadata={"help": "no optimiser step for a mini-batch whose advantages are all 0 (every group zero-std): Adam would turn the KL / entropy term alone into a full-lr step (README)"})
    # --- bookkeeping
    eval_before: bool = field(default=True, metadata={"help": "evaluate before training too (off when the starting checkpoint was already evaluated)"})
    eval_every: int = field(default=0, metadata={"help": "evaluate every N steps (0: only before and after training)"})
    eval_n: int = field(default=64, metadata={"help": "samples per held-out problem for pass@k (paper: 128)"})
    eval_limit: int = field(default=64, metadata={"help": "held-out problems evaluated (0 = all)"})
    save_every: int = field(default=0, metadata={"help": "resumable checkpoint every N steps in output_dir/checkpoints/step_N (0: only the final one, output_dir/checkpoint)"})
    keep_last: int = field(default=2, metadata={"help": "periodic checkpoints kept, newest first (0 = all)"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest complete checkpoint in output_dir (same flags; metrics rows of redone steps are dropped)"})
    data_parallel: str = field(default="auto", metadata={"help": "under torchrun: ddp | fsdp (FSDP2, needs --engine vllm) | auto (fsdp with vllm, else ddp); see distributed.py"})
    seed: int = field(default=0, metadata={"help": "seeds Python, NumPy, torch and sampling"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads (0 = torch default; use 1 on a busy machine)"})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "cpu | cuda"})
    engine: str = field(default="hf", metadata={"help": "rollout engine: hf (generate; anywhere) | vllm (in-process vLLM, weights synced after every step)"})
    vllm_memory: float = field(default=0.3, metadata={"help": "vLLM gpu_memory_utilization for the colocated policy engine"})
    vllm_kwargs: str = field(default="{}", metadata={"help": "extra vllm.LLM arguments as JSON, e.g. '{\"enforce_eager\": true}'"})
    preset: str = field(default="", metadata={"help": "'paper-4b': the paper's Stage-I settings (PAPER.md) for Qwen3-4B-Instruct-2507 on a GPU node with vLLM; flags given explicitly still win"})
    benchmark: bool = field(default=False, metadata={"help": "time the steps only: no evaluation, no checkpoint; print median/min/max seconds per phase"})


# PAPER.md, "Optimiser (Stage I)": shared settings, then the ones that differ between Outcome and Process.
PRESETS = {
    "paper-4b": {
        "common": dict(prompts_per_step=36, lr=1e-6, weight_decay=0.01, clip_low=0.2, kl_coef=0.001, dual_clip=3.0,
                       max_grad_norm=1.0, temperature=0.8, max_new_tokens=16384, steps=230, loss_agg="token-mean",
                       engine="vllm", micro_batch_size=4, eval_n=128, eval_limit=0, advantage="delta", threads=0),
        "outcome": dict(group_size=10, updates_per_step=2, clip_high=0.28),
        "process": dict(group_size=16, updates_per_step=1, clip_high=0.26),
        "sparse": dict(group_size=16, prompts_per_step=32, updates_per_step=2, clip_high=0.26),
    },
}


def parse_args(argv: list[str] | None = None) -> Args:
    """Command line -> Args; a --preset fills every field the command line does not set explicitly."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(Args).parse_args_into_dataclasses(argv)
    if not args.preset:
        return args
    if args.preset not in PRESETS:
        raise SystemExit(f"--preset {args.preset!r} is unknown; choose from {sorted(PRESETS)}")
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    values = {**PRESETS[args.preset]["common"], **PRESETS[args.preset][args.reward]}
    for name, value in values.items():
        if name not in given:
            setattr(args, name, value)
    if "model" not in given or ("judge" not in given and args.reward != "sparse") or "train_data" not in given:
        raise SystemExit(f"--preset {args.preset} needs --model and --judge (local Qwen3-4B-Instruct-2507 directories; "
                         "the paper's judge is a frozen copy of the base policy) and --train_data (your hard problems)")
    return args


def check_hardware(args: Args) -> None:
    """Fail early, with the reason, when the chosen engine cannot run here."""
    if args.engine == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise SystemExit("--engine vllm needs vLLM: `pip install vllm` on a GPU node (see README)") from None
    if args.preset and not torch.cuda.is_available():
        raise SystemExit(f"--preset {args.preset} is the paper's GPU setting (Qwen3-4B, 16k-token responses); no CUDA "
                         "device is visible here. Run the toy world on a CPU instead: python train_stage1.py")


def make_judge(args: Args, device: str, policy=None, tokenizer=None):
    """'toy' -> the checkpoint judge; an http(s) URL -> an LLM judge (judge.py) behind that OpenAI-compatible server;
    otherwise an LLM judge on the HF engine.

    --reward self_distill (baselines.py) -> the frozen starting policy with the reference in context (its teacher).
    """
    if args.reward == "self_distill":
        from baselines import DistillTeacher
        return DistillTeacher(policy, tokenizer, args.micro_batch_size, args.temperature)
    if args.judge == "toy":
        from toy import CheckpointJudge
        return CheckpointJudge()
    from judge import LLMJudge, OpenAIEngine
    if args.judge.startswith(("http://", "https://")):  # the paper's layout: the judge served on its own GPUs
        return LLMJudge(OpenAIEngine(args.judge, args.judge_model), max_tokens=args.judge_max_tokens)
    judge_model, judge_tokenizer = load_model(args.judge, device=device)
    return LLMJudge(HFSampler(judge_model, judge_tokenizer, max_new_tokens=args.judge_max_tokens, temperature=0.0),
                    judge_tokenizer, max_tokens=args.judge_max_tokens)


def score_rollouts(args: Args, judge, problems, rollouts, tokenizer, answers_correct):
    """Rewards for one step's rollouts -> (per-token advantages, keep, metrics, judge result or None for sparse).

    per-token advantages: one tensor per rollout, [len(response_ids)]; keep: False for rollouts dropped from the loss
    (an unparseable judge score).
    """
    G = args.group_size
    group_problems = [problems[i // G] for i in range(len(rollouts))]
    truncated = [r.truncated for r in rollouts]
    metrics = {}
    if args.reward == "self_distill":  # per-token advantages from the teacher (baselines.py), no judge scores
        per_token, metrics["judge_score"] = judge.token_advantages(group_problems, rollouts)
        return per_token, [True] * len(rollouts), {**metrics, "zero_std_groups": 0.0, "judge_parse_failures": 0,
                                                   "dropped_rollouts": 0}, None
    if args.reward in ("sparse", "outcome"):
        if args.reward == "sparse":
            scores = list(answers_correct)
            result = None
        else:
            result = judge.score_outcome([p.question for p in group_problems], [p.reference for p in group_problems],
                                         [r.text for r in rollouts])
            scores = result.scores
        adv, keep = outcome_advantages(scores, truncated, G, args.scale_advantages)
        per_token = [token_advantages([(0, len(r.response_ids))], [a], len(r.response_ids))
                     for r, a in zip(rollouts, adv)]
        valid = [s for s in scores if s is not None]
        metrics["judge_score"] = sum(valid) / max(len(valid), 1)
        rewards = [0.0 if t else s for s, t in zip(scores, truncated)]
    else:
        spans = [segment_spans(r.response_ids, tokenizer, args.delimiter) for r in rollouts]
        segments = [[tokenizer.decode(r.response_ids[a:b], skip_special_tokens=True) for a, b in sp]
                    for r, sp in zip(rollouts, spans)]
        result = judge.score_process([p.question for p in group_problems], [p.reference for p in group_problems],
                                     segments, view=args.process_view)
        adv, keep = process_advantages(result.scores, truncated, G, args.advantage)
        per_token = [token_advantages(sp, a, len(r.response_ids)) for r, sp, a in zip(rollouts, spans, adv)]
        finals = [row[-1] for row, k in zip(result.scores, keep) if k and row]
        metrics["judge_score"] = sum(finals) / max(len(finals), 1)  # score of the whole response, s_T
        metrics["segments_per_response"] = sum(len(sp) for sp in spans) / len(spans)
        rewards = [(row[-1] if k and row else None) for row, k in zip(result.scores, keep)]
    groups = [rewards[g : g + G] for g in range(0, len(rewards), G)]
    metrics["zero_std_groups"] = sum(len({r for r in grp if r is not None}) <= 1 for grp in groups) / len(groups)
    metrics["judge_parse_failures"] = result.num_failures if result is not None else 0
    metrics["dropped_rollouts"] = keep.count(False)
    return per_token, keep, metrics, result


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


def update_policy(args: Args, policy, ref_model, optimizer, batch) -> dict:
    """One Stage-I update: updates_per_step GRPO mini-batch steps over the step's batch (PAPER.md, "Optimiser").

    Under torchrun `batch` is this rank's shard: each mini-batch's loss denominator is summed over ranks, so the
    synchronised gradient is the token-mean over the GLOBAL mini-batch (grpo_step, distributed.py).
    """
    if args.kl_coef > 0:
        with torch.no_grad():
            batch["ref_logprobs"] = token_logprobs(ref_model, batch["input_ids"], batch["attention_mask"],
                                                   batch["response_mask"], args.micro_batch_size,
                                                   temperature=args.temperature)
    if args.updates_per_step > 1:  # off-policy after the first mini-batch: freeze the behaviour log-probs first
        with torch.no_grad():
            batch["old_logprobs"] = token_logprobs(policy, batch["input_ids"], batch["attention_mask"],
                                                   batch["response_mask"], args.micro_batch_size,
                                                   temperature=args.temperature)
    order = torch.randperm(batch["input_ids"].shape[0])
    metrics = {}
    for chunk in order.chunk(args.updates_per_step):
        mini = {k: v[chunk] for k, v in batch.items()}
        world = distributed.world_size()
        denominator = None if world == 1 else \
            distributed.all_reduce_sum(aggregation_denominator(mini["response_mask"], args.loss_agg))
        # Adam divides by the running gradient RMS, so a mini-batch whose only gradient is the tiny KL or entropy term
        # would still move every weight by about lr. With no advantage anywhere there is nothing to learn: skip it.
        signal = float((mini["advantages"] * mini["response_mask"]).abs().sum())
        signal = signal if world == 1 else distributed.all_reduce_sum(signal)  # one decision for all ranks
        skip = args.skip_no_signal and signal == 0.0
        step_metrics = grpo_step(policy, optimizer, mini, args.micro_batch_size, args.clip_low, args.clip_high,
                                 args.dual_clip, args.kl_coef, args.loss_agg, args.max_grad_norm,
                                 entropy_coef=args.entropy_coef, log_entropy=True, temperature=args.temperature,
                                 global_denominator=denominator, num_ranks=world, apply=not skip)
        step_metrics["skipped_update"] = float(skip)
        for k, v in step_metrics.items():
            metrics[k] = metrics.get(k, 0.0) + v / args.updates_per_step
    return metrics


def make_sampler(args: Args, policy, tokenizer):
    """The rollout engine: HF generate on the training model itself, or a vLLM engine fed by sync_weights."""
    if args.engine == "hf":
        return HFSampler(policy, tokenizer, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    if args.engine == "vllm":
        from rollout import VLLMSampler
        return VLLMSampler(resolve_model_path(args.model), max_new_tokens=args.max_new_tokens,
                           temperature=args.temperature, gpu_memory_utilization=args.vllm_memory,
                           seed=args.seed * distributed.world_size() + distributed.rank(),  # one stream per rank
                           **json.loads(args.vllm_kwargs))
    raise ValueError(f"--engine must be 'hf' or 'vllm', got {args.engine!r}")


def run_eval(args: Args, policy, tokenizer, problems, step: int, tag: str, sampler=None) -> dict | None:
    if not problems:
        return None
    result = evaluate(policy, problems, n=args.eval_n, temperature=args.temperature,
                      max_new_tokens=args.max_new_tokens, tokenizer=tokenizer,
                      output_dir=os.path.join(args.output_dir, "eval", tag), step=step,
                      sampler=None if args.engine == "hf" else sampler)
    tqdm.write(f"[eval {tag}] {format_pass_at_k(result)}")
    return result


def print_timings(timings: list[dict]) -> None:
    """Median / min / max seconds per phase over the benchmarked steps (the first step is a warm-up, excluded)."""
    rows = timings[1:] or timings
    for key in ("time_sample", "time_judge", "time_update", "time_step"):
        values = sorted(r[key] for r in rows)
        print(f"{key[5:]:>7s}: median {values[len(values) // 2]:.3f}s  min {values[0]:.3f}s  max {values[-1]:.3f}s")


def main(args: Args) -> dict:
    distributed.init()  # torchrun: join the process group; a plain process: nothing happens
    rank, world, main_rank = distributed.rank(), distributed.world_size(), distributed.is_main()
    dp_mode = distributed.choose_mode(args.data_parallel, args.engine)
    distributed.shard(list(range(args.prompts_per_step)))  # fail now, not at step 1, unless prompts split evenly
    check_hardware(args)
    set_threads(args.threads)
    seed_everything(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    if main_rank:
        write_json(os.path.join(args.output_dir, "config.json"), asdict(args))
    policy, tokenizer = load_model(args.model, device=args.device)
    # The frozen base for the KL term: a copy of the policy as loaded, not a second read from disk.
    ref_model = copy.deepcopy(policy).eval().requires_grad_(False) if args.kl_coef > 0 else None
    judge = make_judge(args, args.device, policy, tokenizer) if args.reward != "sparse" else None
    problems = load_problem_set(args.train_data)
    eval_problems = load_problem_set(args.eval_data, limit=args.eval_limit or None) if args.eval_data else []
    sampler = make_sampler(args, policy, tokenizer)
    resumed = latest_checkpoint(args.output_dir) if args.resume else None  # (path, trainer state) or None
    if resumed:  # the policy continues from the checkpoint; the KL reference and judge stay the starting model
        policy.load_state_dict(load_model(resumed[0])[0].state_dict())
    if args.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # Data parallel (no-op in one process): `model` trains; `policy`, the unwrapped model, samples and is evaluated.
    model = distributed.wrap_model(policy, dp_mode)
    ref_model = distributed.wrap_model(ref_model, dp_mode, trainable=False) if ref_model is not None else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    start = resumed[1]["step"] if resumed else 0
    if resumed:  # optimiser, this rank's RNG streams, logs cut to the checkpoint's step
        restore_training_state(resumed[1], model, optimizer, sampler, args.output_dir, args.seed)
        if args.engine == "vllm":
            sync_weights(model, sampler)  # the engine started from args.model
    elif args.resume:
        tqdm.write(f"--resume: no complete checkpoint in {args.output_dir}; starting from step 0")
    log = MetricsLog(os.path.join(args.output_dir, "metrics.jsonl")) if main_rank else None
    judge_log = MetricsLog(os.path.join(args.output_dir, "judge_samples.jsonl")) if main_rank else None
    prompt_ids = encode_prompts(tokenizer, [policy_messages(p) for p in problems])  # question only, never the reference

    if args.benchmark:
        eval_problems = []
    evals = {"before": run_eval(args, policy, tokenizer, eval_problems, 0, "step_0000", sampler)
             if args.eval_before and start == 0 and main_rank else None}
    timings = []
    # The data order: one shuffle, the same on every rank (rank 0's), saved in checkpoints.
    order = resumed[1]["data_order"] if resumed else distributed.broadcast_object(torch.randperm(len(problems)).tolist())
    if world > 1 and not resumed:
        seed_everything(args.seed * world + rank)  # ranks sample different rollouts for their different prompts
    bar = tqdm(range(start + 1, args.steps + 1), desc=f"{os.path.basename(os.path.normpath(args.output_dir))} {args.reward}",
               dynamic_ncols=True, disable=not main_rank)
    for step in bar:
        t0 = time.time()
        # 1. sample: the step's prompts (cycling through a shuffled order), G rollouts each, group by group
        idx = [order[((step - 1) * args.prompts_per_step + j) % len(order)] for j in range(args.prompts_per_step)]
        idx = distributed.shard(idx)  # this rank's block of whole groups (all of them in one process)
        step_problems = [problems[i] for i in idx]
        rollouts = sampler.sample([prompt_ids[i] for i in idx], n=args.group_size)
        t1 = time.time()
        # 2. judge: dense scores (or the 0/1 answer reward for the sparse baseline) -> per-token advantages
        correct = [answer_reward(r.text, step_problems[i // args.group_size].answer) for i, r in enumerate(rollouts)]
        per_token, keep, metrics, judged = score_rollouts(args, judge, step_problems, rollouts, tokenizer, correct)
        if judged is not None and main_rank:  # one raw judge output per step, for reading what the judge actually said
            judge_log.log(step, {"question": step_problems[0].question, "response": rollouts[0].text,
                                 "judge_text": judged.texts[0]})
        t2 = time.time()
        # 3. update: GRPO on the step's batch
        batch = build_batch(rollouts, per_token, keep, tokenizer.pad_token_id)
        update_metrics = update_policy(args, model, ref_model, optimizer, batch)
        metrics.update(update_metrics)
        if args.engine == "vllm":
            sync_weights(model, sampler)  # the engine must sample from the updated policy next step
        t3 = time.time()
        # 4. log
        groups = [correct[g : g + args.group_size] for g in range(0, len(correct), args.group_size)]
        metrics.update({
            "answer_accuracy": sum(correct) / len(correct),
            "fully_unsolved": sum(max(g) == 0 for g in groups) / len(groups),
            "response_length": sum(len(r.response_ids) for r in rollouts) / len(rollouts),
            "truncated": sum(r.truncated for r in rollouts) / len(rollouts),
            "time_sample": t1 - t0, "time_judge": t2 - t1, "time_update": t3 - t2, "time_step": t3 - t0,
        })
        # Over ranks: means weighted by rollouts, token-level update metrics by response tokens, counts summed, the
        # loss summed (each rank's part of the global token-mean), times maxed (the slowest rank sets the pace).
        tokens = int(batch["response_mask"].sum())
        metrics = distributed.reduce_metrics(
            metrics, weights={k: tokens for k in update_metrics}, default_weight=len(rollouts),
            sums=("judge_parse_failures", "dropped_rollouts", "loss"), maxes=tuple(k for k in metrics if k.startswith("time_")))
        if main_rank:
            log.log(step, metrics)
        timings.append({k: metrics[k] for k in ("time_sample", "time_judge", "time_update", "time_step")})
        bar.set_postfix(score=f"{metrics['judge_score']:.3f}", acc=f"{metrics['answer_accuracy']:.3f}",
                        unsolved=f"{metrics['fully_unsolved']:.2f}", len=f"{metrics['response_length']:.0f}")
        if args.eval_every and step % args.eval_every == 0 and step < args.steps and main_rank:
            run_eval(args, policy, tokenizer, eval_problems, step, f"step_{step:04d}", sampler)
        if not args.benchmark and args.save_every and step % args.save_every == 0:
            save_training_checkpoint(os.path.join(args.output_dir, "checkpoints", f"step_{step:06d}"), model, tokenizer,
                                     optimizer, step, order, sampler)
            if main_rank:
                prune_checkpoints(args.output_dir, args.keep_last)
    if not args.benchmark and start < args.steps:  # the final model, what later stages load
        save_training_checkpoint(os.path.join(args.output_dir, "checkpoint"), model, tokenizer, optimizer, args.steps,
                                 order, sampler)
    if args.benchmark:
        print_timings(timings)
    evals["after"] = run_eval(args, policy, tokenizer, eval_problems, args.steps, f"step_{args.steps:04d}", sampler) \
        if main_rank else None
    if evals["before"] and evals["after"]:
        for name in ("before", "after"):
            print(f"held-out {name:6s}: pass@1 {evals[name]['pass@k']['1']:.3f}  "
                  f"pass@16 {evals[name]['pass@k'].get('16', float('nan')):.3f}")
    distributed.barrier()  # the other ranks wait for rank 0's evaluation
    return evals


if __name__ == "__main__":
    main(parse_args())
    distributed.cleanup()
