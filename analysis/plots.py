"""Training-time diagnostics of several runs on shared axes (docs/paper.md, "Training-time metrics";
Figure 3 of the paper).

    python -m analysis.plots runs/outcome runs/process runs/sparse --out fig3.png

Each RUN_DIR holds the metrics.jsonl that train_stage1.py writes. A metric a run did not log (segments per response
exists only for process rewards; KL to the base only with --kl_coef > 0) is simply absent from that run's line.
"""

import json
import os

from plumbing.cli import ArgumentParser

# metrics.jsonl column -> panel title
PANELS = {
    "fully_unsolved": "fully-unsolved prompts (fraction)",
    "entropy": "token entropy",
    "response_length": "response length (tokens)",
    "kl_ref": "KL to the base (k3, in the loss)",
    "segments_per_response": "segments per response",
    "judge_score": "mean judge score",
}


def read_metrics(run_dir: str) -> list[dict]:
    """The rows of RUN_DIR/metrics.jsonl (one per step), in order."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over up to `window` points (window 1 = raw).

    Example:
        >>> smooth([0.0, 2.0, 4.0, 6.0], 2)
        [0.0, 1.0, 3.0, 5.0]
    """
    return [
        sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]


def plot_runs(
    run_dirs: list[str], out: str, labels: list[str] | None = None, window: int = 5, panels: dict[str, str] = PANELS
) -> list[str]:
    """One panel per metric, one line per run (shared step axis); returns the metrics that were drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    runs = [read_metrics(d) for d in run_dirs]
    drawn = [k for k in panels if any(k in row for rows in runs for row in rows)]
    if not drawn:
        raise ValueError(f"none of {list(panels)} is logged in {run_dirs}")
    cols = min(3, len(drawn))
    rows_n = (len(drawn) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3 * rows_n), squeeze=False)
    for ax, key in zip(axes.flat, drawn):
        for i, (rows, label) in enumerate(zip(runs, labels)):
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if points:  # color C{i}: a run keeps its color in every panel, also where other runs are absent
                steps, values = zip(*points)
                ax.plot(steps, smooth(list(values), window), label=label, color=f"C{i % 10}")
        ax.set_title(panels[key], fontsize=9)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(drawn) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return drawn


def main(argv: list[str] | None = None) -> list[str]:
    """python -m analysis.plots RUN_DIR [RUN_DIR ...] --out fig.png [--labels a b ...] [--window 5]"""
    parser = ArgumentParser(prog="python -m analysis.plots", description="training diagnostics of runs, shared axes")
    parser.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl)")
    parser.add_argument("--out", default="runs/diagnostics.png", help="PNG to write")
    parser.add_argument("--labels", nargs="*", default=None, help="one label per run (default: directory names)")
    parser.add_argument("--window", type=int, default=5, help="moving-average window in steps (1 = raw)")
    args = parser.parse_args(argv)
    drawn = plot_runs(args.runs, args.out, args.labels, args.window)
    print(f"wrote {args.out}: {', '.join(drawn)}")
    return drawn


if __name__ == "__main__":
    main()
