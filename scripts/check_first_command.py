"""Check that the README's first command prints what the README says it prints (run by .ci/run).

    python -m scripts.check_first_command            # runs `python train_stage1.py` into a temporary directory
    python -m scripts.check_first_command --log F    # checks an existing printout instead

The README states, in its "One measured line", the seed-0 printout on the machine that measured it and the direction
that every seed of 0-9 shared there:

    held-out (dev) pass@1 0.018 -> 0.093 and pass@16 0.103 -> 0.289 (seed 0 ...) ... pass@1 and pass@16 rose in 10 of 10

Two runs on one machine print the same digits, but digits differ between CPUs (float rounding grows through sampling
into another trajectory). So the printout passes when it equals the README's seed-0 numbers; when its digits differ
(another CPU), it must rise wherever the README says every measured seed rose, and where the README states no direction
that every seed shared there is nothing left to check (a line says so). The README is read at check time, so the two
cannot drift apart.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

from plumbing.common import REPO

CLAIM = re.compile(
    r"pass@1 (?P<b1>\d\.\d+) -> (?P<a1>\d\.\d+) and pass@16 (?P<b16>\d\.\d+) -> (?P<a16>\d\.\d+) \(seed 0\b"
)
DIRECTION = re.compile(r"pass@1 and pass@16 rose in (\d+) of (\d+) seeds")
PRINTED = re.compile(r"held-out (before|after)\s*: pass@1 (\d\.\d+)\s+pass@16 (\d\.\d+)")


def readme_claim(text: str) -> dict:
    """The README's seed-0 numbers and whether every seed rose, from its one measured line (newlines ignored).

    Example:
        >>> readme_claim("prints pass@1 0.018 -> 0.093 and pass@16\\n0.103 -> 0.289 (seed 0, ...); "
        ...              "pass@1 and pass@16 rose in 10 of 10 seeds")
        {'before': (0.018, 0.103), 'after': (0.093, 0.289), 'all_rose': True}
    """
    flat = " ".join(text.split())
    claim, direction = CLAIM.search(flat), DIRECTION.search(flat)
    if claim is None or direction is None:
        raise SystemExit(
            "error: README.md: no 'pass@1 A -> B and pass@16 C -> D (seed 0' / 'rose in N of M seeds' line"
        )
    number = lambda key: float(claim.group(key))
    rose, of = int(direction.group(1)), int(direction.group(2))
    return {"before": (number("b1"), number("b16")), "after": (number("a1"), number("a16")), "all_rose": rose == of}


def printed(log: str) -> dict:
    """The 'held-out before/after' lines of a train_stage1 printout -> {"before": (p1, p16), "after": (p1, p16)}.

    Example:
        >>> printed("held-out before: pass@1 0.018  pass@16 0.103\\nheld-out after : pass@1 0.093  pass@16 0.289")
        {'before': (0.018, 0.103), 'after': (0.093, 0.289)}
    """
    found = {which: (float(p1), float(p16)) for which, p1, p16 in PRINTED.findall(log)}
    if set(found) != {"before", "after"}:
        raise SystemExit("error: the printout has no 'held-out before/after' lines (did the run finish?)")
    return found


def verdict(claim: dict, got: dict) -> str:
    """'' when the printout agrees with the README (the same digits, or the direction every seed shared), else the
    one-line reason.

    Example:
        >>> claim = {"before": (0.018, 0.103), "after": (0.093, 0.289), "all_rose": True}
        >>> verdict(claim, {"before": (0.018, 0.103), "after": (0.05, 0.2)})  # another CPU: digits differ, both rose
        ''
        >>> verdict(claim, {"before": (0.018, 0.103), "after": (0.01, 0.2)})
        'pass@1 went 0.018 -> 0.01 here; the README says it rose in every seed'
    """
    if got == {"before": claim["before"], "after": claim["after"]}:
        return ""
    if claim["all_rose"]:
        for i, name in enumerate(("pass@1", "pass@16")):
            if not got["after"][i] > got["before"][i]:
                return (
                    f"{name} went {got['before'][i]} -> {got['after'][i]} here; the README says it rose in every seed"
                )
    return ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", default="", help="an existing printout of `python train_stage1.py` (default: run it)")
    args = parser.parse_args(argv)
    claim = readme_claim(open(os.path.join(REPO, "README.md")).read())
    if args.log:
        log = open(args.log).read()
    else:
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "train_stage1.py", "--output_dir", out]
            log = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
    got = printed(log)
    reason = verdict(claim, got)
    same = got == {"before": claim["before"], "after": claim["after"]}
    check = "checked the direction" if claim["all_rose"] else "no direction shared by every seed to check"
    note = "the same digits" if same else f"other digits: {check}"
    readme = f"{claim['before']} -> {claim['after']}"
    print(f"first command (pass@1, pass@16): {got['before']} -> {got['after']} (README, seed 0: {readme}; {note})")
    if reason:
        raise SystemExit(f"error: the first command contradicts README.md: {reason}")


if __name__ == "__main__":
    main()
