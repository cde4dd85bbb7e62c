"""Judge calibration tables and score histograms (analysis/calibrate.py computes what they show).

calibration_table   markdown rows per reference condition: FPR, FNR, misplacement with 95% intervals, parse
                    failures, inversions (docs/paper.md, "Judge calibration")
plot_histograms     one panel per condition: how often each score 1-5 is given to correct and incorrect rollouts
"""


def percent(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def percent_ci(value, ci) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def calibration_table(results: dict, judge_name: str) -> str:
    """Markdown rows: judge | condition | FPR | FNR | misplacement (%, 95% CI) | parse failures | correct/incorrect."""
    lines = [
        "| judge | condition | FPR % | FNR % | misplacement % | parse fail % | misplacement, failures as < 4 % "
        "| inversion % | correct / incorrect |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for condition, res in results.items():
        r, ci = res["rates"], res["ci"]
        lines.append(
            f"| {judge_name} | {condition} | {percent_ci(r['fpr'], ci['fpr'])} | "
            f"{percent_ci(r['fnr'], ci['fnr'])} | "
            f"{percent_ci(r['misplacement'], ci['misplacement'])} | {percent(r['parse_failure'])} | "
            f"{percent_ci(r['misplacement_failed_as_low'], ci['misplacement_failed_as_low'])} | "
            f"{percent(r.get('inversion'))} | {r['num_correct']} / {r['num_incorrect']} |"
        )
    return "\n".join(lines)


def plot_histograms(results: dict, correct: list[bool], path: str, title: str = "", min_score: int = 4) -> None:
    """One panel per condition: how often each score 1..5 (and a parse failure) is given, correct vs incorrect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["1", "2", "3", "4", "5", "fail"]
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3), squeeze=False)
    for ax, (condition, res) in zip(axes[0], results.items()):
        for offset, want, color in ((-0.2, True, "tab:green"), (0.2, False, "tab:red")):
            scores = [s for s, c in zip(res["scores"], correct) if c == want]
            bins = [sum(s is not None and round(4 * s) + 1 == n for s in scores) for n in range(1, 6)]
            bins.append(sum(s is None for s in scores))
            total = max(len(scores), 1)
            ax.bar(
                [i + offset for i in range(6)],
                [b / total for b in bins],
                width=0.4,
                color=color,
                label=f"{'correct' if want else 'incorrect'} (n={len(scores)})",
            )
        ax.axvline(min_score - 1.5, color="gray", linestyle="--", linewidth=0.8)  # right of it: "judged correct"
        ax.set_xticks(range(6), labels)
        ax.set_title(condition)
        ax.set_xlabel("judge score")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("fraction of rollouts")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
