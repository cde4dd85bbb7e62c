"""The I/O of a training run, so that train_stage1.main shows only the algorithm and its schedule.

`Run` owns the run directory: config.json; metrics.jsonl, judge_samples.jsonl and groups.jsonl (rank 0), also to
TensorBoard / W&B with --report_to; the progress bar and the per-phase timer (--benchmark prints its table); held-out
evaluation into eval/; checkpoint files (every --save_every steps, the final one, and --resume, which restores the
newest complete checkpoint's weights, optimiser, RNG streams and data order); and the judge watch, which stops a run
whose judge gives no scores, after a resumable checkpoint. Everything else (seeds, models, optimiser, data order) is
made in train_stage1.main and handed in.

`StepRollouts` carries one step's rollouts and what the step made of them to the logs: `step_metrics`, `judge_sample`
and `group_record` turn it into the lines the files get.
"""

import os
import time
from dataclasses import asdict, dataclass

from tqdm import tqdm

from evaluate import evaluate, format_domains, format_pass_at_k
from judge import JudgeResult
from plumbing.checkpoint import latest_checkpoint, prune_checkpoints, restore_training_state, save_training_checkpoint
from plumbing.cli import fail
from plumbing.common import load_model, write_json
from plumbing.judge_watch import JudgeError, JudgeMonitor
from plumbing.logs import MetricsLog, Reporter
from scale import distributed


@dataclass
class StepRollouts:
    """One step's rollouts and what the step made of them, one entry per rollout, ordered group by group."""

    problems: list  # domains.problems.Problem of each rollout
    rollouts: list  # rollout.Rollout
    correct: list  # 0/1 final-answer reward (logged; the reward itself for --reward sparse)
    judged: JudgeResult  # scores and raw judge outputs: per response, or per segment for --reward process
    spans: list  # token spans (segments) of each response ...
    advantages: list  # ... and one advantage per span
    keep: list  # False: dropped from the loss (an unparseable score)


class Run:
    """One training run's files, progress bar, timer and judge watch. Everything it holds is handed in here (and
    --resume done here, before the logs open), except the data order and the progress bar, which `steps` takes.

    `policy` samples and is evaluated; `model` trains (the policy itself in one process, its DDP / FSDP2 wrapper under
    torchrun); `model`, `tokenizer`, `optimizer` and `sampler` are what checkpoints save and --resume restores. Under
    torchrun every rank runs the same loop; rank 0 writes the logs, evaluates and writes checkpoints.
    """

    def __init__(self, args, policy, model, tokenizer, optimizer, sampler, eval_problems):
        self.args, self.policy, self.model, self.tokenizer = args, policy, model, tokenizer
        self.optimizer, self.sampler = optimizer, sampler
        self.eval_problems = [] if args.benchmark else eval_problems
        self.is_main = distributed.is_main()
        os.makedirs(args.output_dir, exist_ok=True)
        if self.is_main:
            write_json(os.path.join(args.output_dir, "config.json"), asdict(args))
        self.start, self.order = self.resume() if args.resume else (0, None)  # before the logs open: they get cut
        path = os.path.join(args.output_dir, "{}.jsonl")
        self.metrics_log = MetricsLog(path.format("metrics")) if self.is_main else None
        self.judge_log = MetricsLog(path.format("judge_samples")) if self.is_main else None
        self.group_log = MetricsLog(path.format("groups")) if self.is_main else None
        self.reporter = Reporter(args.report_to if self.is_main else "none", args.output_dir, asdict(args))
        self.judge_monitor = JudgeMonitor(args.judge, patience=args.judge_patience)
        self.timings, self.laps, self.lap_start, self.bar = [], {}, time.time(), None

    def resume(self) -> tuple[int, list | None]:
        """--resume: the newest complete checkpoint's weights into the training model (the KL reference, judge and
        teacher stay the start model), its optimiser state, this rank's RNG streams, and the logs cut to its step.
        Returns (its step, its data order), or (0, None) when there is none."""
        found = latest_checkpoint(self.args.output_dir)  # (path, trainer state) or None
        steps = distributed.all_gather_object(found[1]["step"] if found else None)
        if len(set(steps)) > 1:  # e.g. node 1 cannot see node 0's disk: it would start at step 0 and hang the others
            fail(
                f"--resume: the ranks found different checkpoints in {self.args.output_dir} (step by rank: {steps}); "
                "every node must read the same checkpoint (a shared filesystem, or rank 0's copied to this path)"
            )
        if found is None:
            tqdm.write(f"--resume: no complete checkpoint in {self.args.output_dir}; starting from step 0")
            return 0, None
        path, state = found
        distributed.load_full_state_dict(self.model, load_model(path)[0].state_dict())
        restore_training_state(
            state,
            model=self.model,
            optimizer=self.optimizer,
            sampler=self.sampler,
            output_dir=self.args.output_dir,
            seed=self.args.seed,
        )
        self.sampler.update_weights(self.model)  # vLLM: the engine started from args.model
        return state["step"], state["data_order"]

    def steps(self, order: list[int]):
        """The step numbers start + 1 .. args.steps, with a progress bar; each step's timer starts here. `order` (the
        data order) goes into every checkpoint."""
        self.order = order
        name = os.path.basename(os.path.normpath(self.args.output_dir))
        self.bar = tqdm(
            range(self.start + 1, self.args.steps + 1),
            desc=f"{name} {self.args.reward}",
            dynamic_ncols=True,
            disable=not self.is_main,
        )
        for step in self.bar:
            self.lap_start, self.laps = time.time(), {}
            yield step

    # ------------------------------------------------------------------------------------------------- per step
    def lap(self, phase: str) -> None:
        """Seconds since the previous lap (or the step's start) -> metrics time_<phase>."""
        now = time.time()
        self.laps[f"time_{phase}"] = now - self.lap_start
        self.lap_start = now

    def log(self, step: int, scored: StepRollouts, update_metrics: dict, batch: dict) -> dict:
        """The step's metrics (step_metrics, the update's, the phase times), reduced over ranks, to metrics.jsonl and
        the progress bar; one raw judge output to judge_samples.jsonl; on step 1 and every --log_group_every steps one
        whole GRPO group to groups.jsonl (python -m analysis.show_group draws it).

        Over ranks: means weighted by rollouts, the update's metrics by response tokens, counts summed, times maxed (the
        slowest rank sets the pace), the loss averaged (each rank's is its rows' part of the global mini-batch loss,
        times the world size: scale.distributed.global_mini_batch).
        """
        metrics = {
            **step_metrics(self.args, scored),
            **update_metrics,
            **self.laps,
            "time_step": sum(self.laps.values()),
        }
        num_tokens = int(batch["response_mask"].sum())
        metrics = distributed.reduce_metrics(
            metrics,
            weights={**{k: num_tokens for k in update_metrics}, "loss": 1},
            default_weight=batch["input_ids"].shape[0],
            sums=("judge_parse_failures", "dropped_rollouts"),
            maxes=tuple(k for k in metrics if k[:5] == "time_"),
        )
        every = self.args.log_group_every
        if self.is_main:
            self.metrics_log.log(step, metrics)
            self.reporter.log(step, metrics)
            if (sample := judge_sample(scored)) is not None:
                self.judge_log.log(step, sample)
            if every > 0 and (step == 1 or step % every == 0):
                self.group_log.log(step, group_record(self.args, scored, self.tokenizer))
        self.timings.append({k: metrics[k] for k in ("time_sample", "time_judge", "time_update", "time_step")})
        self.bar.set_postfix(
            score=f"{metrics['judge_score']:.3f}",
            acc=f"{metrics['answer_accuracy']:.3f}",
            unsolved=f"{metrics['fully_unsolved']:.2f}",
            len=f"{metrics['response_length']:.0f}",
        )
        return metrics

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

    # ------------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, step: int, final: bool = False) -> None:
        """A resumable checkpoint: checkpoints/step_N, of which the newest --keep_last stay, or with final=True
        checkpoint/, what later stages load (not rewritten by a resumed run that had already finished). None under
        --benchmark."""
        args = self.args
        if args.benchmark or (final and self.start >= args.steps):
            return
        if final:
            self.checkpoint(os.path.join(args.output_dir, "checkpoint"), step)
            return
        self.checkpoint(os.path.join(args.output_dir, "checkpoints", f"step_{step:06d}"), step)
        if self.is_main:
            prune_checkpoints(args.output_dir, args.keep_last)

    def checkpoint(self, path: str, step: int) -> None:
        save_training_checkpoint(
            path,
            model=self.model,
            tokenizer=self.tokenizer,
            optimizer=self.optimizer,
            step=step,
            data_order=self.order,
            sampler=self.sampler,
        )

    # ------------------------------------------------------------------------------------------------- evaluation
    def evaluate_and_save(self, step: int) -> None:
        """The schedule inside the loop: held-out pass@k every --eval_every steps (not at the last step: `finish`'s
        evaluation covers it), a resumable checkpoint every --save_every steps."""
        if self.args.eval_every and step % self.args.eval_every == 0 and step < self.args.steps:
            self.evaluate(step)
        if self.args.save_every and step % self.args.save_every == 0:
            self.save_checkpoint(step)

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
            seed=args.seed,  # draws fixed by (seed, problems, weights); the training stream is not touched
        )
        self.reporter.log(step, {f"pass@{k}": v for k, v in result["pass@k"].items()}, prefix="eval")
        tqdm.write(f"[eval {tag}] {format_pass_at_k(result)}")
        if "domains" in result:  # a set beyond math: one line per domain group (Math-Agg, STEM-Agg, Code)
            tqdm.write(format_domains(result))
        return result

    def finish(self, before: dict | None, after: dict | None) -> dict:
        """The --benchmark table, the held-out before/after lines; the other ranks wait for rank 0 here.
        Returns {"before": pass@k result or None, "after": ...}."""
        if self.args.benchmark:
            print_timings(self.timings)
        if before and after:
            for name, result in (("before", before), ("after", after)):
                print(
                    f"held-out {name:6s}: pass@1 {result['pass@k']['1']:.3f}  "
                    f"pass@16 {result['pass@k'].get('16', float('nan')):.3f}"
                )
        self.reporter.close()
        distributed.barrier()  # the other ranks wait for rank 0's evaluation
        return {"before": before, "after": after}


# ----------------------------------------------------------------------------------------------------- what a step logs
def step_metrics(args, scored: StepRollouts) -> dict:
    """What a step logs besides the update: the judge's mean score, zero-signal groups, answer accuracy, lengths."""
    G, rollouts, judged, correct, keep = args.group_size, scored.rollouts, scored.judged, scored.correct, scored.keep
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
        metrics["segments_per_response"] = sum(len(sp) for sp in scored.spans) / len(scored.spans)
    return metrics


def judge_sample(scored: StepRollouts) -> dict | None:
    """One raw judge output per step, for reading what the judge actually said (judge_samples.jsonl)."""
    texts = scored.judged.texts
    if not texts or not texts[0]:
        return None
    return {"question": scored.problems[0].question, "response": scored.rollouts[0].text, "judge_text": texts[0]}


def group_record(args, scored: StepRollouts, tokenizer) -> dict:
    """The first GRPO group of the step, whole (groups.jsonl; python -m analysis.show_group draws it): each rollout's
    segments with their scores s_t, advantages A_t and raw judge outputs. Outcome and sparse rewards have one segment
    (the response); self-distillation's per-token advantages are drawn as one segment, their mean."""
    process = args.reward == "process"
    rows = []
    for i in range(args.group_size):
        r, scores, texts = scored.rollouts[i], scored.judged.scores[i], scored.judged.texts[i]
        scores, texts = (scores, texts) if process else ([scores], [texts])  # one entry per segment
        spans, values = scored.spans[i], scored.advantages[i]
        if args.reward == "self_distill":  # one segment: the mean of the per-token A_t
            spans, values = [(0, len(r.response_ids))], [sum(values) / max(len(values), 1)]
        segments = [
            {
                "text": tokenizer.decode(r.response_ids[a:b], skip_special_tokens=True),
                "score": scores[t],
                "advantage": float(values[t]),
                "judge_text": texts[t],
            }
            for t, (a, b) in enumerate(spans)
        ]
        rows.append(
            {
                "text": r.text,
                "segments": segments,
                "score": scores[-1] if scores else None,
                "advantage": None if process else float(values[0] if values else 0),
                "judge_text": "" if process else texts[0],
                "answer_reward": float(scored.correct[i]),
                "truncated": r.truncated,
                "dropped": not scored.keep[i],
            }
        )
    p = scored.problems[0]
    return {
        "reward": args.reward,
        "advantage": args.advantage if process else "group",
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
