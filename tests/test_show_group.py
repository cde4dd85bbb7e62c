"""analysis/show_group.py: the HTML page (parsed with html.parser), the PNG, record selection, the colour scale."""

import json
from html.parser import HTMLParser

import pytest

from analysis.show_group import advantage_colour, load_group, main, render_html

SEG_TEXTS = ["Let x = √2 ≈ 1.41 — ok\n###", " so x·x = 2 <b>not bold</b>\n###", " answer: 2"]


def process_record(step: int) -> dict:
    """3 rollouts: Eq. 2 on s = [0.25, 0.75, 1.0]; a dropped one (null score); an empty response (no segments)."""
    # Eq. 2: A_1 = s_1 - s_T = 0.25 - 1.0 = -0.75, A_2 = 0.75 - 0.25 = 0.5, A_3 = 1.0 - 0.75 = 0.25
    good = {
        "text": "".join(SEG_TEXTS),
        "score": 1.0,
        "advantage": None,
        "judge_text": "",
        "answer_reward": 1.0,
        "truncated": False,
        "dropped": False,
        "segments": [
            {"text": t, "score": s, "advantage": a, "judge_text": f"Score: {j}"}
            for t, s, a, j in zip(SEG_TEXTS, [0.25, 0.75, 1.0], [-0.75, 0.5, 0.25], [2, 4, 5])
        ],
    }
    dropped = {
        "text": "I think it is 3",
        "score": None,
        "advantage": None,
        "judge_text": "",
        "answer_reward": 0.0,
        "truncated": True,
        "dropped": True,
        "segments": [{"text": "I think it is 3", "score": None, "advantage": 0.0, "judge_text": "hmm, unsure"}],
    }
    empty = {
        "text": "",
        "score": None,
        "advantage": None,
        "judge_text": "",
        "answer_reward": 0.0,
        "truncated": False,
        "dropped": False,
        "segments": [],
    }
    return {
        "step": step,
        "reward": "process",
        "advantage": "delta",
        "process_view": "prefix",
        "question": "What is x·x if x = √2?",
        "reference": "x² = 2 <i>by definition</i>",
        "answer": "2",
        "rollouts": [good, dropped, empty],
    }


def outcome_record(step: int) -> dict:
    """2 rollouts, one segment each: judge scores 0.8 and 0.2, group advantages +1 and -1."""
    rollouts = [
        {
            "text": t,
            "score": s,
            "advantage": a,
            "judge_text": f"Score: {j}",
            "answer_reward": c,
            "truncated": False,
            "dropped": False,
            "segments": [{"text": t, "score": s, "advantage": a, "judge_text": ""}],
        }
        for t, s, a, j, c in [("x = 2", 0.8, 1.0, 4, 1.0), ("x = 5", 0.2, -1.0, 1, 0.0)]
    ]
    return {
        "step": step,
        "reward": "outcome",
        "advantage": "group",
        "process_view": "prefix",
        "question": "q",
        "reference": "r",
        "answer": "2",
        "rollouts": rollouts,
    }


class PageParser(HTMLParser):
    """Collects, in document order: segment spans (attrs + text), rollout cards (attrs + text), all tags, all text."""

    def __init__(self):
        super().__init__()
        self.segs, self.cards, self.tags, self.text = [], [], [], []
        self.in_seg, self.div_depth = False, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        classes = (attrs.get("class") or "").split()
        if tag == "span" and "seg" in classes:
            self.segs.append({**attrs, "text": ""})
            self.in_seg = True
        if tag == "div":
            if "rollout" in classes:
                self.cards.append({**attrs, "text": ""})
                self.div_depth = 1
            elif self.div_depth:
                self.div_depth += 1

    def handle_endtag(self, tag):
        if tag == "span":
            self.in_seg = False
        if tag == "div" and self.div_depth:
            self.div_depth -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self.in_seg:
            self.segs[-1]["text"] += data
        if self.div_depth:
            self.cards[-1]["text"] += data


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def background_rgb(style: str) -> tuple[int, int, int]:
    """'background:#d04030;color:#fff' -> (208, 64, 48)"""
    value = dict(item.split(":") for item in style.split(";"))["background"].strip()
    return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "groups.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in (process_record(20), outcome_record(30)))  # 30: the last logged
    return run


def test_advantage_colour_white_at_zero_and_mirrored():
    assert advantage_colour(0, 1) == "#ffffff"
    assert advantage_colour(0.0, 0.0) == "#ffffff"
    # POSITIVE = (0x30, 0x40, 0xd0); a quarter of the way from white: 255 - 0.25 * (255 - 48) = 203.25 -> 203 = 0xcb,
    # 255 - 0.25 * 191 = 207.25 -> 0xcf, 255 - 0.25 * 47 = 243.25 -> 0xf3
    assert advantage_colour(0.25, 1.0) == "#cbcff3"
    assert advantage_colour(-0.25, 1.0) == "#f3cfcb"
    for x in (0.1, 0.5, 0.9, 3.0):  # +x and -x: same green, red and blue swapped
        pos, neg = advantage_colour(x, 1.0), advantage_colour(-x, 1.0)
        assert neg == "#" + pos[5:7] + pos[3:5] + pos[1:3]
    assert advantage_colour(3.0, 1.0) == advantage_colour(1.0, 1.0) == "#3040d0"  # saturates at the scale


def test_load_group_picks_step_and_index(run_dir):
    assert load_group(str(run_dir))["step"] == 30  # default: the last logged step
    assert load_group(str(run_dir), 20)["reward"] == "process"
    with pytest.raises(ValueError, match="no group at step 25; logged steps: 20..30"):
        load_group(str(run_dir), 25)
    with pytest.raises(ValueError, match="step 20 has 1 group"):
        load_group(str(run_dir), 20, index=1)
    with pytest.raises(FileNotFoundError, match="groups.jsonl"):
        load_group(str(run_dir / "missing"))


def test_main_writes_process_page_and_png(run_dir, tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "out"
    paths = main([str(run_dir), "--step", "20", "--out", str(out)])
    assert paths == [str(out / "step_000020.html"), str(out / "step_000020.png")]
    assert capsys.readouterr().out.splitlines() == [f"wrote {p}" for p in paths]

    page = parse((out / "step_000020.html").read_text(encoding="utf-8"))
    # segments in document order: the good rollout's 3, then the dropped rollout's 1; the empty one has none
    assert [s["text"] for s in page.segs] == SEG_TEXTS + ["I think it is 3"]
    assert [float(s["data-advantage"]) for s in page.segs] == [-0.75, 0.5, 0.25, 0.0]
    assert [s["data-score"] for s in page.segs] == ["0.25", "0.75", "1.0", ""]
    colours = [background_rgb(s["style"]) for s in page.segs]
    assert colours[0][0] > colours[0][2]  # A = -0.75: red
    assert colours[1][2] > colours[1][0] and colours[2][2] > colours[2][0]  # A = +0.5, +0.25: blue
    assert colours[3] == (255, 255, 255)  # A = 0: white
    assert colours[0] == (0xD0, 0x40, 0x30)  # |A| = 0.75 is the group's max: full red
    assert colours[1][0] < colours[2][0]  # +0.5 is darker blue than +0.25
    # "<b>" and "<i>" are text, never tags
    assert "b" not in page.tags and "i" not in page.tags
    assert "<i>by definition</i>" in "".join(page.text)
    # three cards: the dropped one is marked, the empty one renders
    assert [c["data-dropped"] for c in page.cards] == ["false", "true", "false"]
    assert "dropped" in page.cards[1]["class"].split()
    assert "dropped: judge score unparseable" in page.cards[1]["text"]
    assert "truncated" in page.cards[1]["text"]
    assert "(empty response)" in page.cards[2]["text"]
    assert "correct answer" in page.cards[0]["text"] and "incorrect answer" in page.cards[2]["text"]
    # badges and judge outputs: sum of Eq. 2 advantages is 0
    assert "s=0.25 A=-0.75" in page.cards[0]["text"] and "s=1.00 A=+0.25" in page.cards[0]["text"]
    assert "Score: 4" in page.cards[0]["text"] and "sum A=+0.00" in page.cards[0]["text"]
    assert "s=n/a A=+0.00" in page.cards[1]["text"] and "hmm, unsure" in page.cards[1]["text"]
    assert page.tags.count("details") == 4  # one judge output per segment
    assert "script" not in page.tags and "link" not in page.tags  # self-contained

    png = (out / "step_000020.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    image = matplotlib.image.imread(str(out / "step_000020.png"))
    assert image.ndim == 3 and image.shape[0] > 150 and image.shape[1] > 800


def test_outcome_record_one_segment_per_rollout(run_dir, tmp_path):
    out = tmp_path / "out"
    paths = main([str(run_dir), "--out", str(out)])  # default step: 30, the outcome record
    assert paths[0].endswith("step_000030.html")
    page = parse((out / "step_000030.html").read_text(encoding="utf-8"))
    assert [(s["text"], float(s["data-advantage"])) for s in page.segs] == [("x = 2", 1.0), ("x = 5", -1.0)]
    rgb = [background_rgb(s["style"]) for s in page.segs]
    assert rgb == [(0x30, 0x40, 0xD0), (0xD0, 0x40, 0x30)]  # |A| = 1 = the group's max: full blue, full red
    assert "s=0.80 A=+1.00" in page.cards[0]["text"] and "s=0.20 A=-1.00" in page.cards[1]["text"]
    assert "Score: 4" in page.cards[0]["text"]  # the rollout's raw judge output
    assert "advantage: group" in "".join(page.text)


def test_render_html_all_zero_advantages_is_white():
    record = outcome_record(1)
    for r in record["rollouts"]:
        r["advantage"] = r["segments"][0]["advantage"] = 0.0
    page = parse(render_html(record))
    assert [background_rgb(s["style"]) for s in page.segs] == [(255, 255, 255)] * 2
