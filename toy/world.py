"""The embedded toy world: ExpRL end to end on a laptop CPU, through the same code paths as a real run.

The task: start from a number (10..99) and apply a chain of operations left to right (+a and -a with a in 2..9, and
*2), all values in 0..999.
The model's own solution style writes one step per segment, segments closed by "###" (the delimiter that process
judging slices at), and the final answer in \\boxed{}:

    question : 47 +8 *2 -5 +3           (apply left to right)
    model    : 47+8=55###55*2=110###110-5=105###105+3=108###\\boxed{108}
    reference: Add 8, then double: that gives 110. Subtract 5, then add 3: that gives 108. The answer is 108.

The reference is written like a human solution: words, not symbols, two operations per sentence, intermediate
results only every second step. SFT on references therefore has to imitate a style far from the model's own, while the
judge reads the reference's stated results as its checkpoints.

EASY problems (few operations) pretrain the base model in its own style; HARD problems (longer chains of the same
operations) are the Stage-I set: the base gets the first steps right and loses the thread later, so it has partial
progress but (after mining) never a fully correct answer, the situation ExpRL is built for.

Also here: a character-level tokenizer and a tiny Llama model as Hugging Face objects (save_pretrained round-trip,
chat template included), and `pretrain_base`. The toy judges (the rubric judge that stands in for the LLM judge,
the progress-counting checkpoint judge, the no-reference judge) are in toy/llm_like_judge.py and re-exported here.
"""

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import HfArgumentParser, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from domains.records import Problem
from plumbing.common import save_checkpoint
from toy.exact_judges import CheckpointJudge, NoReferenceJudge, RubricJudge, count_in_order, likert  # noqa: F401

# The judges read the texts this file writes (toy/reading.py); they live in toy/llm_like_judge.py and
# toy/exact_judges.py and are re-exported here, so `from toy import CheckpointJudge` keeps working. apply_op (one step
# of the task) is shared.
from toy.llm_like_judge import LLMLikeJudge  # noqa: F401
from toy.reading import BOXED, EQUATION, apply_op, reference_checkpoints, stated_results  # noqa: F401

# ----------------------------------------------------------------------------------------------- the task
MAX_VALUE = 999
OP_WORDS = {"+": "add {a}", "-": "subtract {a}", "*": "double"}


def random_chain(rng: random.Random, num_ops: int, max_operand: int = 9) -> tuple[int, list[tuple[str, int]]]:
    """A start value in 10..99 and `num_ops` operations that keep every intermediate value in 0..MAX_VALUE.

    Doubling is only drawn where it stays in range; +/- operands are 2..max_operand.
    """
    value = start = rng.randint(10, 99)
    ops = []
    for _ in range(num_ops):
        choices = ["+", "-"] + (["*"] if value * 2 <= MAX_VALUE else [])
        op = rng.choice(choices)
        operand = 2 if op == "*" else rng.randint(2, max_operand)
        if op == "+" and value + operand > MAX_VALUE or op == "-" and value - operand < 0:
            op = "-" if op == "+" else "+"
        ops.append((op, operand))
        value = apply_op(value, op, operand)
    return start, ops


def question_text(start: int, ops: list[tuple[str, int]]) -> str:
    """The start value, then the operations to apply left to right (short: every prompt token costs compute)."""
    return f"{start} " + " ".join(f"{op}{a}" for op, a in ops)


def intermediate_values(start: int, ops: list[tuple[str, int]]) -> list[int]:
    values, value = [], start
    for op, a in ops:
        value = apply_op(value, op, a)
        values.append(value)
    return values


def model_solution(start: int, ops: list[tuple[str, int]]) -> str:
    """The model's own style: one equation per "###"-closed segment, then the boxed answer."""
    steps, value = [], start
    for (op, a), result in zip(ops, intermediate_values(start, ops)):
        steps.append(f"{value}{op}{a}={result}")
        value = result
    return "###".join(steps) + "###\\boxed{" + str(value) + "}"


def reference_solution(start: int, ops: list[tuple[str, int]]) -> str:
    """A human-style reference: words, two operations per sentence, results stated only at sentence ends."""
    values = intermediate_values(start, ops)
    sentences = []
    for i in range(0, len(ops), 2):
        words = [OP_WORDS[op].format(a=a) for op, a in ops[i : i + 2]]
        sentence = ", then ".join(words)
        sentences.append(f"{sentence[0].upper()}{sentence[1:]}: that gives {values[min(i + 1, len(ops) - 1)]}.")
    return " ".join(sentences) + f" The answer is {values[-1]}."


def make_toy_problems(
    n: int, min_ops: int, max_ops: int, seed: int, prefix: str = "toy", max_operand: int = 9
) -> list[Problem]:
    """n seeded problems with min_ops..max_ops operations, in the record format domains/problems.py loads."""
    rng = random.Random(seed)
    problems = []
    for i in range(n):
        start, ops = random_chain(rng, rng.randint(min_ops, max_ops), max_operand)
        problems.append(
            Problem(
                id=f"{prefix}-{seed}-{i}",
                question=question_text(start, ops),
                reference=reference_solution(start, ops),
                answer=str(intermediate_values(start, ops)[-1]),
            )
        )
    return problems


def parse_question(question: str) -> tuple[int, list[tuple[str, int]]]:
    """Inverse of question_text (used to write model-style solutions for pretraining)."""
    start, *ops = question.split()
    return int(start), [(tok[0], int(tok[1:])) for tok in ops]


# ------------------------------------------------------------------------------------ tokenizer and model
SPECIAL_TOKENS = ["<pad>", "<eos>", "<|user|>", "<|assistant|>"]
MULTI_CHAR_TOKENS = ["###", "\\boxed{"]  # single tokens, so a step boundary is one token
CHARS = (
    list("0123456789+-*=:.,;!?'\"()[]{}\\/<>_#$%&^| ")
    + list("abcdefghijklmnopqrstuvwxyz")
    + list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + ["\n"]
)
# The toy model has no system role: the template keeps the user turn only (the system prompt, docs/paper.md,
# "Policy prompt", is still passed by domains.problems.policy_messages, as it is for real models, and simply not
# rendered here).
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}<eos>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer (plus "###" and "\\boxed{" as whole tokens) with a chat template; no download."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + MULTI_CHAR_TOKENS + CHARS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="?"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")  # every character its own token
    core.decoder = decoders.Fuse()  # join without spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="?", chat_template=CHAT_TEMPLATE
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[2:]})
    tokenizer.add_tokens(MULTI_CHAR_TOKENS)  # matched before the per-character split
    return tokenizer


def build_tiny_model(tokenizer, hidden_size: int = 128, num_layers: int = 4, seed: int = 0) -> LlamaForCausalLM:
    """A tiny Llama (head_dim 64, which vLLM's CPU backend also accepts), built from a config."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=hidden_size // 64,
        num_key_value_heads=hidden_size // 64,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


# ------------------------------------------------------------------------------------------- pretraining
@dataclass
class PretrainArgs:
    output_dir: str = field(default="toy_base", metadata={"help": "where the pretrained base is saved (and reused)"})
    steps: int = field(default=1200, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=64, metadata={"help": "sequences per step"})
    lr: float = field(default=2e-3, metadata={"help": "peak AdamW learning rate (linear warm-up, cosine decay)"})
    min_ops: int = field(default=1, metadata={"help": "fewest operations in an EASY problem"})
    max_ops: int = field(default=4, metadata={"help": "most operations in an EASY problem"})
    long_fraction: float = field(
        default=0.05,
        metadata={
            "help": "share of longer chains (max_ops+1 .. long_max_ops) so the base attempts long problems at all"
        },
    )
    long_max_ops: int = field(
        default=7, metadata={"help": "most operations in the long share (HARD problems have more)"}
    )
    max_operand: int = field(default=9, metadata={"help": "largest +/- operand"})
    hidden_size: int = field(default=128, metadata={"help": "model width"})
    num_layers: int = field(default=4, metadata={"help": "transformer layers"})
    seed: int = field(default=0, metadata={"help": "seeds data, initialisation and training"})


def sft_batch(tokenizer, prompts: list[str], completions: list[str]) -> dict[str, torch.Tensor]:
    """(user text, assistant text) pairs -> right-padded input_ids/attention_mask/labels; loss on the completion."""
    rows, label_rows = [], []
    for prompt, completion in zip(prompts, completions):
        prompt_ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        completion_ids = tokenizer(completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        rows.append(list(prompt_ids) + completion_ids)
        label_rows.append([-100] * len(prompt_ids) + completion_ids)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)  # [B, L]
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # [B, L]
    labels = torch.full((len(rows), width), -100)  # [B, L]
    for i, (r, lab) in enumerate(zip(rows, label_rows)):
        input_ids[i, : len(r)] = torch.tensor(r)
        attention_mask[i, : len(r)] = 1
        labels[i, : len(lab)] = torch.tensor(lab)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pretraining_problems(args: PretrainArgs, rng: random.Random) -> tuple[list[str], list[str]]:
    """One batch of (question, model-style solution) pairs: mostly EASY chains, a small share of longer ones."""
    questions, solutions = [], []
    for _ in range(args.batch_size):
        long = rng.random() < args.long_fraction
        num_ops = rng.randint(args.max_ops + 1, args.long_max_ops) if long else rng.randint(args.min_ops, args.max_ops)
        start, ops = random_chain(rng, num_ops, args.max_operand)
        questions.append(question_text(start, ops))
        solutions.append(model_solution(start, ops))
    return questions, solutions


def train_on_batches(model, next_batch, steps: int, lr: float, log_every: int = 100) -> float:
    """`steps` supervised updates on next_batch() (an sft_batch): AdamW (weight decay 0.01, betas 0.9 / 0.95), a
    linear warm-up over steps / 20, then cosine decay to 10% of `lr`, gradients clipped at norm 1. Returns seconds."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)
    schedule = lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * s / steps)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start_time = time.time()
    for step in range(steps):
        loss = model(**next_batch()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % log_every == 0 or step == steps - 1:
            print(f"pretrain step {step:5d}  loss {loss.item():.4f}  {time.time() - start_time:6.1f}s", flush=True)
    return time.time() - start_time


def pretrain_base(args: PretrainArgs) -> str:
    """Supervised pretraining of the tiny model on EASY problems in its own style; reused when already on disk.

    The base is cached by its arguments: a directory whose toy_info.json records the same PretrainArgs is returned
    as is, so the quickstart pays for pretraining once.
    """
    info_path = os.path.join(args.output_dir, "toy_info.json")
    if os.path.exists(info_path):
        with open(info_path) as f:
            if json.load(f).get("pretrain_args") == asdict(args):
                return args.output_dir
    rng = random.Random(args.seed)
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, args.hidden_size, args.num_layers, seed=args.seed)
    seconds = train_on_batches(
        model, lambda: sft_batch(tokenizer, *pretraining_problems(args, rng)), args.steps, args.lr
    )
    info = {"pretrain_args": asdict(args), "seconds": round(seconds, 1)}
    save_checkpoint(model, tokenizer, args.output_dir, extra_files={"toy_info.json": info})
    return args.output_dir


# ---------------------------------------------------------------------------------- diagnostics and the CLI
def steps_correct(response: str, question: str) -> int:
    """How many leading steps of a model-style response are exactly right (the per-step diagnostic).

    Example: steps_correct("27*2=54###54+34=89###", "27 *2 +34") -> 1
    """
    start, ops = parse_question(question)
    expected = model_solution(start, ops).split("###")
    got = response.split("###")
    k = 0
    while k < min(len(ops), len(got)) and got[k] == expected[k]:
        k += 1
    return k


@dataclass
class DataArgs:
    base: str = field(default="toy_base", metadata={"help": "the pretrained base used for mining"})
    output_dir: str = field(default="toy_data", metadata={"help": "where stage1_train.jsonl / heldout.jsonl go"})
    num_candidates: int = field(default=320, metadata={"help": "HARD problems generated before mining"})
    num_heldout: int = field(default=128, metadata={"help": "fresh HARD problems for evaluation (not mined)"})
    num_easy: int = field(default=128, metadata={"help": "EASY problems (for checking the base)"})
    hard_ops: int = field(default=8, metadata={"help": "operations in a HARD problem"})
    max_operand: int = field(default=9, metadata={"help": "largest +/- operand (use the base's pretraining value)"})
    mine_k: int = field(default=512, metadata={"help": "keep the problems the base solves 0 times in mine_k samples"})
    mine_round: int = field(
        default=64, metadata={"help": "samples per problem per mining round; a problem leaves at its first correct one"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature for mining"})
    seed: int = field(default=1, metadata={"help": "problem seed (training problems use seed, held-out seed + 1)"})


def make_data(args: DataArgs) -> dict:
    """Generate HARD candidates, keep the ones the base never solves in mine_k samples (docs/paper.md, "Data": the
    paper uses 64; the toy uses 512 so that "never solved" is hard: a problem that survives 64 samples is often solved
    within 512).

    Mining runs in rounds of mine_round fresh samples per surviving problem and drops a problem at its first correct
    sample, so the kept set is exactly "0 correct in mine_k samples" at a fraction of mine_k x candidates samples.
    """
    from domains.problems import mine_hard, save_problems
    from evaluate import evaluate
    from plumbing.common import load_model, seed_everything

    seed_everything(args.seed)
    model, tokenizer = load_model(args.base)
    hard, m = args.hard_ops, args.max_operand
    candidates = make_toy_problems(args.num_candidates, hard, hard, args.seed, "hard", max_operand=m)
    heldout = make_toy_problems(args.num_heldout, hard, hard, args.seed + 1, "heldout", max_operand=m)
    easy = make_toy_problems(args.num_easy, 1, 4, args.seed + 2, "easy", max_operand=m)
    train, drawn, survivors, seconds = candidates, 0, [], 0.0
    while drawn < args.mine_k and train:
        n = min(args.mine_round, args.mine_k - drawn)
        mined = evaluate(model, train, n=n, temperature=args.temperature, tokenizer=tokenizer)
        train = mine_hard(train, mined["correct_counts"])
        drawn, seconds = drawn + n, seconds + mined["seconds"]
        survivors.append((drawn, len(train)))
        print(f"mining: {len(train)} of {len(candidates)} unsolved after {drawn} samples each", flush=True)
    save_problems(train, os.path.join(args.output_dir, "stage1_train.jsonl"))
    save_problems(heldout, os.path.join(args.output_dir, "heldout.jsonl"))
    save_problems(easy, os.path.join(args.output_dir, "easy.jsonl"))
    report = {
        "candidates": len(candidates),
        "kept": len(train),
        "mine_k": args.mine_k,
        "survivors_per_round": dict(survivors),  # samples drawn per problem -> problems still unsolved
        "seconds": round(seconds, 1),
    }
    print(json.dumps(report, indent=2))
    return report


@dataclass
class SplitArgs:
    output: str = field(default="toy_data/test.jsonl", metadata={"help": "where the test split is written"})
    num_problems: int = field(default=128, metadata={"help": "fresh HARD problems in the test split"})
    hard_ops: int = field(default=8, metadata={"help": "operations per problem (the held-out difficulty)"})
    max_operand: int = field(default=9, metadata={"help": "largest +/- operand"})
    seed: int = field(default=1004, metadata={"help": "seed no other file uses (1 train, 2 held-out; 1001-3 retired)"})


def make_test_split(args: SplitArgs, others: list[str]) -> list[Problem]:
    """The untouched test split: fresh HARD problems at the held-out difficulty from an unused seed, none sharing a
    question with the files in `others` (drawn until num_problems distinct new ones). Not mined, like the held-out
    set. It is read by the final reproduction only (docs/toy-world.md, "Splits")."""
    from domains.problems import load_problems, save_problems

    taken = {p.question for path in others for p in load_problems(path)}
    pool = make_toy_problems(
        4 * args.num_problems, args.hard_ops, args.hard_ops, args.seed, "test", max_operand=args.max_operand
    )
    fresh = []
    for p in pool:
        if p.question not in taken and len(fresh) < args.num_problems:
            taken.add(p.question)
            fresh.append(p)
    save_problems(fresh, args.output)
    return fresh


if __name__ == "__main__":
    import sys

    from plumbing.common import set_threads

    command = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if command == "pretrain":
        (pretrain_args,) = HfArgumentParser(PretrainArgs).parse_args_into_dataclasses()
        set_threads(2)
        print(f"saved {pretrain_base(pretrain_args)}")
    elif command == "data":
        (data_args,) = HfArgumentParser(DataArgs).parse_args_into_dataclasses()
        set_threads(2)
        make_data(data_args)
    elif command == "test":
        (test_args,) = HfArgumentParser(SplitArgs).parse_args_into_dataclasses()
        folder = os.path.dirname(test_args.output)
        others = [os.path.join(folder, f) for f in ("stage1_train.jsonl", "heldout.jsonl", "easy.jsonl")]
        print(f"wrote {len(make_test_split(test_args, others))} problems to {test_args.output}")
    else:
        sys.exit(
            "usage: python -m toy.world pretrain [--output_dir toy_base ...] | "
            "python -m toy.world data [--base toy_base ...] | "
            "python -m toy.world test [--output toy_data/test.jsonl ...]"
        )
