"""Every citation of a document resolves inside the repository.

Checked in every tracked .py and .md file (git ls-files):

    docs/paper.md, "Stage II"                a file, then one or more quoted headings ("A", "B"): the file exists and
                                             has a heading with exactly that text (any level, outside code fences);
    [text](results.md#some-heading)          a Markdown link (in .md files), relative to the linking file: the target
                                             exists and, with an anchor, one of its headings has that GitHub anchor.

And no tracked file names the paper-notes file that the repository does not ship: the paper's facts are docs/paper.md.
"""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELF = os.path.relpath(os.path.abspath(__file__), ROOT)  # not scanned: its examples cite wrong headings on purpose
OUTSIDE_NAMES = ("PAPER" + ".md", "../" + "shared")  # spelled in two parts so that this file does not name them

# A citation: a .md path, a comma, then quoted headings separated by commas. A citation may wrap once between its
# parts, also inside a `#` comment; the heading itself must stay on one line.
_SEP = r",[ \t]*(?:\n[ \t]*(?:#[ \t]*)?)?"
_CITATION = re.compile(r"(?<![\w./-])(?P<file>[\w./-]+\.md)" + _SEP + r'"')
_NEXT_HEADING = re.compile(_SEP + r'"')
_LINK = re.compile(r"\]\((?P<target>[^()\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(?P<text>.+?)[ \t]*#*[ \t]*$")


def headings(path: str) -> list[str]:
    """The heading texts of a Markdown file, in order, outside fenced code blocks."""
    found, fenced = [], False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if _FENCE.match(line):
                fenced = not fenced
            elif not fenced and (m := _HEADING.match(line.rstrip("\n"))):
                found.append(m.group("text"))
    return found


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation dropped, spaces to hyphens.

    Example:
        >>> github_anchor("Checkpoints and `--resume`")
        'checkpoints-and---resume'
        >>> github_anchor("Mixed domains (§4.6, Tables 3-6)")
        'mixed-domains-46-tables-3-6'
    """
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: str) -> set[str]:
    """Every anchor GitHub gives a file's headings (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    for text in headings(path):
        base = github_anchor(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        seen.setdefault(base if n == 0 else f"{base}-{n}", 1)
    return set(seen)


def resolve(target: str, source: str) -> str | None:
    """A cited path, relative to the repository root or to the citing file's folder; None if neither exists."""
    for base in (ROOT, os.path.dirname(os.path.join(ROOT, source))):
        path = os.path.normpath(os.path.join(base, target))
        if os.path.exists(path):
            return path
    return None


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def check_citations(text: str, source: str) -> list[str]:
    """Problems with the `file.md, "Heading"` citations in `text` (from the tracked file `source`), one line each."""
    problems = []
    for m in _CITATION.finditer(text):
        where = f"{source}:{line_of(text, m.start())}"
        path = resolve(m.group("file"), source)
        known = headings(path) if path else []
        pos = m.end()  # just after the opening quote of the first heading
        while True:
            end = text.find('"', pos)
            if end < 0 or "\n" in text[pos:end]:
                problems.append(f"{where}: a heading cited from {m.group('file')} is not closed on its line")
                break
            heading = text[pos:end]
            if path is None:
                problems.append(f'{where}: {m.group("file")} (cited with "{heading}") does not exist')
            elif heading not in known:
                problems.append(f'{where}: {m.group("file")} has no heading "{heading}"')
            nxt = _NEXT_HEADING.match(text, end + 1)
            if not nxt:
                break
            pos = nxt.end()
    return problems


def check_links(text: str, source: str) -> list[str]:
    """Problems with the relative Markdown links in `text` (from the tracked .md file `source`): missing targets,
    anchors that no heading of the target has."""
    problems = []
    for m in _LINK.finditer(text):
        target = m.group("target")
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        where = f"{source}:{line_of(text, m.start())}"
        file, _, anchor = target.partition("#")
        path = os.path.join(ROOT, source) if not file else resolve(file, source)
        if path is None or not path.startswith(ROOT):
            problems.append(f"{where}: link target {file} does not exist")
        elif anchor and path.endswith(".md") and anchor not in anchors(path):
            problems.append(f"{where}: {os.path.relpath(path, ROOT)} has no heading with anchor #{anchor}")
    return problems


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [f for f in out.splitlines() if os.path.isfile(os.path.join(ROOT, f))]


def read(source: str) -> str:
    with open(os.path.join(ROOT, source), encoding="utf-8") as f:
        return f.read()


def test_every_citation_and_link_resolves():
    problems = []
    for source in tracked_files():
        if source.endswith((".py", ".md")) and source != SELF:
            text = read(source)
            problems += check_citations(text, source)
            if source.endswith(".md"):
                problems += check_links(text, source)
    assert not problems, "\n".join(problems)


def test_the_paper_page_is_cited_and_its_headings_are_unique():
    cited = [source for source in tracked_files() if source.endswith(".py") and 'docs/paper.md, "' in read(source)]
    assert len(cited) >= 10  # the core files cite it; a sweep that removed the citations would show here
    names = headings(os.path.join(ROOT, "docs", "paper.md"))
    assert len(names) == len(set(names)), "docs/paper.md repeats a heading, so a citation of it is ambiguous"


def test_no_tracked_file_names_files_outside_the_repository():
    problems = []
    for source in tracked_files():
        try:
            text = read(source)
        except UnicodeDecodeError:
            continue  # binary (figures, weights)
        for name in OUTSIDE_NAMES:
            problems += [f"{source}:{line_of(text, m.start())}: {name}" for m in re.finditer(re.escape(name), text)]
    assert not problems, "these point outside the repository:\n" + "\n".join(problems)


def test_checks_report_wrong_headings_files_and_anchors():
    good = 'see (docs/paper.md, "Stage II", "Baselines") and docs/paper.md,\n    # "Evaluation" for the rest'
    assert check_citations(good, "x.py") == []
    bad = 'A (docs/paper.md, "Stage 2"), B (docs/nope.md, "Data"), C (docs/paper.md, "Stage II", "No such heading"),\n'
    bad += 'D (docs/paper.md, "Stage\nII")'
    problems = check_citations(bad, "x.py")
    assert len(problems) == 4, problems
    assert 'x.py:1: docs/paper.md has no heading "Stage 2"' in problems
    assert 'x.py:1: docs/nope.md (cited with "Data") does not exist' in problems
    assert 'x.py:1: docs/paper.md has no heading "No such heading"' in problems
    assert "x.py:2: a heading cited from docs/paper.md is not closed on its line" in problems
    links = "[a](paper.md#stage-ii) [b](paper.md#stage-iii) [c](nope.md) [d](#judge-calibration) [e](https://x.org)"
    assert check_links(links, "docs/paper.md") == [
        "docs/paper.md:1: docs/paper.md has no heading with anchor #stage-iii",
        "docs/paper.md:1: link target nope.md does not exist",
    ]
