"""The reproduction's report: tables, per-seed comparisons and figures, read from the run directories' own files
(pass_at_k.json of each run's last evaluation, metrics.jsonl), so anyone can recompute them from a finished
`runs/reproduce` (or the committed copy of its logs in results/reproduce/):

    python -m scripts.reproduce_report --output_dir results/reproduce
"""

import json
import os

import numpy as np

from analysis import paired

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
    """-> {split: {stage: {method: [pass_at_k.json per seed]}}} for split "dev" (the held-out development problems,
    each run's last evaluation) and "test" (the untouched test split, run_dir/test/, when the runs have it)."""
    table = {"dev": {}, "test": {}}
    for stage in ("stage1", "stage2"):
        runs = {m: [os.path.join(out, f"s{s}", m, stage) for s in seeds] for m in methods}
        table["dev"][stage] = {m: [json.load(open(final_eval(d))) for d in dirs] for m, dirs in runs.items()}
        tests = {m: [os.path.join(d, "test", "pass_at_k.json") for d in dirs] for m, dirs in runs.items()}
        if all(os.path.exists(p) for paths in tests.values() for p in paths):
            table["test"][stage] = {m: [json.load(open(p)) for p in paths] for m, paths in tests.items()}
    if len(table["test"]) < 2:  # a split is reported after both stages or not at all
        del table["test"]
    return table


def mean_std(values: list[float]) -> str:
    """'0.123 ± 0.045' with the sample std over seeds (ddof 1); a single seed has no spread: '0.123'."""
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def mean_interval(values: list[float]) -> str:
    """'0.123 [0.101, 0.145]': the mean over seeds with its 95% t interval (analysis.paired.interval)."""
    iv = paired.interval(values)
    return f"{iv.mean:.3f} [{iv.low:.3f}, {iv.high:.3f}]"


# The headline table's columns: (stage, split, k); k "n" = the split's largest.
HEADLINE = [("stage1", "test", "1"), ("stage1", "test", "16"), ("stage2", "dev", "1"), ("stage2", "test", "1"),
            ("stage2", "test", "16"), ("stage2", "test", "n")]  # fmt: skip


def headline_markdown(table: dict, seeds: list[int]) -> str:
    """The table the README shows: per method, the mean over seeds with its 95% t interval, test pass@1 and
    pass@16 after Stage I, then dev pass@1 and test pass@1, pass@16, pass@n after Stage II (two or more seeds and a
    test split; otherwise "")."""
    if len(seeds) < 2 or "test" not in table:
        return ""
    stages = {"stage1": "after Stage I", "stage2": "after Stage I + Stage II"}
    ks = {(stage, split): shown_ks(first_of(table[split][stage])) for stage, split, _ in HEADLINE}
    cols = [(stage, split, ks[stage, split][-1] if k == "n" else k) for stage, split, k in HEADLINE]
    cols = list(dict.fromkeys(c for c in cols if c[2] in ks[c[0], c[1]]))  # a k the runs lack (or twice) is left out
    heads = [  # the stage named once, on its first column
        (f"{stages[stage]}: " if i == 0 or cols[i - 1][0] != stage else "") + f"{split} pass@{k}"
        for i, (stage, split, k) in enumerate(cols)
    ]
    lines = [f"## Headline (mean over seeds {', '.join(map(str, seeds))} with its 95% t interval)", "",
             "| method | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]  # fmt: skip
    for method in table["dev"]["stage1"]:
        cells = [mean_interval([r["pass@k"][k] for r in table[split][stage][method]]) for stage, split, k in cols]
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", "![paired differences](paired.png)", ""])


def shown_ks(results: list[dict]) -> list[str]:
    """The k reported in the tables: 1, 16 and the largest (n)."""
    ks = list(results[0]["pass@k"])
    return list(dict.fromkeys(k for k in ("1", "16", ks[-1]) if k in ks))


def results_markdown(c: dict, table: dict, seeds: list[int], header: str) -> str:
    """The pass@k tables (mean ± sample std over seeds, then pass@1 per seed), the development split and, where the
    runs have it, the test split side by side; c = the reproduction's config.json."""
    splits = [s for s in ("dev", "test") if s in table]
    first = {s: next(iter(table[s]["stage1"].values()))[0] for s in splits}
    sizes = {s: f"{first[s]['num_problems']} problems x {first[s]['n']} samples" for s in splits}
    lines = [
        f"# Toy-world reproduction (seeds {', '.join(map(str, seeds))}; mean ± sample std over seeds)",
        "",
        header,
        "",
        f"Judge: `{c.get('judge', 'toy')}`. Development split (dev): held-out hard problems, {sizes['dev']}"
        + (f"; test split (test): toy_data/test.jsonl, {sizes.get('test')}, read by nothing else" * ("test" in sizes))
        + f" (temperature 1.0). Stage I: {c['stage1_steps']} steps x {c['prompts_per_step']} prompts x "
        f"{c['group_size']} rollouts (SFT: {c['sft_epochs']} epochs); Stage II: {c.get('stage2', '')}.",
        "",
    ]
    for stage, title in (
        ("stage1", "After Stage I (the Table 2 analogue)"),
        ("stage2", "After Stage I + the same Stage II (the Table 1 analogue)"),
    ):
        ks = {s: shown_ks(first_of(table[s][stage])) for s in splits}
        heads = [f"{s} pass@{k}" for s in splits for k in ks[s]]
        heads += [f"{s} pass@1 per seed ({', '.join(map(str, seeds))})" for s in splits]
        lines += [f"## {title}", "", "| method | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for method in table["dev"][stage]:
            cells = [mean_std([r["pass@k"][k] for r in table[s][stage][method]]) for s in splits for k in ks[s]]
            cells += [", ".join(f"{r['pass@k']['1']:.3f}" for r in table[s][stage][method]) for s in splits]
            lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["![pass@k](passk.png)", "", "![Stage-I training](stage1_training.png)", ""]
    return "\n".join(lines)


def stage2_text(out: str, c: dict, run: str) -> str:
    """Stage II's size as run (read from one Stage-II run's config.json), with the recipe's name where the
    reproduction's config names one (runs before recipes existed used Stage I's size)."""
    if "stage2_recipe" not in c:
        return f"{c['stage2_steps']} steps, same size"
    r = json.load(open(os.path.join(out, run, "config.json")))
    return (f"`{c['stage2_recipe']}`, {r['steps']} steps x {r['prompts_per_step']} prompts x {r['group_size']} "
            f"rollouts, lr {r['lr']:g}")  # fmt: skip


def first_of(results_by_method: dict) -> list[dict]:
    return next(iter(results_by_method.values()))


def plot(out: str, table: dict, methods: list[str], seeds: list[int], dest: str = "") -> None:
    """passk.png (mean pass@k curve per method, after Stage I and after Stage II) and stage1_training.png, into dest
    (default: out, whose runs' metrics.jsonl the training panels read)."""
    dest = dest or out
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    split = "test" if "test" in table else "dev"  # the figure shows the split nothing was tuned on, where there is one
    for ax, stage, title in zip(axes, ("stage1", "stage2"), ("after Stage I", "after Stage II")):
        for method in methods:
            results = table[split][stage][method]
            ks = [int(k) for k in results[0]["pass@k"]]
            curve = np.mean([[r["pass@k"][str(k)] for k in ks] for r in results], axis=0)
            ax.plot(ks, curve, marker="o", label=LABELS[method], color=_color(method))
        ax.set(xscale="log", xlabel="k", title=f"{split} pass@k {title}")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@k")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(dest, "passk.png"), dpi=90)
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
        if ax.get_legend_handles_labels()[0]:  # a panel with no curve (only the base ran) has no legend
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(dest, "stage1_training.png"), dpi=90)
    plt.close(fig)


# The figure's contrasts: each ExpRL method against every method it should beat, and the two against each other.
FIGURE_PAIRS = [(a, b) for a in ("outcome", "process") for b in ("base", "sft", "sparse", "self_distill")]
FIGURE_PAIRS += [("process", "outcome")]


def plot_paired(out: str, table: dict, seeds: list[int]) -> None:
    """paired.png: after Stage II, on the test split (dev where there is none), the mean paired difference A - B of
    each contrast in FIGURE_PAIRS with its 95% t interval, at pass@1 and at pass@n; a bar that crosses 0 is not
    separable at this many seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = "test" if "test" in table else "dev"
    results = table[split]["stage2"]
    pairs = [(a, b) for a, b in FIGURE_PAIRS if a in results and b in results]
    ks = shown_ks(results[pairs[0][0]])
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(pairs) + 1.4), sharey=True)
    for ax, k in zip(axes, (ks[0], ks[-1])):
        for row, (a, b) in enumerate(pairs):
            d = [x["pass@k"][k] - y["pass@k"][k] for x, y in zip(results[a], results[b])]  # [seeds]
            iv = paired.interval(d)
            color = "C2" if iv.low > 0 else "C3" if iv.high < 0 else "grey"  # held / reversed / not separable
            ax.scatter(d, [row] * len(d), color=color, alpha=0.3, s=10)
            ax.errorbar(iv.mean, row, xerr=[[iv.mean - iv.low], [iv.high - iv.mean]], fmt="o", color=color, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(xlabel=f"{split} pass@{k}: A - B")
        ax.grid(alpha=0.3)
    axes[0].set_yticks(range(len(pairs)), [f"{LABELS[a]} - {LABELS[b]}" for a, b in pairs])
    axes[0].invert_yaxis()
    fig.suptitle(
        f"After Stage I + Stage II ({split} split): mean paired difference over seeds {', '.join(map(str, seeds))} "
        "with its 95% t interval, dots = seeds;\ngreen = held (above 0), red = reversed, grey = not separable",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(os.path.join(out, "paired.png"), dpi=90)
    plt.close(fig)


def diagnostics_markdown(out: str, stage2_steps: int, methods: list[str], seeds: list[int]) -> str:
    """A table of what happened during training, mean over seeds: fully-unsolved fraction (first -> last 10 Stage-I
    steps), final token entropy, and how many optimiser steps had no advantage at all (skipped, `--skip_no_signal`)."""
    first, last, every = slice(0, 10), slice(-10, None), slice(None)

    def per_seed(method: str, stage: str, key: str, part: slice = every) -> list[list[float]]:
        """The logged values of key over the steps in part, one list per seed whose run logged it."""
        curves = [_metric_curve(os.path.join(out, f"s{s}", method, stage, "metrics.jsonl"), key) for s in seeds]
        return [c[part] for c in curves if len(c[part])]

    def stat(method: str, stage: str, key: str, part: slice, reduce=np.mean, fmt: str = ".2f") -> str:
        """reduce(key over the steps in part) per seed, averaged over seeds; "" when the run logged no such key."""
        values = [reduce(v) for v in per_seed(method, stage, key, part)]
        return format(np.mean(values), fmt) if values else ""

    def skipped(method: str, stage: str) -> str:  # optimiser steps skipped over a whole run
        return stat(method, stage, "skipped_update", every, reduce=np.sum, fmt=".1f")

    def frozen(method: str, stage: str) -> str:  # seeds whose run skipped every update: the model did not change
        runs = per_seed(method, stage, "skipped_update")
        return f"{sum(all(r) for r in runs)} of {len(runs)}" if runs else ""

    def spread(method: str, stage: str, key: str, part: slice) -> str:  # mean over seeds [lowest, highest seed]
        values = [np.mean(v) for v in per_seed(method, stage, key, part)]
        return f"{np.mean(values):.2f} [{min(values):.2f}, {max(values):.2f}]" if values else ""

    lines = [
        "## During training (mean over seeds; [lowest, highest seed])",
        "",
        "| method | S-I fully unsolved, first 10 steps -> last 10 | S-I entropy, last 10 | S-I skipped updates "
        "| S-I runs with every update skipped | S-II skipped updates | S-II runs with every update skipped "
        "| S-II answer accuracy, last 10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        before = stat(m, "stage1", "fully_unsolved", first)
        unsolved = f"{before} -> {spread(m, 'stage1', 'fully_unsolved', last)}" if before else ""  # no RL log: ""
        lines.append(
            f"| {LABELS[m]} | {unsolved} | {stat(m, 'stage1', 'entropy', last)} | {skipped(m, 'stage1')} | "
            f"{frozen(m, 'stage1')} | {skipped(m, 'stage2')} of {stage2_steps} | {frozen(m, 'stage2')} | "
            f"{stat(m, 'stage2', 'answer_accuracy', last)} |"
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
    ("self_distill", "sparse", "stage2"), ("sft", "base", "stage2"), ("process", "self_distill", "stage2"),
    ("outcome", "self_distill", "stage2"), ("process", "sft", "stage2"), ("outcome", "sft", "stage2"),
]  # fmt: skip


def paired_markdown(table: dict, seeds: list[int]) -> str:
    """Each ordering the paper reports, seed by seed, per split and per k (analysis.paired): wins-ties-losses of A
    against B over the seeds, the mean difference A - B with its 95% paired-t interval, and the verdict: "held" where
    the interval lies above 0, "reversed" where it lies below, else not separable at this many seeds. The seeds pair
    up: a seed fixes every method's evaluation draws and Stage II's data order. A tie is an equal estimate, e.g. two
    runs that are both the unchanged base model."""
    n = len(seeds)
    lines = ["## The paper's orderings, seed by seed", "",
             f"Each cell: seeds where A > B - equal - A < B, then the mean difference A - B over the {n} seeds with "
             "its 95% paired-t interval; **held** = the interval lies above 0, **reversed** = below 0, otherwise "
             f"the two are not separable at {n} seeds.", "",
             "| ordering | after | split | " + " | ".join(f"pass@{k}" for k in ("1", "16", "n")) + " |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    verdicts = {"held": [], "reversed": []}
    for better, worse, stage in COMPARISONS:
        for split in [s for s in ("dev", "test") if s in table]:
            results = table[split][stage]
            if better not in results or worse not in results:
                continue
            where = "Stage I" if stage == "stage1" else "Stage II"
            cells = []
            for k in shown_ks(results[better]):
                a = [r["pass@k"][k] for r in results[better]]
                b = [r["pass@k"][k] for r in results[worse]]
                if n < 2:  # one seed: no interval
                    cells.append(f"{'-'.join(map(str, paired.wins_ties_losses(a, b)))} ({a[0] - b[0]:+.3f})")
                    continue
                c = paired.compare(a, b)
                cells.append(c["cell"])
                if c["verdict"] in verdicts:
                    verdicts[c["verdict"]].append(f"{LABELS[better]} > {LABELS[worse]} ({where}, {split}, pass@{k})")
            lines.append(f"| {LABELS[better]} > {LABELS[worse]} | {where} | {split} | " + " | ".join(cells) + " |")
    if n >= 2:
        lines += [""] + [f"{v.capitalize()}: " + ("; ".join(found) or "none") + "." for v, found in verdicts.items()]
    return "\n".join(lines + [""])


def report(out: str, header: str = "", seeds: str = "", dest: str = "") -> str:
    """Read out/config.json and the run directories, write results.md, passk.png, stage1_training.png and (two or
    more seeds with a test split) paired.png into dest (default: out); seeds (e.g. "0,1,2") restricts the report to
    those seeds (a reproduction still running), default: the config's."""
    dest = dest or out
    os.makedirs(dest, exist_ok=True)
    c = json.load(open(os.path.join(out, "config.json")))
    methods = [m for m in c["methods"].split(",") if m.strip()]
    seeds = [int(s) for s in (seeds or c["seeds"]).split(",") if s.strip()]
    c["stage2"] = stage2_text(out, c, f"s{seeds[0]}/{methods[0]}/stage2")
    table = collect(out, methods, seeds)
    header = header or f"Recomputed from the run directories in `{out}` (python -m scripts.reproduce_report)."
    headline = headline_markdown(table, seeds)
    text = "\n".join(
        [
            results_markdown(c, table, seeds, header),
            *([headline] if headline else []),
            paired_markdown(table, seeds),
            diagnostics_markdown(out, c["stage2_steps"], methods, seeds),
        ]
    )
    with open(os.path.join(dest, "results.md"), "w") as f:
        f.write(text)
    plot(out, table, methods, seeds, dest)
    if headline:
        plot_paired(dest, table, seeds)
    return text


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m scripts.reproduce_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/reproduce", help="a reproduction's directory (its config.json)")
    parser.add_argument("--seeds", default="", help="only these seeds, e.g. 0,1,2 (default: the config's)")
    parser.add_argument("--report_dir", default="", help="where results.md and the figures go (default: output_dir)")
    cli = parser.parse_args()
    if not os.path.exists(os.path.join(cli.output_dir, "config.json")):
        raise SystemExit(f"error: --output_dir {cli.output_dir}: no config.json (not a reproduction's directory)")
    if cli.seeds and not all(s.strip().isdigit() for s in cli.seeds.split(",")):
        raise SystemExit(f"error: --seeds {cli.seeds!r}: expected comma-separated integers, e.g. 0,1,2")
    config = json.load(open(os.path.join(cli.output_dir, "config.json")))
    for seed in (cli.seeds or config["seeds"]).split(","):  # every column of every seed must have finished
        for method in config["methods"].split(","):
            for stage in ("stage1", "stage2"):
                run = os.path.join(f"s{seed.strip()}", method, stage)
                if not os.path.exists(os.path.join(cli.output_dir, run, "done")):
                    raise SystemExit(f"error: --seeds: {run} has not finished in {cli.output_dir} (no done marker)")
    print(report(cli.output_dir, seeds=cli.seeds, dest=cli.report_dir))
