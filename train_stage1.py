"""ExpRL Stage I: RL mid-training on hard problems with dense, reference-conditioned judge rewards.

One step (docs/paper.md, "The idea"; `main` below is the algorithm box):
    sample G responses per prompt from the question alone -> judge each response (outcome) or each prefix (process)
    against the hidden reference -> advantages (group-normalised, or Eq. 2 per segment) -> GRPO update(s) -> log.
`--reward sparse` swaps the judge for the 0/1 final-answer reward: the sparse-GRPO baseline.
`--reward self_distill` (run by baselines.py, which passes the teacher) swaps judge and advantages for a frozen
reference-conditioned teacher's per-token signal: the self-distillation baseline.

Defaults run the embedded toy world on a CPU (python train_stage1.py); `--preset paper-4b` holds the paper's settings.
"""

import copy
import json

import torch

from advantages import outcome_advantages, process_advantages, segment_spans, token_advantages
from config import Args, build_judge, load_inputs, loss_config, parse_args
from domains.judge_texts import process_level
from domains.problems import encode_prompts, policy_messages, question_text
from domains.rule_rewards import rule_rewards
from grpo import LossConfig, grpo_step, token_logprobs
from judge import JudgeResult, domain_kwargs, score_process_routed
from plumbing.common import load_model, resolve_model_path, seed_everything, set_threads
from plumbing.judge_watch import JudgeError, probe_judge
from plumbing.run import Run, StepRollouts
from rollout import HFSampler, to_batch
from scale import distributed


def main(args: Args, teacher=None) -> dict:
    """ExpRL Stage I (docs/paper.md, "The idea"). Returns {"before": pass@k result, "after": ...} (None: not evaluated).

    teacher: replaces judge + advantages by a per-token signal, `teacher(policy, problems, rollouts) -> (per-token
    advantages, mean signal)`: the self-distillation baseline (baselines.py, --reward self_distill).
    """
    problems, eval_problems = load_inputs(args, teacher)  # every check before anything is loaded or written
    dp_mode = distributed.setup(args.data_parallel, args.engine, args.prompts_per_step)  # torchrun: join, "ddp"/"fsdp"
    set_threads(args.threads)
    seed_everything(args.seed)
    policy, ref_model, tokenizer = load_policy(args)  # the policy, and a frozen copy of it for the KL term
    judge = make_judge(args)  # None for sparse GRPO and self-distillation; probed once: a dead judge stops here
    sampler = make_sampler(args, policy, tokenizer)
    model, ref_model = distributed.wrap_models(policy, ref_model, dp_mode)  # DDP / FSDP2; one process: as they are
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    run = Run(  # the run directory, logs, checkpoints (--resume restores the newest), progress bar, judge watch
        args,
        policy=policy,
        model=model,
        tokenizer=tokenizer,
        optimizer=optimizer,
        sampler=sampler,
        eval_problems=eval_problems,
    )
    prompt_ids = encode_prompts(tokenizer, [policy_messages(p) for p in problems])  # question only, never the reference
    before = run.evaluate(0) if args.eval_before and run.start == 0 else None  # the starting policy, held out
    order = run.order or shuffled_order(len(problems), args.seed)  # --resume: the checkpoint's data order
    G = args.group_size

    for step in run.steps(order):
        # 1. sample: this step's prompts (this rank's share under torchrun), G rollouts each, ordered group by group
        idx = step_prompts(order, step, args.prompts_per_step)
        rollouts = sampler.sample([prompt_ids[i] for i in idx], n=G)
        group_problems = [problems[i] for i in idx for _ in range(G)]  # the problem of each rollout
        correct = rule_rewards(group_problems, [r.text for r in rollouts])  # 0/1: the answer, the letter or the tests
        truncated = [r.truncated for r in rollouts]
        run.lap("sample")

        # 2. judge and 3. advantages: one per segment (token span) of each response, then on each of its tokens
        if args.reward == "process":  # s_1..s_T: one score per prefix y_<=t (or per segment), Eq. 2 per segment
            spans, judged, levels = judge_prefixes(judge, group_problems, rollouts, tokenizer, args)
            advantages, keep = process_advantages(judged.scores, truncated, G, args.advantage, levels)
        elif args.reward in ("outcome", "sparse"):  # one score per response: the judge's, or the 0/1 final answer
            spans = [[(0, len(r.response_ids))] for r in rollouts]
            judged = judge_outcomes(judge, group_problems, rollouts, correct)
            advantages, keep = outcome_advantages(judged.scores, truncated, G, args.scale_advantages)
            advantages = [[a] for a in advantages]  # (s - group mean) / (group std + eps), on every token
        else:  # self_distill (baselines.py): a reference-conditioned teacher's per-token signal, no judge
            spans, advantages, judged, keep = teacher_signal(teacher, policy, group_problems, rollouts)
        run.check_judge(step, judged, judge)  # no score for --judge_patience steps: checkpoint, then stop
        per_token = [token_advantages(sp, a, len(r.response_ids)) for r, sp, a in zip(rollouts, spans, advantages)]
        run.lap("judge")

        # 4. update: GRPO on the step's batch (updates_per_step mini-batches); 5. the engine gets the new weights
        batch = build_batch(rollouts, per_token, keep, tokenizer.pad_token_id)
        update_metrics = update_policy(args, model=model, ref_model=ref_model, optimizer=optimizer, batch=batch)
        sampler.update_weights(model)  # vLLM: the next step samples from the updated policy (HF: nothing to do)
        run.lap("update")

        # 6. log: metrics, one raw judge output, every --log_group_every steps one whole group (plumbing/run.py)
        scored = StepRollouts(group_problems, rollouts, correct, judged, spans=spans, advantages=advantages, keep=keep)
        run.log(step, scored, update_metrics, batch)
        run.evaluate_and_save(step)  # 7. held-out pass@k every --eval_every steps, a checkpoint every --save_every
    run.save_checkpoint(args.steps, final=True)  # output_dir/checkpoint: what Stage II starts from
    return run.finish(before, after=run.evaluate(args.steps))  # held-out pass@k before/after training


def load_policy(args: Args):
    """(policy, frozen reference or None, tokenizer): the policy from --model; the reference for the KL term is a copy
    of it as loaded (not a second read from disk), None without KL (--kl_coef 0)."""
    policy, tokenizer = load_model(args.model, device=args.device)
    ref_model = copy.deepcopy(policy).eval().requires_grad_(False) if args.kl_coef > 0 else None
    if args.gradient_checkpointing:  # recompute each layer's activations in backward (long responses)
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return policy, ref_model, tokenizer


def make_judge(args: Args):
    """The judge of --reward outcome|process (config.build_judge: a toy judge, a judge model, or a judge server),
    probed with one request (plumbing/judge_watch.py: a dead or mute judge stops the run here, before step 1); None for
    the other rewards."""
    if args.reward not in ("outcome", "process"):
        return None
    judge = build_judge(
        args.judge,
        args.judge_error_rate,
        max_tokens=args.judge_max_tokens,
        served_model=args.judge_model,
        device=args.device,
    )
    probe_judge(judge, args.judge)
    return judge


def make_sampler(args: Args, policy, tokenizer):
    """The rollout engine: HF generate on the training model itself, or a vLLM engine fed by sync_weights."""
    if args.engine == "hf":
        return HFSampler(policy, tokenizer, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    from scale.vllm_engine import VLLMSampler

    return VLLMSampler(
        resolve_model_path(args.model),
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        gpu_memory_utilization=args.vllm_memory,
        seed=distributed.rank_seed(args.seed),  # one stream per rank
        **json.loads(args.vllm_kwargs),
    )


def shuffled_order(num_problems: int, seed: int) -> list[int]:
    """The data order: one shuffle, the same on every rank (rank 0's), saved in checkpoints. Under torchrun each rank
    is then reseeded, so that ranks sample different rollouts for their prompts."""
    order = distributed.broadcast_object(torch.randperm(num_problems).tolist())
    if distributed.world_size() > 1:
        seed_everything(distributed.rank_seed(seed))
    return order


def step_prompts(order: list[int], step: int, n: int) -> list[int]:
    """This step's n prompts, cycling through the data order; under torchrun this rank's contiguous block of whole
    groups (scale.distributed.shard)."""
    return distributed.shard([order[((step - 1) * n + j) % len(order)] for j in range(n)])


def judge_outcomes(judge, problems, rollouts, correct: list[float]) -> JudgeResult:
    """ExpRL-Outcome's judge call: one score per whole response, the judge reading the question and the hidden
    reference (docs/paper.md, "Outcome judge"). No judge (sparse GRPO, Stage II): the 0/1 final-answer reward."""
    if judge is None:
        return JudgeResult(correct, [""] * len(rollouts))
    questions, references = [question_text(p) for p in problems], [p.reference for p in problems]
    domains = domain_kwargs([p.domain for p in problems])  # {"domains": [...]} if not all math, else {}
    return judge.score_outcome(questions, references, [r.text for r in rollouts], **domains)


def judge_prefixes(judge, problems, rollouts, tokenizer, args: Args):
    """ExpRL-Process's judge call (docs/paper.md, "Process judge and Eq. 2"): each response cut at --delimiter into
    segments, one score per prefix y_<=t. In a batch mixing domains, code and open-ended science rows get one
    outcome-level score instead (domains.judge_texts.process_level). Returns (the segments' token spans, JudgeResult,
    levels)."""
    levels = [process_level(p) for p in problems]
    spans = process_spans(rollouts, levels, tokenizer, args.delimiter)
    segments = decode_spans(tokenizer, rollouts, spans)
    questions, references = [question_text(p) for p in problems], [p.reference for p in problems]
    domains = domain_kwargs([p.domain for p in problems])
    judged = score_process_routed(judge, questions, references, segments, levels, view=args.process_view, **domains)
    return spans, judged, levels


def teacher_signal(teacher, policy, problems, rollouts):
    """The self-distillation baseline's step 2-3 (baselines.py): the teacher's per-token advantages A_t = -d_t on
    one-token spans, its mean signal logged where a judge score would be. Returns (spans, advantages, JudgeResult,
    keep)."""
    spans = [[(t, t + 1) for t in range(len(r.response_ids))] for r in rollouts]  # one span per token
    advantages, signal = teacher(policy, problems, rollouts)
    judged = JudgeResult([signal] * len(rollouts), [""] * len(rollouts))
    return spans, advantages, judged, [True] * len(rollouts)


def process_spans(rollouts, levels: list[str], tokenizer, delimiter: str) -> list[list[tuple[int, int]]]:
    """The segments ExpRL-Process judges: the "###" spans of a response at level "prefix", the whole response (one
    span) at level "outcome" (domains.judge_texts.process_level: code and open-ended science in a mixed batch)."""
    return [
        segment_spans(r.response_ids, tokenizer, delimiter) if level == "prefix" else [(0, len(r.response_ids))]
        for r, level in zip(rollouts, levels)
    ]


def decode_spans(tokenizer, rollouts, spans) -> list[list[str]]:
    """The text of each segment (token span) of each rollout: what the process judge reads."""
    return [
        [tokenizer.decode(r.response_ids[a:b], skip_special_tokens=True) for a, b in sp]
        for r, sp in zip(rollouts, spans)
    ]


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
    """One Stage-I update: updates_per_step GRPO mini-batch steps over the step's batch.

    The paper's values: docs/paper.md, "Stage I optimiser settings".

    A mini-batch without any advantage is not applied (--skip_no_signal): Adam divides by the running gradient RMS, so
    the lone KL / entropy gradient would still move every weight by about lr. Under torchrun `batch` is this rank's
    shard; scale.distributed.global_mini_batch makes each mini-batch train as the global one (and decides the skip for
    all).
    """
    loss = loss_config(args)
    if args.kl_coef > 0:  # the frozen base's log-probs, for the KL term
        batch["ref_logprobs"] = frozen_logprobs(ref_model, batch, loss, args.micro_batch_size)
    if args.updates_per_step > 1:  # off-policy after the first mini-batch: freeze the behaviour log-probs first
        batch["old_logprobs"] = frozen_logprobs(model, batch, loss, args.micro_batch_size)
    metrics = {}
    for rows in torch.randperm(batch["input_ids"].shape[0]).chunk(args.updates_per_step):
        mini = {k: v[rows] for k, v in batch.items()}
        denominator, has_signal = distributed.global_mini_batch(mini, loss)  # one process: (None, this batch's)
        skip = args.skip_no_signal and not has_signal
        mini_metrics = grpo_step(
            model,
            optimizer,
            mini,
            loss,
            micro_batch_size=args.micro_batch_size,
            max_grad_norm=args.max_grad_norm,
            apply=not skip,
            denominator=denominator,
        )
        mini_metrics["skipped_update"] = float(skip)
        for k, v in mini_metrics.items():
            metrics[k] = metrics.get(k, 0.0) + v / args.updates_per_step
    return metrics


@torch.no_grad()
def frozen_logprobs(model, batch: dict, loss: LossConfig, micro_batch_size: int) -> torch.Tensor:
    """Log-probs of the batch's response tokens under `model`, without a graph: the KL reference's, or the behaviour
    policy's before an off-policy mini-batch. [B, L]."""
    return token_logprobs(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        batch["response_mask"],
        micro_batch_size=micro_batch_size,
        temperature=loss.temperature,
        chunk_size=loss.chunk_size,
    )


if __name__ == "__main__":
    try:
        main(parse_args())
    except JudgeError as error:  # one line naming the judge, what it answered, what to check; exit status 1
        raise SystemExit(f"error: {error}") from None
    distributed.cleanup()
