"""The reproduction's report: tables, per-seed comparisons and figures, read from the run directories' own files
(pass_at_k.json of each run's last evaluation, metrics.jsonl), so anyone can recompute them from a finished
`runs/reproduce` (or the committed copy of its logs in results/reproduce/):

    python -m scripts.reproduce_report --output_dir results/reproduce --seeds 0,1,2,3,4
"""

import json
import os

import numpy as np

LABELS = {  # method -> its label in the tables (scripts/reproduce.py runs them)
    "base": "Base (no Stage I)",
    "sft": "SFT on references",
    "sparse": "Sparse GRPO",
    "self_distill": "Self-distillation",
    "outcome": "ExpRL-Outcome",
    "process": "ExpRL-Process",
}


def final_eval(run_dir: str) -> str:
    """The pass_at_k.json of a run's last evaluation (the highest step directory under run_dir/eval)."""
    tags = sorted(os.listdir(os.path.join(run_dir, "eval")))
    return os.path.join(run_dir, "eval", tags[-1], "pass_at_k.json")


def collect(out: str, methods: list[str], seeds: list[int]) -> dict:
    """-> {stage: {method: [pass_at_k.json per seed]}} for stage in stage1, stage2."""
    table = {}
    for stage in ("stage1", "stage2"):
        table[stage] = {
            m: [json.load(open(final_eval(os.path.join(out, f"s{s}", m, stage)))) for s in seeds] for m in methods
        }
    return table


def mean_std(values: list[float]) -> str:
    """'0.123 ± 0.045' with the sample std over seeds (ddof 1); a single seed has no spread: '0.123'."""
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def results_markdown(c: dict, table: dict, seeds: list[int], header: str) -> str:
    """The two pass@k tables (mean ± sample std, then pass@1 per seed); c = the reproduction's config.json."""
    n = c["eval_n"]
    ks = [k for k in ("1", "16", str(n)) if k in next(iter(table["stage1"].values()))[0]["pass@k"]]
    ks = list(dict.fromkeys(ks))
    lines = [
        f"# Toy-world reproduction (seeds {', '.join(map(str, seeds))}; mean ± sample std over seeds)",
        "",
        header,
        "",
        f"Held-out: {table['stage1'][next(iter(table['stage1']))][0]['num_problems']} hard problems x {n} samples "
        f"(temperature 1.0). Stage I: {c['stage1_steps']} steps x {c['prompts_per_step']} prompts x "
        f"{c['group_size']} rollouts (SFT: {c['sft_epochs']} epochs); Stage II: {c['stage2_steps']} steps, same size.",
        "",
    ]
    for stage, title in (
        ("stage1", "After Stage I (the Table 2 analogue)"),
        ("stage2", "After Stage I + the same Stage II (the Table 1 analogue)"),
    ):
        lines += [
            f"## {title}",
            "",
            "| method | "
            + " | ".join(f"pass@{k}" for k in ks)
            + f" | pass@1 per seed ({', '.join(map(str, seeds))}) |",
            "|---|" + "---|" * (len(ks) + 1),
        ]
        for method, results in table[stage].items():
            cells = [mean_std([r["pass@k"][k] for r in results]) for k in ks]
            per_seed = ", ".join(f"{r['pass@k']['1']:.3f}" for r in results)
            lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + f" | {per_seed} |")
        lines.append("")
    lines += ["![pass@k](passk.png)", "", "![Stage-I training](stage1_training.png)", ""]
    return "\n".join(lines)


def plot(out: str, table: dict, methods: list[str], seeds: list[int]) -> None:
    """passk.png (mean pass@k curve per method, after Stage I and after Stage II) and stage1_training.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, stage, title in zip(axes, ("stage1", "stage2"), ("after Stage I", "after Stage II")):
        for method in methods:
            ks = [int(k) for k in table[stage][method][0]["pass@k"]]
            curve = np.mean([[r["pass@k"][str(k)] for k in ks] for r in table[stage][method]], axis=0)
            ax.plot(ks, curve, marker="o", label=LABELS[method], color=_color(method))
        ax.set(xscale="log", xlabel="k", title=f"held-out pass@k {title}")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@k")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "passk.png"), dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = [
        ("stage1", "fully_unsolved", "Stage I: fully-unsolved prompts"),
        ("stage1", "entropy", "Stage I: token entropy"),
        ("stage2", "answer_accuracy", "Stage II: answer accuracy"),
    ]
    for ax, (stage, key, title) in zip(axes, panels):
        for method in methods:
            runs = [_metric_curve(os.path.join(out, f"s{s}", method, stage, "metrics.jsonl"), key) for s in seeds]
            runs = [r for r in runs if r]
            if runs:
                length = min(len(r) for r in runs)
                curve = np.mean([r[:length] for r in runs], axis=0)  # mean over seeds
                window = min(5, length)  # a 5-step moving average: 8 prompts per step make a noisy fraction
                smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
                ax.plot(range(window, length + 1), smooth, label=LABELS[method], color=_color(method))
        ax.set(xlabel="step", title=f"{title} (5-step mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "stage1_training.png"), dpi=90)
    plt.close(fig)


def diagnostics_markdown(out: str, stage2_steps: int, methods: list[str], seeds: list[int]) -> str:
    """A table of what happened during training, mean over seeds: fully-unsolved fraction (first -> last 10 Stage-I
    steps), final token entropy, and how many optimiser steps had no advantage at all (skipped, `--skip_no_signal`)."""
    first, last, every = slice(0, 10), slice(-10, None), slice(None)

    def stat(method: str, stage: str, key: str, part: slice, reduce=np.mean, fmt: str = ".2f") -> str:
        """reduce(key over the steps in part) per seed, averaged over seeds; "" when the run logged no such key."""
        values = [_metric_curve(os.path.join(out, f"s{s}", method, stage, "metrics.jsonl"), key)[part] for s in seeds]
        values = [reduce(v) for v in values if len(v)]
        return format(np.mean(values), fmt) if values else ""

    def skipped(method: str, stage: str) -> str:  # optimiser steps skipped over a whole run
        return stat(method, stage, "skipped_update", every, np.sum, ".1f")

    lines = [
        "## During training (mean over seeds)",
        "",
        "| method | S-I fully unsolved, first -> last 10 steps | S-I entropy, last 10 | S-I skipped updates | "
        "S-II skipped updates | S-II answer accuracy, last 10 |",
        "|---|---|---|---|---|---|",
    ]
    for m in methods:
        before, after = stat(m, "stage1", "fully_unsolved", first), stat(m, "stage1", "fully_unsolved", last)
        unsolved = f"{before} -> {after}" if before else ""  # base and SFT have no Stage-I RL log
        lines.append(
            f"| {LABELS[m]} | {unsolved} | {stat(m, 'stage1', 'entropy', last)} | {skipped(m, 'stage1')} | "
            f"{skipped(m, 'stage2')} of {stage2_steps} | {stat(m, 'stage2', 'answer_accuracy', last)} |"
        )
    return "\n".join(lines + [""])


def _color(method: str) -> str:
    """One colour per method in every panel (base and SFT have no Stage-I curves, so the default cycle would shift)."""
    return f"C{list(LABELS).index(method)}"


def _metric_curve(path: str, key: str) -> list[float]:
    if not os.path.exists(path):
        return []
    rows = [json.loads(line) for line in open(path)]
    return [r[key] for r in rows if key in r]


# The paper's orderings, compared seed by seed (pass@1): (better, worse, where).
COMPARISONS = [
    ("process", "base", "stage1"), ("outcome", "base", "stage1"), ("sft", "base", "stage1"),
    ("process", "base", "stage2"), ("outcome", "base", "stage2"), ("sparse", "base", "stage2"),
    ("process", "sparse", "stage2"), ("outcome", "sparse", "stage2"), ("process", "outcome", "stage2"),
    ("self_distill", "sparse", "stage2"), ("sft", "base", "stage2"),
]  # fmt: skip


def paired_markdown(table: dict, seeds: list[int]) -> str:
    """Each ordering the paper reports, seed by seed: in how many seeds A > B at pass@1, and the mean ± std of A - B
    over seeds (the seeds pair up: a seed fixes the evaluation draws and Stage II's data order for every method)."""
    lines = [
        "## The paper's orderings, seed by seed (held-out pass@1)",
        "",
        "| ordering | after | seeds where it holds | mean difference ± std |",
        "|---|---|---|---|",
    ]
    for better, worse, stage in COMPARISONS:
        if better not in table[stage] or worse not in table[stage]:
            continue
        a = np.array([r["pass@k"]["1"] for r in table[stage][better]])
        b = np.array([r["pass@k"]["1"] for r in table[stage][worse]])
        where = "Stage I" if stage == "stage1" else "Stage II"
        lines.append(
            f"| {LABELS[better]} > {LABELS[worse]} | {where} | {int((a > b).sum())} of {len(seeds)} | "
            f"{(a - b).mean():+.3f} ± {(a - b).std(ddof=1) if len(a) > 1 else 0:.3f} |"
        )
    return "\n".join(lines + [""])


def report(out: str, header: str = "") -> str:
    """Read out/config.json and the run directories, write out/results.md, passk.png and stage1_training.png."""
    c = json.load(open(os.path.join(out, "config.json")))
    methods = [m for m in c["methods"].split(",") if m.strip()]
    seeds = [int(s) for s in c["seeds"].split(",") if s.strip()]
    table = collect(out, methods, seeds)
    header = header or f"Recomputed from the run directories in `{out}` (python -m scripts.reproduce_report)."
    text = "\n".join(
        [
            results_markdown(c, table, seeds, header),
            paired_markdown(table, seeds),
            diagnostics_markdown(out, c["stage2_steps"], methods, seeds),
        ]
    )
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    plot(out, table, methods, seeds)
    return text


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m scripts.reproduce_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/reproduce", help="a reproduction's directory (its config.json)")
    print(report(parser.parse_args().output_dir))
