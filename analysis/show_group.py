"""See credit assignment: one GRPO group of one training step as an HTML page and a PNG.

    python -m analysis.show_group RUN_DIR [--step 20] [--index 0] [--out DIR]

Reads RUN_DIR/groups.jsonl (one group per line, written by the training loop) and writes DIR/step_000020.html and
DIR/step_000020.png (DIR defaults to RUN_DIR/groups/; groups after the step's first get a suffix, step_000020_g1.*).

How to read the picture: each segment's colour is the advantage A_t that every one of its tokens gets (blue pushes
the tokens up, red pushes them down, white is 0), and under Eq. 2 the first segment is pushed by s_1 - s_T (red
when the response ends better than it started) while each later segment is pushed by its score increase
s_t - s_{t-1}. A judge being gamed shows as many short segments that each get a positive A_t (the policy cuts its
text at "###" to collect small increases) or as high scores s_t on responses whose answer is incorrect. Grey cards
are dropped rollouts (judge score unparseable), which are out of the loss.
"""

import html
import json
import os

from plumbing.cli import ArgumentParser

POSITIVE = (0x30, 0x40, 0xD0)  # full blue: A_t = +scale
NEGATIVE = (0xD0, 0x40, 0x30)  # full red: A_t = -scale (POSITIVE mirrored)

CSS = """
body { font-family: system-ui, sans-serif; max-width: 60em; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1em; margin: 0.8em 0 0.2em; }
.text, .response, .judge-text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.9em; }
.text { background: #f6f6f6; padding: 0.5em; border-radius: 4px; }
.reference { background: repeating-linear-gradient(45deg, #fff7e0, #fff7e0 8px, #fdefc8 8px, #fdefc8 16px);
  border: 1px dashed #c90; }
.hidden-tag { font-size: 0.8em; font-weight: normal; background: #c90; color: #fff; padding: 1px 6px;
  border-radius: 3px; }
.legend { font-size: 0.9em; border-left: 3px solid #999; padding-left: 0.8em; }
.scale { height: 12px; width: 20em; border: 1px solid #999; }
.scale-labels { width: 20em; display: flex; justify-content: space-between; font-size: 0.8em; }
.rollout { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 0.8em; margin: 1em 0; }
.rollout.dropped { background: #eee; color: #777; filter: grayscale(1); opacity: 0.6; }
.response { line-height: 1.9; }
.seg { border-radius: 3px; box-shadow: inset 0 0 0 1px rgba(0, 0, 0, 0.2); padding: 1px 0; }
.badge { display: inline-block; font-family: system-ui, sans-serif; font-size: 0.75em; padding: 0 5px; margin: 0 2px;
  border-radius: 8px; background: #e4e4e4; color: #333; line-height: 1.5; }
.badge.correct { background: #2a8a3a; color: #fff; } .badge.incorrect { background: #888; color: #fff; }
.badge.flag { background: #b35c00; color: #fff; }
details.judge { display: inline-block; } details.judge[open] { display: block; margin: 0.2em 0; }
details.judge summary { cursor: pointer; list-style: none; }
details.judge summary::-webkit-details-marker { display: none; }
.judge-text { background: #fafafa; border: 1px solid #ddd; padding: 0.3em; margin: 0.2em 0; }
.empty { color: #888; font-style: italic; }
"""


def load_group(run_dir: str, step: int | None = None, index: int = 0) -> dict:
    """The group record of `step` (default: the last logged record's step) from RUN_DIR/groups.jsonl.

    A step may log several groups (one per prompt); `index` picks one of them in file order.
    """
    path = os.path.join(run_dir, "groups.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (the training loop writes it; is {run_dir!r} a run directory?)")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
            for key in ("step", "rollouts"):
                if key not in record:
                    raise ValueError(f"{path}:{lineno}: missing field {key!r}")
            records.append(record)
    if not records:
        raise ValueError(f"{path}: no records")
    step = records[-1]["step"] if step is None else step
    groups = [r for r in records if r["step"] == step]
    if not groups:
        steps = sorted({r["step"] for r in records})
        raise ValueError(f"{path}: no group at step {step}; logged steps: {steps[0]}..{steps[-1]} ({len(steps)} steps)")
    if not -len(groups) <= index < len(groups):
        raise ValueError(f"{path}: step {step} has {len(groups)} group(s); index {index} is out of range")
    return groups[index]


def advantage_colour(a: float, scale: float) -> str:
    """CSS colour of advantage `a`: white at 0, blue for a > 0, red for a < 0, full colour at |a| >= scale.

    Example (POSITIVE = #3040d0, halfway to it from white is (255 + 48) / 2 = 151.5 -> 0x98, (255 + 64) / 2 -> 0xa0,
    (255 + 208) / 2 -> 0xe8; the negative side mirrors the red and blue channels):
        >>> advantage_colour(0.0, 1.0), advantage_colour(0.5, 1.0), advantage_colour(-0.5, 1.0)
        ('#ffffff', '#98a0e8', '#e8a098')
        >>> advantage_colour(-3.0, 1.0)
        '#d04030'
    """
    t = min(abs(a) / scale, 1.0) if scale > 0 else 0.0
    end = POSITIVE if a > 0 else NEGATIVE
    return "#" + "".join(f"{round(255 + t * (c - 255)):02x}" for c in end)


def group_scale(record: dict) -> float:
    """The group's largest |A_t| over all segments (the colour scale saturates there); 1.0 if every A_t is 0."""
    values = [abs(seg["advantage"]) for r in record["rollouts"] for seg in r.get("segments", [])]
    return max(values, default=0.0) or 1.0


def fmt_score(s: float | None) -> str:
    return "n/a" if s is None else f"{s:.2f}"


def fmt_adv(a: float | None) -> str:
    return "n/a" if a is None else f"{a + 0.0:+.2f}"  # + 0.0 turns -0.0 into 0.0


def is_outcome(record: dict) -> bool:
    """Outcome-style records (outcome, sparse, ...) carry one advantage per rollout; process ones per segment."""
    return record.get("reward") != "process"


def render_segment(seg: dict, scale: float) -> str:
    """One coloured segment, then its "s=.. A=.." badge (a <details> with the judge's raw output when there is one)."""
    a, s = seg["advantage"], seg.get("score")
    style = f"background:{advantage_colour(a, scale)};color:{'#fff' if abs(a) / scale > 0.55 else '#111'}"
    span = (
        f'<span class="seg" data-advantage="{float(a)!r}" data-score="{"" if s is None else repr(float(s))}" '
        f'style="{style}">{html.escape(seg["text"])}</span>'
    )
    badge = f"s={fmt_score(s)} A={fmt_adv(a)}"
    if not seg.get("judge_text"):
        return span + f'<span class="badge">{badge}</span>'
    return (
        span + f'<details class="judge"><summary class="badge" title="judge output">{badge}</summary>'
        f'<div class="judge-text">{html.escape(seg["judge_text"])}</div></details>'
    )


def render_rollout(i: int, r: dict, record: dict, scale: float) -> str:
    """One rollout card: header badges, the response's segments inline (no whitespace between them: pre-wrap)."""
    correct = r.get("answer_reward", 0.0) >= 1.0
    badges = [
        (
            f'<span class="badge {"correct" if correct else "incorrect"}">'
            f"{'correct' if correct else 'incorrect'} answer</span>"
        )
    ]
    if r.get("truncated"):
        badges.append('<span class="badge flag">truncated</span>')
    if r.get("dropped"):
        badges.append('<span class="badge flag">dropped: judge score unparseable, out of the loss</span>')
    segments = r.get("segments", [])
    if is_outcome(record):
        badges.append(f'<span class="badge">s={fmt_score(r.get("score"))} A={fmt_adv(r.get("advantage"))}</span>')
    else:
        total = sum(seg["advantage"] for seg in segments)
        badges.append(
            f'<span class="badge">T={len(segments)} segments · s_T={fmt_score(r.get("score"))} '
            f"· sum A={fmt_adv(total)}</span>"
        )
    if segments:
        body = "".join(render_segment(seg, scale) for seg in segments)
    elif r.get("text"):
        body = f'<span class="empty">(not segmented)</span> {html.escape(r["text"])}'
    else:
        body = '<span class="empty">(empty response)</span>'
    judge = ""
    if r.get("judge_text"):
        judge = (
            f'<details><summary>judge output</summary><div class="judge-text">{html.escape(r["judge_text"])}'
            f"</div></details>"
        )
    classes = "rollout dropped" if r.get("dropped") else "rollout"
    return (
        f'<div class="{classes}" data-dropped="{str(bool(r.get("dropped"))).lower()}">\n'
        f'<h2>rollout {i} {" ".join(badges)}</h2>\n<div class="response">{body}</div>\n{judge}</div>'
    )


def render_html(record: dict) -> str:
    """The whole self-contained page (inline CSS, no scripts, no external assets) for one group record."""
    esc = html.escape
    scale = group_scale(record)
    rollouts = record["rollouts"]
    title = (
        f"step {record['step']} · reward: {record.get('reward', '?')} · advantage: {record.get('advantage', '?')}"
        + (f" · judge view: {record['process_view']}" if record.get("reward") == "process" else "")
    )
    n_correct = sum(r.get("answer_reward", 0.0) >= 1.0 for r in rollouts)
    n_dropped = sum(bool(r.get("dropped")) for r in rollouts)
    if is_outcome(record):
        how = (
            "The whole response is one segment: every token gets the rollout's advantage A "
            "(s = the judge's score of the whole response, or the 0/1 answer reward for sparse runs)."
        )
    else:
        how = (
            "The response is cut at ### into segments; s = the judge's score s_t of "
            + ("that segment alone" if record.get("process_view") == "segment" else "the prefix up to that segment")
            + " (n/a: unparseable or not judged). Eq. 2: A_1 = s_1 - s_T, A_t = s_t - s_{t-1}."
        )
    neg, pos = advantage_colour(-scale, scale), advantage_colour(scale, scale)
    head = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{esc(title)}</h1>"
    )
    reference = (
        f'<h2>Reference <span class="hidden-tag">hidden from the policy · only the judge reads it</span></h2>\n'
        f'<div class="text reference">{esc(record.get("reference", ""))}</div>'
    )
    legend = (
        f'<div class="legend"><p>Background of each segment = the advantage A given to every token of it: blue pushes '
        f"the tokens up, red pushes them down, white is 0; full colour at |A| = {scale:.2f}, this group's largest. "
        f"{esc(how)} Click a badge s=.. A=.. to read the judge's raw output. Grey cards are dropped (out of the "
        f'loss).</p>\n<div class="scale" style="background:linear-gradient(to right, {neg}, #ffffff, {pos})"></div>\n'
        f'<div class="scale-labels"><span>A = -{scale:.2f}</span><span>0</span><span>A = +{scale:.2f}</span></div>'
        f"</div>"
    )
    parts = [
        head,
        f"<p>{len(rollouts)} rollouts · correct answers: {n_correct} · dropped: {n_dropped}</p>",
        f'<h2>Question (the policy sees only this)</h2>\n<div class="text">{esc(record.get("question", ""))}</div>',
        reference,
        f'<h2>Final answer</h2>\n<div class="text">{esc(record.get("answer", ""))}</div>',
        legend,
    ]
    parts += [render_rollout(i, r, record, scale) for i, r in enumerate(rollouts)]
    return "\n".join(parts) + "\n</body>\n</html>\n"


def row_label(i: int, r: dict, record: dict) -> str:
    """Y-axis label of one rollout: index, answer reward, flags, and its score (and advantage for outcome runs)."""
    flags = ["correct" if r.get("answer_reward", 0.0) >= 1.0 else "incorrect"]
    flags += [f for f in ("truncated", "dropped") if r.get(f)]
    if is_outcome(record):
        scores = f"s={fmt_score(r.get('score'))} A={fmt_adv(r.get('advantage'))}"
    else:
        scores = f"s_T={fmt_score(r.get('score'))}"
    return f"#{i} {', '.join(flags)}\n{scores}"


def render_png(record: dict, path: str) -> None:
    """One row per rollout, its segments as bars (width = characters), coloured by A_t, s_t written where it fits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    scale = group_scale(record)
    rollouts = record["rollouts"]
    cmap = LinearSegmentedColormap.from_list(
        "advantage", [advantage_colour(-scale, scale), "#ffffff", advantage_colour(scale, scale)]
    )
    norm = Normalize(-scale, scale)
    lengths = [
        sum(max(len(seg["text"]), 1) for seg in r.get("segments", [])) or len(r.get("text", "")) for r in rollouts
    ]
    fig, ax = plt.subplots(figsize=(11, 1.3 + 0.55 * max(len(rollouts), 1)))
    labels, placed = [], []  # placed: (s_t text, its bar) to drop the texts that do not fit once laid out
    for i, r in enumerate(rollouts):
        x, dropped = 0, bool(r.get("dropped"))
        style = {"height": 0.8, "edgecolor": "0.3", "linewidth": 0.6, "alpha": 0.35 if dropped else 1.0}
        for seg in r.get("segments", []):
            w, a, s = max(len(seg["text"]), 1), seg["advantage"], seg.get("score")
            (bar,) = ax.barh(i, w, left=x, color=cmap(norm(a)), hatch="//" * dropped, **style)
            if s is not None:
                colour = "white" if abs(a) / scale > 0.55 else "black"
                label = ax.text(x + w / 2, i, f"{s:.2f}", ha="center", va="center", fontsize=7, color=colour)
                placed.append((label, bar))
            x += w
        if not r.get("segments"):
            note = " (empty response)" if not r.get("text") else f" (not segmented, {len(r['text'])} chars)"
            ax.text(0, i, note, va="center", fontsize=8, style="italic", color="0.4")
        labels.append(row_label(i, r, record))
    ax.set_yticks(range(len(rollouts)), labels, fontsize=8)
    ax.set_ylim(len(rollouts) - 0.5, -0.5)  # rollout 0 on top
    ax.set_xlim(0, max(lengths, default=1) or 1)
    ax.set_xlabel("response, segment by segment (bar width = characters); number in a bar = judge score s_t")
    ax.set_title(
        f"step {record['step']} · reward {record.get('reward', '?')} · advantage {record.get('advantage', '?')}"
        f" · colour = A_t (full at |A| = {scale:.2f})",
        fontsize=10,
    )
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="advantage A_t", fraction=0.035, pad=0.01)
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for text, bar in placed:
        if text.get_window_extent(renderer).width > 0.75 * bar.get_window_extent(renderer).width:
            text.remove()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[str]:
    """python -m analysis.show_group RUN_DIR [--step N] [--index I] [--out DIR]; returns the paths written."""
    parser = ArgumentParser(prog="python -m analysis.show_group", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="run directory holding groups.jsonl")
    parser.add_argument("--step", type=int, default=None, help="training step to show (default: the last logged)")
    parser.add_argument("--index", type=int, default=0, help="which of the step's groups, in file order (default 0)")
    parser.add_argument("--out", default=None, help="output directory (default: RUN_DIR/groups/)")
    args = parser.parse_args(argv)
    try:
        record = load_group(args.run_dir, args.step, args.index)
    except (OSError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    out = args.out or os.path.join(args.run_dir, "groups")
    os.makedirs(out, exist_ok=True)
    stem = os.path.join(out, f"step_{record['step']:06d}" + (f"_g{args.index}" if args.index else ""))
    with open(stem + ".html", "w", encoding="utf-8") as f:
        f.write(render_html(record))
    render_png(record, stem + ".png")
    for p in (stem + ".html", stem + ".png"):
        print(f"wrote {p}")
    return [stem + ".html", stem + ".png"]


if __name__ == "__main__":
    main()
