"""Judge calibration per domain in the mixed toy world (docs/paper.md, "Mixed domains (§4.6, Tables 3-6)"):
misplacement = (FPR + FNR) / 2 at "score >= 4 means judged correct", with the correct reference, with none, and with
a wrong one (another problem's of the same domain: analysis.calibrate.wrong_references), for each domain.

    python -m analysis.mixed_calibration --model toy_mixed_base \\
        --data toy_data/mixed/dev.jsonl,toy_data/mixed/easy.jsonl --n 16,4 --out results/toy_mixed/calibration

samples n rollouts per problem of each file (or reads --rollouts if that file exists): the hard development split
gives wrong rollouts, the easy one right ones (on hard problems the base is rarely right). It grades them with the
rule-based reward (toy.mixed_world.grade: the sandbox for code), scores them with toy.mixed_judges.MixedJudge in the
three conditions and writes calibration.json and calibration.md in --out.
"""

import argparse
import json
import os
import time

from analysis.calibrate import rates, wrong_references
from toy.mixed_judges import CodeJudge, MixedJudge  # noqa: F401 (CodeJudge: the example)
from toy.mixed_world import DOMAINS, grade

CONDITIONS = ("correct_reference", "no_reference", "wrong_reference")


def sample_rollouts(model: str, data: list[str], ns: list[int], temperature: float, seed: int, path: str) -> list[dict]:
    """ns[i] rollouts per problem of data[i], graded by the rule-based reward, written to `path` as JSONL rows
    {"id", "domain", "question", "reference", "response", "correct"}."""
    from domains.problems import encode_prompts, load_problems, policy_messages
    from plumbing.common import load_model, seed_everything
    from rollout import HFSampler

    if len(data) != len(ns):
        raise ValueError(f"--data names {len(data)} files but --n gives {len(ns)} sample counts")
    seed_everything(seed)
    policy, tokenizer = load_model(model)
    sampler = HFSampler(policy, tokenizer, max_new_tokens=160, temperature=temperature, batch_size=256)
    rows = []
    for source, n in zip(data, ns):
        problems = load_problems(source)
        rollouts = sampler.sample(encode_prompts(tokenizer, [policy_messages(p) for p in problems]), n=n)
        of = [problems[i // n] for i in range(len(rollouts))]
        correct = grade(of, [r.text for r in rollouts])
        rows += [{"id": p.id, "domain": p.domain, "question": p.question, "reference": p.reference,
                  "response": r.text, "correct": bool(c)} for p, r, c in zip(of, rollouts, correct)]  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return rows


def calibrate(rows: list[dict], judge=None, seed: int = 0) -> dict:
    """{domain: {condition: analysis.calibrate.rates(...)}} for the outcome judge.

    Example (one right and one wrong code rollout of two problems; the judge reads code, so all three agree):
        >>> q = ["Code: read n, add 8, print n.", "Code: read n, double, print n."]
        >>> block = "```python\\nn{}\\nprint({})\\n```"
        >>> ref = [block.format(" = int(input())", "n + 8"), block.format(" = int(input())", "n * 2")]
        >>> resp = [block.format("=int(input())\\nn=n+8", "n"), block.format("=int(input())", "n")]
        >>> rows = [{"domain": "code", "question": a, "reference": b, "response": c, "correct": d}
        ...         for a, b, c, d in zip(q, ref, resp, [True, False])]
        >>> judge = MixedJudge()
        >>> judge.judges["code"] = CodeJudge(count_check=1, skim=0, false_alarm=0, style_doubt=0)  # no response errors
        >>> {c: r["misplacement"] for c, r in calibrate(rows, judge)["code"].items()}
        {'correct_reference': 0.0, 'no_reference': 0.0, 'wrong_reference': 0.0}
    """
    judge = judge or MixedJudge()
    out = {}
    for domain in DOMAINS:
        part = [r for r in rows if r["domain"] == domain]
        if len({r["question"] for r in part}) < 2:
            continue
        questions, responses = [r["question"] for r in part], [r["response"] for r in part]
        correct, domains = [r["correct"] for r in part], [domain] * len(part)
        scored = {
            "correct_reference": judge.score_outcome(questions, [r["reference"] for r in part], responses, domains),
            "no_reference": judge.score_no_reference(questions, responses, domains=domains),
            "wrong_reference": judge.score_outcome(questions, wrong_references(part, seed), responses, domains),
        }
        out[domain] = {c: rates(result.scores, correct) for c, result in scored.items()}
    return out


def table(results: dict) -> str:
    """Markdown: misplacement % per domain and condition (FPR / FNR in brackets), correct and incorrect counts."""
    heads = " | ".join(c.replace("_", " ") for c in CONDITIONS)
    lines = [f"| domain | rollouts (correct / incorrect) | {heads} |", "|---|---|" + "---|" * len(CONDITIONS)]

    def cell(r: dict) -> str:
        if r["misplacement"] is None:
            return "n/a"
        return f"{100 * r['misplacement']:.1f} (FPR {100 * r['fpr']:.1f}, FNR {100 * r['fnr']:.1f})"

    for domain, by_condition in results.items():
        first = by_condition[CONDITIONS[0]]
        counts = f"{first['num_correct']} / {first['num_incorrect']}"
        lines.append(f"| {domain} | {counts} | " + " | ".join(cell(by_condition[c]) for c in CONDITIONS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    from plumbing.common import set_threads, write_json

    parser = argparse.ArgumentParser(description="misplacement per domain of the mixed toy judge")
    parser.add_argument("--model", default="toy_mixed_base", help="the policy whose rollouts are judged")
    parser.add_argument(
        "--data", default="toy_data/mixed/dev.jsonl,toy_data/mixed/easy.jsonl", help="problem files, comma-separated"
    )
    parser.add_argument("--n", default="16,4", help="rollouts per problem of each file, comma-separated")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--seed", type=int, default=3, help="seeds the sampling and the wrong-reference shift")
    parser.add_argument("--rollouts", default="", help="read these rollouts if the file exists, else write them there")
    parser.add_argument("--out", default="results/toy_mixed/calibration", help="where calibration.json/.md go")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    path = args.rollouts or os.path.join(args.out, "rollouts.jsonl")
    start = time.time()
    if os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        ns = [int(n) for n in args.n.split(",")]
        rows = sample_rollouts(
            args.model, args.data.split(","), ns, temperature=args.temperature, seed=args.seed, path=path
        )
    sampled = time.time() - start
    results = calibrate(rows, seed=args.seed)
    text = table(results)
    write_json(os.path.join(args.out, "calibration.json"), {"args": vars(args), "seconds_sampling": round(sampled, 1),
                                                             "results": results})  # fmt: skip
    with open(os.path.join(args.out, "calibration.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()
