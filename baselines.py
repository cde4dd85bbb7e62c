"""The paper's non-RL priming baselines (docs/paper.md, "Baselines"): SFT on references, on-policy self-distillation.

    python baselines.py sft            # supervised fine-tuning on (question -> reference), loss on reference tokens
    python baselines.py self_distill   # student samples, a reference-conditioned frozen teacher scores its tokens

Both start from --model (default: the toy base) and write a checkpoint that train_stage2.py can start from. The third
baseline, sparse GRPO, is `python train_stage1.py --reward sparse`.

Self-distillation reuses the whole Stage-I loop: the frozen teacher plays the judge's part, and its per-token signal
enters GRPO as a per-token advantage A_t = -d_t. For one on-policy update that has exactly the gradient of the paper's
loss token-mean(d_t * log pi_theta(y_t)) (the PPO ratio is 1 and unclipped; tests/test_baselines.py checks it), and it
gets the loop's logging, evaluation and checkpoints for free.
"""

import os
import sys
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

import train_stage1
from config import Args, check_args
from domains.problems import encode_prompts, policy_messages, question_text
from domains.records import Problem
from evaluate import evaluate, format_pass_at_k
from grpo import token_logprobs
from plumbing.cli import check_flags, fail, parse_cli
from plumbing.common import (
    check_model_path,
    load_model,
    load_problem_set,
    save_checkpoint,
    seed_everything,
    set_threads,
    write_json,
)
from plumbing.logs import MetricsLog
from rollout import Rollout, to_batch
from scale import distributed


# ---------------------------------------------------------------------------------------------------- SFT
@dataclass
class SFTArgs:
    model: str = field(default="toy", metadata={"help": "starting model: 'toy' or a save_pretrained directory"})
    train_data: str = field(
        default="toy:train", metadata={"help": "(question, reference) pairs: 'toy:train', JSONL or an HF dataset"}
    )
    eval_data: str = field(default="toy:heldout", metadata={"help": "held-out problems for pass@k ('' to skip)"})
    output_dir: str = field(
        default="runs/sft", metadata={"help": "run directory: config.json, metrics.jsonl, eval/, checkpoint/"}
    )
    epochs: int = field(default=2, metadata={"help": "passes over the training pairs (paper: 2)"})
    batch_size: int = field(default=32, metadata={"help": "pairs per optimiser step (paper: 32)"})
    micro_batch_size: int = field(
        default=32, metadata={"help": "rows per forward/backward (memory only; the gradient is the same)"}
    )
    lr: float = field(
        default=1e-4,
        metadata={"help": "AdamW learning rate, constant (paper: 1e-6, the same as its RL lr; the toy RL lr is 1e-4)"},
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature for evaluation"})
    max_new_tokens: int = field(default=160, metadata={"help": "response length limit for evaluation"})
    eval_before: bool = field(default=True, metadata={"help": "evaluate the starting model too"})
    eval_n: int = field(default=64, metadata={"help": "samples per held-out problem for pass@k"})
    eval_limit: int = field(default=64, metadata={"help": "held-out problems evaluated (0 = all)"})
    seed: int = field(default=0, metadata={"help": "seeds data order, Python, NumPy, torch and sampling"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads (0 = torch default)"})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "cpu | cuda"})


def sft_batch(tokenizer, problems: list[Problem]) -> dict[str, torch.Tensor]:
    """(policy prompt, reference) pairs -> right-padded input_ids / attention_mask / labels, each [B, L].

    The prompt is the policy's own (system + question, domains.problems.policy_messages), so SFT teaches the policy to
    answer its usual prompt with the reference; labels are -100 on the prompt and padding: the loss is on reference
    tokens only.
    Example (prompt ids [5, 6], reference ids [8] + EOS 1): input_ids [5, 6, 8, 1], labels [-100, -100, 8, 1].
    """
    prompts = encode_prompts(tokenizer, [policy_messages(p) for p in problems])
    rows = [
        (prompt, tokenizer(p.reference, add_special_tokens=False).input_ids + [tokenizer.eos_token_id])
        for prompt, p in zip(prompts, problems)
    ]
    width = max(len(prompt) + len(target) for prompt, target in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # [B, L]
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # [B, L]
    labels = torch.full((len(rows), width), -100, dtype=torch.long)  # [B, L]
    for i, (prompt, target) in enumerate(rows):
        n = len(prompt) + len(target)
        input_ids[i, :n] = torch.tensor(prompt + target)
        attention_mask[i, :n] = 1
        labels[i, len(prompt) : n] = torch.tensor(target)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def sft_step(model, optimizer, batch: dict, micro_batch_size: int, max_grad_norm: float, active: bool = True) -> dict:
    """One optimiser step of token-mean cross-entropy over the batch's reference tokens, micro-batched.

    Each micro-batch's summed loss is divided by the token count of the WHOLE batch, so the gradient does not depend
    on micro_batch_size. Under torchrun each rank passes its own rows of the global batch: the token count is summed
    over ranks and the loss multiplied by the world size (DDP averages gradients), so the synchronised gradient is the
    one a single process gets on the global batch. Every rank runs the same number of micro-batches, as DDP requires:
    a rank with fewer rows (or none: active=False) runs zero-weighted ones.
    """
    world = distributed.world_size()
    local_tokens = int((batch["labels"][:, 1:] != -100).sum()) if active else 0
    num_tokens = max(distributed.all_reduce_sum(local_tokens), 1)
    rows = batch["input_ids"].shape[0]
    num_micro = max(distributed.all_gather_object(-(-rows // micro_batch_size)))
    total = 0.0
    for j in range(num_micro):
        mb = {k: v[j * micro_batch_size : (j + 1) * micro_batch_size] for k, v in batch.items()}
        weight = float(active and mb["input_ids"].shape[0] > 0)
        if mb["input_ids"].shape[0] == 0:
            mb = {k: v[:1] for k, v in batch.items()}  # a stand-in row, weighted 0
        logits = model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"]).logits[:, :-1]  # [b, L-1, V]
        loss = torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1), mb["labels"][:, 1:].flatten(), ignore_index=-100, reduction="sum"
        ) * (weight * world / num_tokens)
        loss.backward()
        total += loss.item() / world
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": distributed.all_reduce_sum(total), "grad_norm": float(grad_norm), "tokens": num_tokens}


def check_sft_args(args: SFTArgs) -> None:
    """Numbers in range and the starting model present; the first bad flag stops with one line (exit status 2)."""
    rules = [
        ("epochs", args.epochs >= 1, ">= 1"),
        ("batch_size", args.batch_size >= 1, ">= 1"),
        ("micro_batch_size", args.micro_batch_size >= 1, ">= 1"),
        ("lr", 0 < args.lr < float("inf"), "> 0 and finite"),
        ("weight_decay", args.weight_decay >= 0, ">= 0"),
        ("max_grad_norm", args.max_grad_norm > 0, "> 0"),
        ("temperature", 0 < args.temperature < float("inf"), "> 0 and finite"),
        ("max_new_tokens", args.max_new_tokens >= 1, ">= 1"),
        ("eval_n", args.eval_n >= 1, ">= 1"),
        ("eval_limit", args.eval_limit >= 0, ">= 0"),
        ("threads", args.threads >= 0, ">= 0"),
    ]
    check_flags(args, rules)
    check_model_path(args.model, "--model")


def train_sft(args: SFTArgs) -> dict:
    """SFT on (question -> reference) for `epochs` passes in a seeded order; evaluates before and after.

    Runs as one process or under torchrun (DDP; rank r takes rows r, r + N, ... of each batch; rank 0 logs,
    evaluates and saves).
    """
    check_sft_args(args)
    problems = load_problem_set(args.train_data, flag="--train_data")  # checked before anything is written
    eval_problems = (
        load_problem_set(args.eval_data, limit=args.eval_limit or None, flag="--eval_data", require_reference=False)
        if args.eval_data
        else []
    )
    distributed.init()
    main_rank = distributed.is_main()
    eval_problems = eval_problems if main_rank else []
    set_threads(args.threads)
    seed_everything(args.seed)
    if main_rank:
        os.makedirs(args.output_dir, exist_ok=True)
        write_json(os.path.join(args.output_dir, "config.json"), asdict(args))
    policy, tokenizer = load_model(args.model, device=args.device)
    model = distributed.wrap_model(policy, "ddp")  # no-op in one process
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    log = MetricsLog(os.path.join(args.output_dir, "metrics.jsonl")) if main_rank else None
    evals = {"before": _eval(args, policy, tokenizer, eval_problems, step=0) if args.eval_before else None}
    orders = distributed.broadcast_object([torch.randperm(len(problems)).tolist() for _ in range(args.epochs)])
    batches = [
        (epoch, order[i : i + args.batch_size])
        for epoch, order in enumerate(orders)
        for i in range(0, len(problems), args.batch_size)
    ]
    rank, world = distributed.rank(), distributed.world_size()
    model.train()
    for step, (epoch, idx) in enumerate(tqdm(batches, desc="sft", dynamic_ncols=True, disable=not main_rank), start=1):
        mine = idx[rank::world]  # this rank's rows (all of them in one process)
        batch = {k: v.to(args.device) for k, v in sft_batch(tokenizer, [problems[i] for i in mine or idx[:1]]).items()}
        metrics = sft_step(
            model,
            optimizer,
            batch,
            micro_batch_size=args.micro_batch_size,
            max_grad_norm=args.max_grad_norm,
            active=bool(mine),
        )
        if main_rank:
            log.log(step, {"epoch": epoch, **metrics})
    if main_rank:
        save_checkpoint(policy, tokenizer, os.path.join(args.output_dir, "checkpoint"))
        evals["after"] = _eval(args, policy, tokenizer, eval_problems, step=len(batches))
    distributed.barrier()
    distributed.cleanup()
    return evals


def _eval(args: SFTArgs, model, tokenizer, problems, step: int) -> dict | None:
    if not problems:
        return None
    model.eval()
    result = evaluate(
        model,
        problems,
        n=args.eval_n,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        tokenizer=tokenizer,
        output_dir=os.path.join(args.output_dir, "eval", f"step_{step:04d}"),
        step=step,
        seed=args.seed,  # draws fixed by (seed, problems, weights), as in the RL runs
    )
    tqdm.write(f"[eval step_{step:04d}] {format_pass_at_k(result)}")
    return result


# ------------------------------------------------------------------------------------------- self-distillation
TEACHER_INSTRUCTION = "Above is a reference solution. Solve the problem in your own way."


def teacher_messages(problem: Problem) -> list[dict[str, str]]:
    """The teacher's context (docs/paper.md, "Baselines"): one user turn with the problem, the reference, and an
    instruction to solve the problem in its own way. Only the teacher sees this; the student samples from
    policy_messages."""
    content = f"{question_text(problem)}\nReference solution: {problem.reference}\n{TEACHER_INSTRUCTION}"
    return [{"role": "user", "content": content}]


def response_logprobs(
    model, rollouts: list[Rollout], pad_id: int, micro_batch_size: int, temperature: float
) -> torch.Tensor:
    """Log-probs of each rollout's response tokens under `model`, in a [B, R] layout that does not depend on the
    prompts (column j = response token j), so that two different contexts can be compared token by token."""
    batch = to_batch(rollouts, pad_id)
    width = max(1, max(len(r.response_ids) for r in rollouts))  # R
    with torch.no_grad():
        logprobs = token_logprobs(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["response_mask"],
            micro_batch_size=micro_batch_size,
            temperature=temperature,
        )  # [B, P + R]
    return logprobs[:, -width:]  # [B, R]


def distill_signal(
    student,
    teacher,
    rollouts: list[Rollout],
    teacher_prompt_ids: list[list[int]],
    pad_id: int,
    micro_batch_size: int = 64,
    temperature: float = 1.0,
) -> list[torch.Tensor]:
    """Per-token d_t = log pi_student(y_t | question) - log pi_teacher(y_t | question + reference), detached.

    One tensor [len(response_ids)] per rollout. d_t > 0 where the student is more confident than the
    reference-informed teacher; minimising token-mean(d_t * log pi_theta) lowers those tokens (reverse KL to the
    teacher). With teacher = student and the same prompt, d_t = 0 exactly.
    """
    student_lp = response_logprobs(student, rollouts, pad_id, micro_batch_size, temperature=temperature)  # [B, R]
    in_teacher_context = [Rollout(p, r.response_ids, r.text, r.truncated) for p, r in zip(teacher_prompt_ids, rollouts)]
    teacher_lp = response_logprobs(
        teacher, in_teacher_context, pad_id, micro_batch_size, temperature=temperature
    )  # [B, R]
    return [(student_lp[i] - teacher_lp[i])[: len(r.response_ids)] for i, r in enumerate(rollouts)]


class DistillTeacher:
    """The frozen base with the reference in context; train_stage1.main calls it where the judge would be called.

    `teacher(student, problems, rollouts)` returns (per-token advantages A_t = -d_t, one tensor per rollout, and the
    mean d_t over the step's response tokens). That mean, logged as "judge_score", is a per-token estimate of
    KL(student || teacher): it should fall as the student moves toward the teacher.
    """

    def __init__(self, model: str, device: str = "cpu", micro_batch_size: int = 64, temperature: float = 1.0):
        teacher, self.tokenizer = load_model(model, device=device)  # the starting model, also after --resume
        self.teacher = teacher.eval().requires_grad_(False)
        self.micro_batch_size, self.temperature = micro_batch_size, temperature

    def __call__(self, student, problems: list[Problem], rollouts: list[Rollout]) -> tuple[list[torch.Tensor], float]:
        prompts = encode_prompts(self.tokenizer, [teacher_messages(p) for p in problems])
        d = distill_signal(
            student,
            self.teacher,
            rollouts,
            prompts,
            pad_id=self.tokenizer.pad_token_id,
            micro_batch_size=self.micro_batch_size,
            temperature=self.temperature,
        )
        num_tokens = sum(len(x) for x in d)
        return [-x for x in d], float(sum(x.sum() for x in d)) / max(num_tokens, 1)


@dataclass
class DistillArgs(Args):
    reward: str = field(
        default="self_distill", metadata={"help": "self-distillation (fixed)", "choices": ["self_distill"]}
    )
    judge: str = field(
        default="", metadata={"help": "unused: the teacher is the frozen start model with the reference"}
    )
    output_dir: str = field(default="runs/self_distill", metadata={"help": "run directory"})
    lr: float = field(
        default=1e-5, metadata={"help": "AdamW lr (paper: 1e-7, a tenth of its RL lr; the toy RL lr is 1e-4)"}
    )
    kl_coef: float = field(default=0.0, metadata={"help": "no KL term (paper)"})
    updates_per_step: int = field(
        default=1, metadata={"help": "must stay 1: the A = -d gradient identity needs on-policy", "choices": [1]}
    )


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("sft", "self_distill"):
        fail("usage: python baselines.py sft|self_distill [--flag value ...]  (--help after the command)")
    command, rest = argv[0], argv[1:]
    if command == "sft":
        return train_sft(parse_cli(SFTArgs, rest)[0])
    args, _ = parse_cli(DistillArgs, rest)
    check_args(args)
    check_model_path(args.model, "--model")  # before the teacher loads it
    teacher = DistillTeacher(args.model, args.device, args.micro_batch_size, args.temperature)
    return train_stage1.main(args, teacher=teacher)


if __name__ == "__main__":
    main()
