"""Judge calibration on fixed rollouts (docs/paper.md, "Judge calibration").

Calibration: every rollout has a known final-answer correctness (evaluate.py --rollouts writes them). The judge scores
each one under three reference conditions,

    reference        the problem's own reference (what training uses),
    no_reference     judge.no_reference_prompt: absolute correctness on the same 1-5 scale,
    wrong_reference  another problem's reference: the distinct problems are shuffled (seeded) and each takes the
                     reference of the next one in that order (a cyclic shift by one),

and "judged correct" means a score >= 4, i.e. a normalised score s = (N - 1) / 4 >= 0.75. `--level outcome` scores
the whole response (ExpRL-Outcome's judge); `--level process` scores every prefix y_<=t as ExpRL-Process does and
calibrates the final prefix's score s_T (the score of the full response under the process rubric). Per condition:
FPR = incorrect rollouts judged correct / incorrect ones, FNR = correct rollouts judged incorrect / correct ones,
misplacement = (FPR + FNR) / 2 (the paper's 4B judge: 17.8 / 39.2 / 50.4 %), all over the rollouts whose judge output
parsed; the parse-failure rate is reported beside them. 95% intervals come from a seeded bootstrap over rollouts.
The inversion rate is what GRPO feels: among the pairs of one correct and one incorrect rollout of the SAME problem,
the share where the incorrect one scores strictly higher (its advantage is then above the correct one's).

Process calibration: a prefix score s_t should track how likely the prefix is to end well. We estimate that by
sampling K continuations of the prefix from the policy (the paper used K = 32) and counting correct final answers,
then report the Pearson correlation of s_t with that success rate and a calibration plot
(analysis/prefix_calibration.py).

Per domain (docs/paper.md, "Mixed domains (§4.6, Tables 3-6)": Tables 5-6): rollouts of science or code problems
carry a "domain" (evaluate.py writes it), which picks the judge's template; rollouts of several domains are calibrated
domain by domain (the wrong reference is another problem's of the same domain), one table each; `--domain` keeps one.

Injection robustness is measured in analysis/injection.py.

The toy judges (toy/llm_like_judge.py): `--judge toy` is the LLM-like judge, whose no_reference condition is the same
reader checking the arithmetic, the chain and (on a share of the lines) the question's operations; `--judge toy-rubric`
is the exact rubric judge, whose no_reference condition (toy.exact_judges.NoReferenceJudge) checks only the arithmetic
and the chain; `--judge_error_rate p` makes either score a share p of the texts against a misread reference. `--judge
toy-progress` is the checkpoint-counting judge, which has no no-reference mode: it reads nothing but the reference's
checkpoints, so its no_reference condition is that judge with an empty reference, which fails to parse on every rollout;
FPR/FNR are n/a there (reported as such, not invented). How much of a toy calibration's misplacement comes from rollouts
that reach the right number by wrong steps: analysis/toy_labels.py.
"""

import argparse
import json
import math
import os
import random

from analysis.calibration_report import calibration_table, percent, percent_ci, plot_histograms  # noqa: F401
from analysis.prefix_calibration import plot_prefix_calibration, prefix_calibration, split_segments
from judge import JudgeResult, domain_kwargs
from plumbing.cli import ArgumentParser, check_flags, fail

THRESHOLD = 0.75  # a 1-5 score >= 4, normalised by (N - 1) / 4
CONDITIONS = ("reference", "no_reference", "wrong_reference")


# ------------------------------------------------------------------------------------------------- rollouts
def load_rollouts(paths: list[str], limit: int | None = None) -> list[dict]:
    """Rows of rollout JSONL files (evaluate.py --rollouts): question, reference, answer, response, correct."""
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows[:limit] if limit else rows


def wrong_references(rows: list[dict], seed: int = 0) -> list[str]:
    """Each rollout gets the reference of ANOTHER problem: shuffle the distinct problems, shift cyclically by one.

    Example: problems a, b, c shuffled to (b, c, a): b gets c's reference, c gets a's, a gets b's.
    Needs at least two distinct problems (with one, no other reference exists).
    """
    refs = {}  # question -> reference, in first-seen order
    for r in rows:
        refs.setdefault(r["question"], r["reference"])
    order = list(refs)
    if len(order) < 2:
        raise ValueError("wrong_references: needs rollouts of at least two distinct problems")
    random.Random(seed).shuffle(order)
    shifted = {q: refs[order[(i + 1) % len(order)]] for i, q in enumerate(order)}
    return [shifted[r["question"]] for r in rows]


# ------------------------------------------------------------------------------------------------- metrics
def rates(scores: list, correct: list[bool], threshold: float = THRESHOLD) -> dict:
    """FPR, FNR, misplacement over parsed scores (None = parse failure, excluded and counted); None where undefined.

    misplacement_failed_as_low counts a parse failure as "judged incorrect" instead (a judge that cannot give a
    verdict does not call a rollout correct), so a judge that never parses still gets a number: 50%.

    Example (2 incorrect: 1.0 and 0.25; 2 correct: 0.75 and None):
        FPR = 1/2, FNR = 0/1, misplacement = 0.25, parse_failure = 1/4
        failures as low: FPR = 1/2, FNR = 1/2, misplacement_failed_as_low = 0.5
    """
    wrong = [s >= threshold for s, c in zip(scores, correct) if s is not None and not c]  # judged correct, is wrong
    right = [s < threshold for s, c in zip(scores, correct) if s is not None and c]  # judged wrong, is correct
    fpr = sum(wrong) / len(wrong) if wrong else None
    fnr = sum(right) / len(right) if right else None
    high = [s is not None and s >= threshold for s in scores]
    num_correct = sum(map(bool, correct))
    fpr_all = (
        sum(h for h, c in zip(high, correct) if not c) / (len(correct) - num_correct)
        if num_correct < len(correct)
        else None
    )
    fnr_all = sum(not h for h, c in zip(high, correct) if c) / num_correct if num_correct else None
    return {
        "fpr": fpr,
        "fnr": fnr,
        "misplacement": None if fpr is None or fnr is None else (fpr + fnr) / 2,
        "misplacement_failed_as_low": None if fpr_all is None or fnr_all is None else (fpr_all + fnr_all) / 2,
        "parse_failure": sum(s is None for s in scores) / len(scores) if scores else None,
        "num_correct": sum(map(bool, correct)),
        "num_incorrect": len(correct) - sum(map(bool, correct)),
    }


def inversion_rate(scores: list, correct: list[bool], problems: list[str]) -> float | None:
    """Among (correct, incorrect) pairs of rollouts of the same problem, the share where the incorrect one scores
    strictly higher (parse failures excluded); None without such a pair.

    Example (problem a: correct 0.75, incorrect 1.0 and 0.25; problem b: only correct ones):
        >>> inversion_rate([0.75, 1.0, 0.25, 1.0], [True, False, False, True], ["a", "a", "a", "b"])
        0.5
    """
    groups: dict[str, list[tuple[float, bool]]] = {}
    for s, c, p in zip(scores, correct, problems):
        if s is not None:
            groups.setdefault(p, []).append((s, bool(c)))
    inverted = pairs = 0
    for rows in groups.values():
        for s_right in (s for s, c in rows if c):
            for s_wrong in (s for s, c in rows if not c):
                pairs += 1
                inverted += s_wrong > s_right
    return inverted / pairs if pairs else None


def bootstrap_ci(
    scores: list,
    correct: list[bool],
    num_samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    threshold: float = THRESHOLD,
    groups: list | None = None,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap interval of each rate, resampling rollouts with replacement (seeded, so reproducible).
    With `groups` (a key per rollout, e.g. its problem) whole groups are resampled instead: the rollouts of one
    problem are not independent (a text sampled twice gets the same verdict), so this interval is the wider, honest
    one when few problems hold the correct rollouts.

    A resample where a rate is undefined (no parsed correct rollout, say) is skipped for that rate.
    """
    rng = random.Random(seed)
    n = len(scores)
    members: dict = {}
    for i, key in enumerate(groups if groups is not None else range(n)):
        members.setdefault(key, []).append(i)
    units = list(members.values())  # [[rollout indices of one unit]]
    draws = {"fpr": [], "fnr": [], "misplacement": [], "misplacement_failed_as_low": [], "parse_failure": []}
    for _ in range(num_samples):
        idx = [i for _ in units for i in units[rng.randrange(len(units))]]
        r = rates([scores[i] for i in idx], [correct[i] for i in idx], threshold)
        for key in draws:
            if r[key] is not None:
                draws[key].append(r[key])
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    return {k: (_quantile(v, lo_q), _quantile(v, hi_q)) if v else None for k, v in draws.items()}


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    v = sorted(values)
    x = q * (len(v) - 1)
    lo, hi = math.floor(x), math.ceil(x)
    return v[lo] + (v[hi] - v[lo]) * (x - lo)


# ------------------------------------------------------------------------------------------------- judging
def build_judge(spec: str, max_tokens: int = 256, served_model: str = "", batch_size: int = 16, error_rate: float = 0):
    """The judge of --judge SPEC, built where Stage I builds it (config.build_judge), with this tool's defaults."""
    from config import build_judge as judge_of

    return judge_of(spec, error_rate, max_tokens=max_tokens, served_model=served_model, batch_size=batch_size)


def score_condition(judge, rows: list[dict], condition: str, seed: int = 0, level: str = "outcome"):
    """JudgeResult for every rollout under one reference condition (see the module docstring); at level "process"
    each rollout is sliced at "###" and its prefix scores s_1..s_T are judged, and the scores returned are s_T."""
    questions, responses = [r["question"] for r in rows], [r["response"] for r in rows]
    domains = domain_kwargs([r.get("domain", "math") for r in rows])  # {} for math: the toy judges take no domains
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    references = [r["reference"] for r in rows] if condition == "reference" else wrong_references(rows, seed)
    if condition == "no_reference":
        references = [""] * len(rows)  # toy-progress reads nothing else: a parse failure on every rollout
    if level == "outcome":
        if condition == "no_reference" and hasattr(judge, "score_no_reference"):
            return judge.score_no_reference(questions, responses, **domains)
        return judge.score_outcome(questions, references, responses, **domains)
    if level != "process":
        raise ValueError(f"level must be 'outcome' or 'process', got {level!r}")
    if condition == "no_reference" and hasattr(judge, "score_no_reference"):
        return judge.score_no_reference(questions, responses, level="process")  # the whole response is s_T's prefix
    result = judge.score_process(questions, references, [split_segments(r) for r in responses], "prefix", **domains)
    return JudgeResult([row[-1] if row else None for row in result.scores], [row[-1] for row in result.texts])


def calibrate(
    judge,
    rows: list[dict],
    conditions=CONDITIONS,
    seed: int = 0,
    num_bootstrap: int = 1000,
    threshold: float = THRESHOLD,
    level: str = "outcome",
    by_problem: bool = False,
) -> dict:
    """{condition: {"rates", "ci", "scores", "texts"}} for the rollouts in rows ("judged correct": s >= threshold);
    rates include the inversion rate (inversion_rate). by_problem: the intervals resample problems, not rollouts."""
    correct = [bool(r["correct"]) for r in rows]
    problems = [r["question"] for r in rows]
    units = problems if by_problem else None  # what the bootstrap resamples: problems, or (None) rollouts
    out = {}
    for condition in conditions:
        result = score_condition(judge, rows, condition, seed, level)
        out[condition] = {
            "rates": rates(result.scores, correct, threshold)
            | {"inversion": inversion_rate(result.scores, correct, problems)},
            "ci": bootstrap_ci(result.scores, correct, num_bootstrap, seed, threshold=threshold, groups=units),
            "scores": result.scores,
            "texts": result.texts,
        }
    return out


def by_domain(rows: list[dict], domain: str = "all") -> dict[str, list[dict]]:
    """The rollouts of each domain present ({"math": rows} for math-only rollouts), or of `domain` alone.

    Example:
        >>> rows = [{"id": 1}, {"id": 2, "domain": "code"}, {"id": 3}]
        >>> {d: [r["id"] for r in rs] for d, rs in by_domain(rows).items()}, list(by_domain(rows, "code"))
        ({'math': [1, 3], 'code': [2]}, ['code'])
    """
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r.get("domain", "math"), []).append(r)
    return groups if domain == "all" else {domain: groups.get(domain, [])}


def select(rows: list[dict], limit: int | None, seed: int = 0) -> list[dict]:
    """Up to limit // 2 correct and limit // 2 incorrect rollouts (seeded draw), so both rates have support."""
    if not limit:
        return rows
    shuffled = random.Random(seed).sample(rows, len(rows))
    good = [r for r in shuffled if r["correct"]][: limit // 2]
    bad = [r for r in shuffled if not r["correct"]][: limit - len(good)]
    return good + bad


# ------------------------------------------------------------------------------------------------- commands
def check_judge_args(args) -> None:
    """The shared flags of the judge analyses in range and the rollout files present (one line, exit status 2)."""
    rules = [("max_tokens", args.max_tokens >= 1, ">= 1"), ("batch_size", args.batch_size >= 1, ">= 1"),
             ("limit", args.limit >= 0, ">= 0"), ("threads", args.threads >= 0, ">= 0")]  # fmt: skip
    check_flags(args, rules)
    for path in args.rollouts:
        if not os.path.isfile(path):
            fail(f"--rollouts {path}: no such file (write one with python evaluate.py ... --rollouts FILE)")


def add_judge_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rollouts", nargs="+", required=True, help="rollout JSONL files (evaluate.py --rollouts)")
    parser.add_argument(
        "--judge", default="toy", help="'toy', 'toy-progress', a save_pretrained directory, or an http(s):// endpoint"
    )
    parser.add_argument(
        "--judge_error_rate",
        type=float,
        default=0.0,
        help="--judge toy only: share of rollouts scored against a misread reference (toy_judge.RubricJudge)",
    )
    parser.add_argument("--served_model", default="", help="model name at the endpoint (HTTP judges)")
    parser.add_argument(
        "--max_tokens", type=int, default=256, help="judge output limit (paper: the judge's full budget)"
    )
    parser.add_argument("--batch_size", type=int, default=16, help="judge prompts per HF generate call")
    parser.add_argument("--limit", type=int, default=0, help="use a balanced draw of this many rollouts (0 = all)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the draw, the wrong-reference shift, the bootstrap")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default="runs/calibration", help="output directory")


def main(argv: list[str] | None = None) -> dict:
    """python -m analysis.calibrate --rollouts R.jsonl --judge toy|DIR|URL [--process_model toy --k 8]"""
    parser = ArgumentParser(prog="python -m analysis.calibrate", description=__doc__.split("\n\n")[0])
    add_judge_args(parser)
    parser.add_argument(
        "--level",
        choices=("outcome", "process"),
        default="outcome",
        help="outcome: the whole response; process: s_T, the final prefix's score under the process rubric",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument(
        "--bootstrap_unit",
        choices=("rollout", "problem"),
        default="rollout",
        help="what the bootstrap resamples: rollouts, or whole problems (wider: one problem's rollouts are not "
        "independent)",
    )
    parser.add_argument(
        "--min_score", type=int, default=4, help="a 1-5 score >= this counts as judged correct (paper: 4)"
    )
    parser.add_argument(
        "--process_model", default="", help="policy for prefix continuations ('' skips the process part)"
    )
    parser.add_argument("--k", type=int, default=8, help="continuations per prefix (paper: 32)")
    parser.add_argument(
        "--domain",
        default="all",
        choices=("all", "math", "science", "code"),
        help="calibrate the rollouts of this domain only; all: one table per domain present (paper: Tables 5-6)",
    )
    parser.add_argument("--process_limit", type=int, default=16, help="rollouts whose prefixes are continued")
    parser.add_argument("--max_new_tokens", type=int, default=160, help="continuation length limit")
    args = parser.parse_args(argv)
    check_judge_args(args)
    rules = [("bootstrap", args.bootstrap >= 1, ">= 1"), ("min_score", 1 <= args.min_score <= 5, "in 1..5"),
             ("k", args.k >= 1, ">= 1"), ("process_limit", args.process_limit >= 0, ">= 0")]  # fmt: skip
    check_flags(args, rules)
    from plumbing.common import seed_everything, set_threads, write_report

    set_threads(args.threads)
    seed_everything(args.seed)
    domains = by_domain(load_rollouts(args.rollouts), args.domain)
    if not all(domains.values()):
        fail(f"--domain {args.domain}: no rollout of that domain in {', '.join(args.rollouts)}")
    judge = build_judge(args.judge, args.max_tokens, args.served_model, args.batch_size, args.judge_error_rate)
    name = os.path.basename(os.path.normpath(args.judge))
    name += f" (error rate {args.judge_error_rate})" if args.judge_error_rate else ""
    name += ", process s_T" if args.level == "process" else ""
    threshold = (args.min_score - 1) / 4
    os.makedirs(args.out, exist_ok=True)
    tables, per_domain, rows = [], {}, []
    for domain, domain_rows in domains.items():  # math-only rollouts: one table, as before domains existed
        chosen = select(domain_rows, args.limit, args.seed)
        by_problem = args.bootstrap_unit == "problem"
        results = calibrate(judge, chosen, seed=args.seed, num_bootstrap=args.bootstrap, threshold=threshold,
                            level=args.level, by_problem=by_problem)  # fmt: skip
        label = name if list(domains) == ["math"] else f"{name}, {domain}"
        tables.append(calibration_table(results, label))
        stem = "histogram" if len(domains) == 1 else f"histogram_{domain}"
        correct = [bool(r["correct"]) for r in chosen]
        plot_histograms(results, correct, os.path.join(args.out, f"{stem}.png"), label, args.min_score)
        per_domain[domain] = {"num_rollouts": len(chosen), "conditions": results}
        rows += chosen
    table = "\n\n".join(tables)
    report = {
        "judge": args.judge,
        "judge_error_rate": args.judge_error_rate,
        "level": args.level,
        "rollouts": args.rollouts,
        "num_rollouts": len(rows),
        "min_score": args.min_score,
    }
    if len(per_domain) == 1 and "math" in per_domain:
        report["conditions"] = per_domain["math"]["conditions"]
    else:
        report["domains"] = per_domain
    if args.process_model:
        from plumbing.common import load_model

        policy, tokenizer = load_model(args.process_model)
        prefix_rows = select(rows, args.process_limit, args.seed)
        report["process"] = prefix_calibration(
            policy, tokenizer, judge, prefix_rows, args.k, max_new_tokens=args.max_new_tokens
        )
        plot_prefix_calibration(report["process"], os.path.join(args.out, "prefix_calibration.png"), name)
        table += (
            f"\n\nprefix scores vs success of K={args.k} continuations: Pearson r = "
            f"{report['process']['pearson']}, {report['process']['num_prefixes']} prefixes; mean success per "
            f"score: {report['process']['by_score']}"
        )
    write_report(args.out, "calibration", report, table)
    return report


if __name__ == "__main__":
    main()
