"""The toy Table 4's report: per-domain pass@k after Stage I, read from the run directories' own files, so it can be
recomputed from any finished `runs/table4`:

    python -m scripts.table4_report --output_dir runs/table4 --seeds 0,1,2

Each run's last evaluation (pass_at_k.json: n and one correct count per evaluated problem, in the data file's order)
is joined with the domain of the same problem in the development file; pass@k per domain is the mean over that
domain's problems of the unbiased estimator (evaluate.pass_at_k).
"""

import argparse
import json
import os

from domains.problems import load_problems
from evaluate import pass_at_k
from plumbing.common import write_json
from scripts.reproduce_report import final_eval, mean_std

LABELS = {  # method -> its row label (scripts/table4.py runs them)
    "base": "Base (no Stage I)",
    "sparse": "Sparse GRPO (execution reward on code)",
    "sft": "SFT on references",
    "self_distill": "Self-distillation",
    "outcome": "ExpRL-Outcome",
    "process": "ExpRL-Process (code rows at the outcome level)",
}
DOMAIN_ORDER = ("math", "science", "code")
KS = (1, 16)


def domain_pass_at_k(result: dict, domains: list[str], ks=KS) -> dict[str, dict[str, float]]:
    """{domain: {"pass@k": value}} from one pass_at_k.json; `domains[i]` is the domain of evaluated problem i.

    Example (n = 4; math problems with 1 and 0 correct, one code problem with 4; pass@1 math = (1/4 + 0) / 2):
        >>> domain_pass_at_k({"n": 4, "correct_counts": [1, 0, 4]}, ["math", "math", "code"], ks=(1, 2))
        {'math': {'pass@1': 0.125, 'pass@2': 0.25}, 'code': {'pass@1': 1.0, 'pass@2': 1.0}}
    """
    counts, n = result["correct_counts"], result["n"]
    if len(counts) > len(domains):
        raise ValueError(f"{len(counts)} correct counts but only {len(domains)} problems in the data file")
    out = {}
    for domain in dict.fromkeys(domains[: len(counts)]):
        mine = [c for c, d in zip(counts, domains) if d == domain]
        out[domain] = {f"pass@{k}": sum(pass_at_k(n, c, k) for c in mine) / len(mine) for k in ks if k <= n}
    return out


def collect(out: str, methods: list[str], seeds: list[int], dev_data: str) -> dict:
    """{method: [per seed {domain: {"pass@k": value}}]} from out/s<seed>/<method>/eval/<last step>/pass_at_k.json."""
    domains = [p.domain for p in load_problems(dev_data)]
    table = {}
    for method in methods:
        paths = [final_eval(os.path.join(out, f"s{seed}", method)) for seed in seeds]
        table[method] = [domain_pass_at_k(json.load(open(path)), domains) for path in paths]
    return table


def markdown(table: dict, seeds: list[int], header: str = "") -> str:
    """One row per method, pass@1 and pass@16 per domain (mean ± sample std over seeds)."""
    first = next(iter(table.values()))[0]
    domains = [d for d in DOMAIN_ORDER if d in first]
    ks = list(first[domains[0]])
    heads = [f"{d} {k}" for d in domains for k in ks]
    lines = [f"# Toy Table 4: per-domain pass@k after Stage I (dev split; seeds {', '.join(map(str, seeds))})", ""]
    lines += [header, ""] if header else []
    lines += ["| method | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for method, per_seed in table.items():
        cells = [mean_std([seed[d][k] for seed in per_seed]) for d in domains for k in ks]
        lines.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(table: dict, path: str, k: str = "pass@1") -> None:
    """One panel per domain: each method's mean `k` over seeds as a bar, every seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(next(iter(table.values()))[0])
    fig, axes = plt.subplots(1, len(domains), figsize=(4 * len(domains), 3.6))
    for ax, domain in zip(axes, domains):
        for x, (method, seeds) in enumerate(table.items()):
            values = [seed[domain][k] for seed in seeds]
            ax.bar(x, sum(values) / len(values), color="C0" if method in ("outcome", "process") else "0.7")
            ax.scatter([x] * len(values), values, color="k", s=8, zorder=3)
        ax.set_xticks(range(len(table)), [LABELS.get(m, m).split(" (")[0] for m in table], rotation=45, ha="right")
        ax.set_title(f"{domain}: {k} after Stage I (dev)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(out: str, methods: list[str], seeds: list[int], dev_data: str, header: str = "") -> str:
    """Write out/table4.md, out/table4.json and out/table4.png (pass@1 per domain); return the markdown."""
    table = collect(out, methods, seeds, dev_data)
    text = markdown(table, seeds, header)
    plot(table, os.path.join(out, "table4.png"))
    write_json(os.path.join(out, "table4.json"), {"seeds": seeds, "dev_data": dev_data, "pass_at_k": table})
    with open(os.path.join(out, "table4.md"), "w") as f:
        f.write(text + "\n")
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the toy Table 4 from finished runs")
    parser.add_argument("--output_dir", default="runs/table4", help="the driver's output directory")
    parser.add_argument("--methods", default=",".join(LABELS), help="comma-separated methods")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--dev_data", default="toy_data/mixed/dev.jsonl", help="the evaluated development file")
    cli = parser.parse_args()
    print(report(cli.output_dir, cli.methods.split(","), [int(s) for s in cli.seeds.split(",")], cli.dev_data))
