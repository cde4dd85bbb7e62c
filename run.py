"""The bookkeeping around the Stage-I loop, so that train_stage1.main shows only the algorithm.

`Run` owns what every step needs but the method does not: the processes (torchrun or one), seeds and threads, the
run directory (config.json, metrics.jsonl, judge_samples.jsonl, groups.jsonl), the data order and this rank's share
of each step's prompts, wrapping the policy for DDP/FSDP2 and its optimiser, --resume, the per-phase timer and
--benchmark, held-out evaluation, and checkpoints. Nothing in here changes what a step computes.
"""

import os
import time
from dataclasses import asdict

import torch
from tqdm import tqdm

import distributed
from common import (
    MetricsLog,
    Reporter,
    latest_checkpoint,
    load_model,
    prune_checkpoints,
    restore_training_state,
    save_training_checkpoint,
    seed_everything,
    set_threads,
    write_json,
)
from evaluate import evaluate, format_pass_at_k
from judge_health import JudgeError, JudgeMonitor

PHASES = ("sample", "judge", "update")


class Run:
    """One training run. Construct it first (it joins torchrun's process group and seeds), then `prepare` the models.

    Under torchrun every rank runs the same loop; rank 0 logs, evaluates and writes checkpoints (`distributed.py`).
    """

    def __init__(self, args):
        distributed.init()  # torchrun: join the process group; a plain process: nothing happens
        self.args = args
        self.rank, self.world, self.is_main = distributed.rank(), distributed.world_size(), distributed.is_main()
        self.dp_mode = distributed.choose_mode(args.data_parallel, args.engine)
        distributed.shard(list(range(args.prompts_per_step)))  # fail now, not at step 1, unless prompts split evenly
        set_threads(args.threads)
        seed_everything(args.seed)
        os.makedirs(args.output_dir, exist_ok=True)
        if self.is_main:
            write_json(os.path.join(args.output_dir, "config.json"), asdict(args))
        self.start, self.resumed, self.order, self.timings = 0, None, None, []
        self.evals = {"before": None, "after": None}
        self.judge_monitor = JudgeMonitor(args.judge, patience=args.judge_patience)

    # ------------------------------------------------------------------------------------------------- set-up
    def prepare(self, policy, ref_model, sampler, num_problems: int):
        """Resume (--resume), wrap for data parallelism, build AdamW. Returns (model, ref_model, optimizer): `model`
        trains (DDP-wrapped or FSDP2-sharded; the policy itself in one process), `policy` keeps sampling."""
        args = self.args
        self.sampler, self.policy = sampler, policy
        self.resumed = latest_checkpoint(args.output_dir) if args.resume else None  # (path, trainer state) or None
        if self.resumed:  # the policy continues from the checkpoint; the KL reference and judge stay the start model
            policy.load_state_dict(load_model(self.resumed[0])[0].state_dict())
        elif args.resume:
            tqdm.write(f"--resume: no complete checkpoint in {args.output_dir}; starting from step 0")
        if args.gradient_checkpointing:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = distributed.wrap_model(policy, self.dp_mode)
        ref_model = distributed.wrap_model(ref_model, self.dp_mode, trainable=False) if ref_model is not None else None
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        if self.resumed:  # optimiser, this rank's RNG streams, logs cut to the checkpoint's step
            self.start = self.resumed[1]["step"]
            restore_training_state(self.resumed[1], model, optimizer, sampler, args.output_dir, args.seed)
            sampler.update_weights(model)  # vLLM: the engine started from args.model
        path = os.path.join(args.output_dir, "{}.jsonl")
        self.metrics_log = MetricsLog(path.format("metrics")) if self.is_main else None
        self.judge_log = MetricsLog(path.format("judge_samples")) if self.is_main else None
        self.group_log = MetricsLog(path.format("groups")) if self.is_main else None
        self.reporter = Reporter(args.report_to if self.is_main else "none", args.output_dir, asdict(args))
        self.num_problems, self.model, self.optimizer = num_problems, model, optimizer
        return model, ref_model, optimizer

    def steps(self, tokenizer, eval_problems):
        """Evaluate the starting policy, fix the data order, then yield the step numbers start + 1 .. args.steps (with
        a progress bar; each step's timer starts here)."""
        args = self.args
        self.tokenizer, self.eval_problems = tokenizer, [] if args.benchmark else eval_problems
        if args.eval_before and self.start == 0:
            self.evals["before"] = self.evaluate(0)
        # The data order: one shuffle, the same on every rank (rank 0's), saved in checkpoints.
        self.order = (
            self.resumed[1]["data_order"]
            if self.resumed
            else distributed.broadcast_object(torch.randperm(self.num_problems).tolist())
        )
        if self.world > 1 and not self.resumed:
            seed_everything(args.seed * self.world + self.rank)  # ranks sample different rollouts for their prompts
        name = os.path.basename(os.path.normpath(args.output_dir))
        self.bar = tqdm(
            range(self.start + 1, args.steps + 1),
            desc=f"{name} {args.reward}",
            dynamic_ncols=True,
            disable=not self.is_main,
        )
        for step in self.bar:
            self.lap_start, self.laps = time.time(), {}
            yield step

    def prompt_indices(self, step: int) -> list[int]:
        """This step's prompts (cycling through the shuffled order), this rank's contiguous block of whole groups."""
        n = self.args.prompts_per_step
        return distributed.shard([self.order[((step - 1) * n + j) % len(self.order)] for j in range(n)])

    # ------------------------------------------------------------------------------------------------- per step
    def lap(self, phase: str) -> None:
        """Seconds since the previous lap (or the step's start) -> metrics time_<phase>."""
        now = time.time()
        self.laps[f"time_{phase}"] = now - self.lap_start
        self.lap_start = now

    def log(self, step: int, metrics: dict, update_metrics: dict, batch: dict, judge_sample: dict | None) -> dict:
        """Reduce a step's metrics over ranks, write metrics.jsonl (rank 0), show them in the progress bar; one raw
        judge output to judge_samples.jsonl.

        Over ranks: means weighted by rollouts, the update's metrics by response tokens, counts summed, the loss
        summed (each rank's part of the global token-mean), times maxed (the slowest rank sets the pace).
        """
        metrics = {**metrics, **update_metrics, **self.laps, "time_step": sum(self.laps.values())}
        num_tokens = int(batch["response_mask"].sum())
        metrics = distributed.reduce_metrics(
            metrics,
            weights={k: num_tokens for k in update_metrics},
            default_weight=batch["input_ids"].shape[0],
            sums=("judge_parse_failures", "dropped_rollouts", "loss"),
            maxes=tuple(k for k in metrics if k[:5] == "time_"),
        )
        if self.is_main:
            self.metrics_log.log(step, metrics)
            self.reporter.log(step, metrics)
            if judge_sample is not None:
                self.judge_log.log(step, judge_sample)
        self.timings.append({k: metrics[k] for k in ("time_sample", "time_judge", "time_update", "time_step")})
        self.bar.set_postfix(
            score=f"{metrics['judge_score']:.3f}",
            acc=f"{metrics['answer_accuracy']:.3f}",
            unsolved=f"{metrics['fully_unsolved']:.2f}",
            len=f"{metrics['response_length']:.0f}",
        )
        return metrics

    def show_group(self, step: int) -> bool:
        """Whether this step logs one whole GRPO group: step 1 and every --log_group_every steps (0 = never)."""
        every = self.args.log_group_every
        return every > 0 and (step == 1 or step % every == 0)

    def log_group(self, step: int, group: dict) -> None:
        """One whole GRPO group to groups.jsonl (rank 0; python -m analysis.show_group draws it)."""
        if self.is_main:
            self.group_log.log(step, group)

    def check_judge(self, step: int, judged, judge) -> None:
        """After a step's judging: a one-line summary of failed judge requests (never one line per request), a warning
        when many gave no score, and, when the judge gave nothing for `patience` steps in a row (JudgeMonitor), a
        resumable checkpoint of the last good state (step - 1; --resume redoes this step) and JudgeError. The
        decision is taken on every rank alike, so all ranks stop together."""
        if judge is None:  # sparse GRPO, self-distillation: no judge to watch
            return
        engine, error, warning = getattr(judge, "engine", None), None, None
        try:
            warning = self.judge_monitor.update(judged, engine)
        except JudgeError as caught:
            error = caught
        if distributed.all_reduce_sum(float(error is not None)) > 0:
            self.checkpoint(os.path.join(self.args.output_dir, "checkpoints", f"step_{step - 1:06d}"), step - 1)
            raise error or JudgeError(f"judge {self.args.judge}: another rank's judge gave no score")
        failed = getattr(engine, "last_failures", 0)
        if warning or failed:
            errors = "; ".join(getattr(engine, "last_errors", []) or [])
            tqdm.write(f"step {step}: {warning or f'{failed} judge requests failed: {errors}'}")

    def evaluate_and_checkpoint(self, step: int) -> None:
        """Evaluate every --eval_every steps, write a resumable checkpoint every --save_every steps."""
        args = self.args
        if args.eval_every and step % args.eval_every == 0 and step < args.steps:
            self.evaluate(step)
        if not args.benchmark and args.save_every and step % args.save_every == 0:
            self.checkpoint(os.path.join(args.output_dir, "checkpoints", f"step_{step:06d}"), step)
            if self.is_main:
                prune_checkpoints(args.output_dir, args.keep_last)

    # ------------------------------------------------------------------------------------------------- end of run
    def finish(self) -> dict:
        """The final checkpoint (what later stages load), the benchmark table, the held-out evaluation after.
        Returns {"before": pass@k result or None, "after": ...}."""
        args = self.args
        if not args.benchmark and self.start < args.steps:
            self.checkpoint(os.path.join(args.output_dir, "checkpoint"), args.steps)
        if args.benchmark:
            print_timings(self.timings)
        self.evals["after"] = self.evaluate(args.steps)
        if self.evals["before"] and self.evals["after"]:
            for name in ("before", "after"):
                print(
                    f"held-out {name:6s}: pass@1 {self.evals[name]['pass@k']['1']:.3f}  "
                    f"pass@16 {self.evals[name]['pass@k'].get('16', float('nan')):.3f}"
                )
        self.reporter.close()
        distributed.barrier()  # the other ranks wait for rank 0's evaluation
        return self.evals

    def checkpoint(self, path: str, step: int) -> None:
        save_training_checkpoint(path, self.model, self.tokenizer, self.optimizer, step, self.order, self.sampler)

    def evaluate(self, step: int) -> dict | None:
        """pass@k on the held-out problems (rank 0 only), with the run's sampler when it is vLLM."""
        args = self.args
        if not self.eval_problems or not self.is_main:
            return None
        tag = f"step_{step:04d}"
        result = evaluate(
            self.policy,
            self.eval_problems,
            n=args.eval_n,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            tokenizer=self.tokenizer,
            output_dir=os.path.join(args.output_dir, "eval", tag),
            step=step,
            sampler=None if args.engine == "hf" else self.sampler,
        )
        self.reporter.log(step, {f"pass@{k}": v for k, v in result["pass@k"].items()}, prefix="eval")
        tqdm.write(f"[eval {tag}] {format_pass_at_k(result)}")
        return result


# ----------------------------------------------------------------------------------------------------- what a step logs
def step_metrics(args, rollouts, correct, judged, keep, spans) -> dict:
    """What a step logs besides the update: the judge's mean score, zero-signal groups, answer accuracy, lengths."""
    G = args.group_size
    if args.reward == "process":
        finals = [row[-1] if k and row else None for row, k in zip(judged.scores, keep)]  # s_T of the kept rollouts
        rewards = finals
    else:
        finals = judged.scores
        rewards = [0.0 if r.truncated else s for s, r in zip(judged.scores, rollouts)]
    valid = [s for s in finals if s is not None]
    groups = [rewards[g : g + G] for g in range(0, len(rewards), G)]
    answer_groups = [correct[g : g + G] for g in range(0, len(correct), G)]
    metrics = {
        "judge_score": sum(valid) / max(len(valid), 1),
        "zero_std_groups": 0.0
        if args.reward == "self_distill"
        else sum(len({r for r in grp if r is not None}) <= 1 for grp in groups) / len(groups),
        "judge_parse_failures": judged.num_failures,
        "dropped_rollouts": keep.count(False),
        "answer_accuracy": sum(correct) / len(correct),
        "fully_unsolved": sum(max(g) == 0 for g in answer_groups) / len(answer_groups),
        "response_length": sum(len(r.response_ids) for r in rollouts) / len(rollouts),
        "truncated": sum(r.truncated for r in rollouts) / len(rollouts),
    }
    if args.reward == "process":
        metrics["segments_per_response"] = sum(len(sp) for sp in spans) / len(spans)
    return metrics


def judge_sample(problems, rollouts, judged) -> dict | None:
    """One raw judge output per step, for reading what the judge actually said (judge_samples.jsonl)."""
    if not judged.texts or not judged.texts[0]:
        return None
    return {"question": problems[0].question, "response": rollouts[0].text, "judge_text": judged.texts[0]}


def group_record(args, problems, rollouts, spans, judged, advantages, correct, keep, tokenizer) -> dict:
    """The first GRPO group of the step, whole (groups.jsonl; python -m analysis.show_group draws it): each rollout's
    segments with their scores s_t, advantages A_t and raw judge outputs."""
    rows = []
    for i in range(args.group_size):
        r, scores, texts = rollouts[i], judged.scores[i], judged.texts[i]
        segment_scores = scores if isinstance(scores, list) else [scores]
        segment_texts = texts if isinstance(texts, list) else [texts]
        if args.reward == "self_distill":
            spans_i = [(0, len(r.response_ids))]  # one segment; the per-token signal is not drawn
            segment_values = [sum(advantages[i]) / max(len(advantages[i]), 1)]
        else:
            spans_i, segment_values = spans[i], advantages[i]
        segments = [
            {
                "text": tokenizer.decode(r.response_ids[a:b], skip_special_tokens=True),
                "score": segment_scores[t] if args.reward == "process" else segment_scores[0],
                "advantage": float(segment_values[t]),
                "judge_text": segment_texts[t] if args.reward == "process" else segment_texts[0],
            }
            for t, (a, b) in enumerate(spans_i)
        ]
        rows.append(
            {
                "text": r.text,
                "segments": segments,
                "score": segment_scores[-1] if segment_scores else None,
                "advantage": None if args.reward == "process" else float(segment_values[0] if segment_values else 0),
                "judge_text": "" if args.reward == "process" else segment_texts[0],
                "answer_reward": float(correct[i]),
                "truncated": r.truncated,
                "dropped": not keep[i],
            }
        )
    p = problems[0]
    return {
        "reward": args.reward,
        "advantage": args.advantage if args.reward == "process" else "group",
        "process_view": args.process_view,
        "question": p.question,
        "reference": p.reference,
        "answer": p.answer,
        "rollouts": rows,
    }


def print_timings(timings: list[dict]) -> None:
    """Median / min / max seconds per phase over the benchmarked steps (the first step is a warm-up, excluded)."""
    rows = timings[1:] or timings
    for key in ("time_sample", "time_judge", "time_update", "time_step"):
        values = sorted(r[key] for r in rows)
        print(f"{key[5:]:>7s}: median {values[len(values) // 2]:.3f}s  min {values[0]:.3f}s  max {values[-1]:.3f}s")
