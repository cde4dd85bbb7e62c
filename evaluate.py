"""Evaluation: the unbiased pass@k estimator and pass@k curves (docs/paper.md, "Evaluation").

The paper samples n = 128 responses per problem at temperature 0.8 and reports pass@1, pass@16 and curves over
k = 2^1..2^7. It does not name its estimator; we use the unbiased one of Chen et al. (2021), "Evaluating Large
Language Models Trained on Code", Eq. 1.
"""

import contextlib
import json
import os
import time
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021, Eq. 1).

    This is the chance that k samples drawn without replacement from the n contain at least one correct one. The
    binomials overflow floats for n = 128, so we use the product form
        C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i),
    which is exactly 1.0 when n - c < k (every k-subset holds a correct sample).

    Example (n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6):
        >>> pass_at_k(4, 1, 2)
        0.5
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if value < 0:
            raise ValueError(f"pass_at_k: {name} must be >= 0, got {value}")
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} exceeds the number of samples n={n}")
    if c > n:
        raise ValueError(f"pass_at_k: c={c} correct exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    all_wrong = 1.0  # probability that all k drawn samples are wrong
    for i in range(n - c + 1, n + 1):
        all_wrong *= 1.0 - k / i
    return 1.0 - all_wrong


def pass_at_k_curve(correct_counts: Sequence[int], n: int, ks: Sequence[int]) -> dict[int, float]:
    """Mean over problems of pass_at_k(n, c, k), for each k in ks; every problem has the same n samples.

    Example (two problems, n=4, c=1 and c=0; pass@2 = (0.5 + 0.0) / 2):
        >>> pass_at_k_curve([1, 0], n=4, ks=[1, 2])
        {1: 0.125, 2: 0.25}
    """
    if len(correct_counts) == 0:
        raise ValueError("pass_at_k_curve: no problems (correct_counts is empty)")
    return {k: sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts) for k in ks}


# docs/paper.md, "Reporting by domain": Table 4's aggregate columns; code at pass@1 and pass@4.
DOMAIN_GROUPS = {"math": "Math-Agg", "science": "STEM-Agg", "code": "Code"}
CODE_KS = (1, 4)


def domain_pass_at_k(domains: Sequence[str], correct_counts: Sequence[int], n: int, ks: Sequence[int]) -> dict:
    """pass@k per domain group, as the paper's Table 4: {group: {"domain", "num_problems", "pass@k"}} for the groups
    present (Math-Agg = math problems, STEM-Agg = science, Code = code, at pass@1 and pass@4 where n allows).

    Example (math c = 1 and 0 of n = 4: pass@1 = (1/4 + 0) / 2; code c = 2: pass@1 = 2/4, pass@4 = 1):
        >>> domain_pass_at_k(["math", "math", "code"], [1, 0, 2], n=4, ks=[1, 2, 4])["Code"]["pass@k"]
        {'1': 0.5, '4': 1.0}
        >>> domain_pass_at_k(["math", "math", "code"], [1, 0, 2], n=4, ks=[1, 2, 4])["Math-Agg"]["pass@k"]["1"]
        0.125
    """
    table = {}
    for domain, group in DOMAIN_GROUPS.items():
        counts = [c for d, c in zip(domains, correct_counts) if d == domain]
        if counts:
            group_ks = [k for k in CODE_KS if k <= n] if domain == "code" else ks
            curve = pass_at_k_curve(counts, n, group_ks)
            table[group] = {
                "domain": domain,
                "num_problems": len(counts),
                "pass@k": {str(k): v for k, v in curve.items()},
            }
    return table


def powers_of_two(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n (the paper's pass@k curve grid), plus n itself."""
    ks = [2**i for i in range(n.bit_length()) if 2**i <= n]
    return ks if ks[-1] == n else ks + [n]


@contextlib.contextmanager
def fixed_draws(seed: int | None, sampler=None):
    """Evaluation draws fixed by `seed` alone, and the caller's random streams left as they were.

    Inside, torch's global generator (which HF generate samples with) starts from `seed`, and a vLLM sampler's seed
    stream (rollout.VLLMSampler.seeds) is a fresh one from `seed`; on exit both are restored. So an evaluation depends
    on (seed, problems, weights) only: the same weights score the same wherever in a run they are evaluated, and
    training after an evaluation draws exactly what it would have drawn without it. seed None: no fixing (the draws
    follow the caller's stream, as mining wants: each round fresh samples).
    """
    if seed is None:
        yield
        return
    import torch

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    saved = getattr(sampler, "seeds", None)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if saved is not None:
            sampler.seeds = torch.Generator().manual_seed(seed)
        try:
            yield
        finally:
            if saved is not None:
                sampler.seeds = saved


def evaluate(
    model,
    problems,
    n: int = 64,
    ks: Sequence[int] | None = None,
    temperature: float = 1.0,
    max_new_tokens: int = 160,
    tokenizer=None,
    output_dir: str | None = None,
    step: int = 0,
    batch_size: int = 256,
    sampler=None,
    rollouts_path: str | None = None,
    seed: int | None = None,
) -> dict:
    """Sample n responses per problem (question-only prompt), grade them with domains.rule_rewards.rule_reward (the
    final answer, the option letter, or the tests in the sandbox), return pass@k.

    `model` is a save_pretrained directory (or 'toy') or a loaded model (then pass its tokenizer). With output_dir,
    writes output_dir/pass_at_k.json = {"step", "n", "num_problems", "pass@k": {"1": ..., "2": ...},
    "correct_counts", "seconds"}, and, when a problem is not math, "domains": pass@k per domain group
    (domain_pass_at_k). `sampler` (e.g. a VLLMSampler holding the same weights) replaces the default
    HFSampler on `model`. `seed` fixes the draws (fixed_draws: the result depends on seed, problems and weights
    only, and the caller's random state is untouched); None samples from the caller's stream. With rollouts_path,
    also writes every rollout as one JSONL line {"id", "question", "reference", "answer", "response", "correct",
    "truncated"} (and "domain" when not math; the question as the judge reads it, domains.problems.question_text): the
    fixed rollouts the analyses (analysis/) read.
    """
    from domains.problems import encode_prompts, policy_messages, question_text
    from domains.rule_rewards import rule_rewards
    from plumbing.common import load_model, write_json  # imported here: pass_at_k above needs no torch
    from rollout import HFSampler

    if isinstance(model, str):
        model, tokenizer = load_model(model)
    ks = list(ks) if ks is not None else powers_of_two(n)
    start = time.time()
    sampler = sampler or HFSampler(
        model, tokenizer, max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size
    )
    with fixed_draws(seed, sampler):
        rollouts = sampler.sample(
            encode_prompts(tokenizer, [policy_messages(p) for p in problems]),
            n=n,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
        )
    correct = rule_rewards([problems[i // n] for i in range(len(rollouts))], [r.text for r in rollouts])
    counts = [int(sum(correct[i * n : (i + 1) * n])) for i in range(len(problems))]
    result = {
        "step": step,
        "n": n,
        "num_problems": len(problems),
        "pass@k": {str(k): v for k, v in pass_at_k_curve(counts, n, ks).items()},
        "correct_counts": counts,
        "seconds": round(time.time() - start, 1),
    }
    if any(p.domain != "math" for p in problems):  # a math-only set keeps exactly the fields above
        result["domains"] = domain_pass_at_k([p.domain for p in problems], counts, n, ks)
    if output_dir is not None:
        write_json(os.path.join(output_dir, "pass_at_k.json"), result)
    if rollouts_path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(rollouts_path)), exist_ok=True)
        with open(rollouts_path, "w") as f:
            for i, (r, ok) in enumerate(zip(rollouts, correct)):
                p = problems[i // n]
                row = {"id": p.id, "question": question_text(p), "reference": p.reference, "answer": p.answer}
                row |= {"response": r.text, "correct": bool(ok), "truncated": r.truncated}
                f.write(json.dumps(row | ({"domain": p.domain} if p.domain != "math" else {})) + "\n")
    return result


def format_pass_at_k(result: dict) -> str:
    """One line: 'pass@1 0.055  pass@2 0.090 ...'."""
    return "  ".join(f"pass@{k} {v:.3f}" for k, v in result["pass@k"].items())


def format_domains(result: dict) -> str:
    """One line per domain group (Table 4's aggregates), e.g. 'Code (code, 2 problems):  pass@1 0.250  pass@4 0.500'."""
    return "\n".join(
        f"{group} ({row['domain']}, {row['num_problems']} problems):  {format_pass_at_k(row)}"
        for group, row in result.get("domains", {}).items()
    )


# The paper's analyses run from analysis/ (python -m analysis.calibrate ...); their old subcommands point there.
MOVED = {
    "calibrate": "analysis.calibrate",
    "inject": "analysis.injection",
    "annotate": "analysis.behaviour annotate",
    "compare": "analysis.behaviour compare",
    "plot": "analysis.plots",
}


def main(argv: list[str] | None = None) -> dict:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in MOVED:
        print(f"evaluate.py: `{argv[0]}` moved: run `python -m {MOVED[argv[0]]} ...`", file=sys.stderr)
        raise SystemExit(2)
    from plumbing.cli import ArgumentParser, check_flags
    from plumbing.common import check_model_path, load_problem_set, seed_everything, set_threads

    parser = ArgumentParser(
        description="pass@k of a checkpoint on a problem set (the analyses: python -m analysis.calibrate|injection|"
        "behaviour|plots --help)"
    )
    parser.add_argument("--model", default="toy", help="'toy' or a save_pretrained directory")
    parser.add_argument(
        "--data",
        default="toy:heldout",
        help="'toy:heldout', 'toy:train', a JSONL file or an HF dataset (benchmark layouts: domains/benchmarks.py); "
        "several, comma-separated, are evaluated together (pass@k per domain group); no reference is needed",
    )
    parser.add_argument(
        "--domain", default=None, choices=("math", "science", "code"), help="domain of rows without 'ability'/'domain'"
    )
    parser.add_argument("--n", type=int, default=64, help="samples per problem (paper: 128)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (paper: 0.8)")
    parser.add_argument("--max_new_tokens", type=int, default=160, help="response length limit")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N problems")
    parser.add_argument("--output_dir", default=None, help="where pass_at_k.json is written")
    parser.add_argument(
        "--seed", type=int, default=0, help="fixes the draws (the same draws as a training run's evaluations at --seed)"
    )
    parser.add_argument(
        "--rollouts", default=None, help="also write every rollout to this JSONL (for calibrate/annotate)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args(argv)
    rules = [("n", args.n >= 1, ">= 1"), ("temperature", 0 <= args.temperature < float("inf"), ">= 0 and finite"),
             ("max_new_tokens", args.max_new_tokens >= 1, ">= 1"), ("threads", args.threads >= 0, ">= 0"),
             ("limit", args.limit is None or args.limit >= 1, ">= 1")]  # fmt: skip
    check_flags(args, rules)
    problems = load_problem_set(  # checked before the model loads
        args.data, limit=args.limit, flag="--data", domain=args.domain, require_reference=False
    )
    check_model_path(args.model, "--model")

    set_threads(args.threads)
    seed_everything(args.seed)
    result = evaluate(
        args.model,
        problems,
        n=args.n,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        output_dir=args.output_dir,
        rollouts_path=args.rollouts,
        seed=args.seed,
    )
    print(f"{result['num_problems']} problems, n={result['n']}, {result['seconds']}s:  {format_pass_at_k(result)}")
    if "domains" in result:
        print(format_domains(result))
    return result


if __name__ == "__main__":
    main()
