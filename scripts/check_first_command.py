"""Check that the README's first command prints what the README says it prints (run by .ci/run).

    python -m scripts.check_first_command            # runs `python train_stage1.py` into a temporary directory
    python -m scripts.check_first_command --log F    # checks an existing printout instead

The README states, in its "One measured line", the seed-0 printout on the machine that measured it, the range of
seeds 0-9 there and how many of them rose:

    pass@1 0.018 -> 0.093 and pass@16 0.103 -> 0.289 (seed 0 ...) ... pass@1 went from 0.016-0.021 to
    0.008-0.106 ... and pass@16 from 0.084-0.140 to 0.061-0.289 ...: pass@1 rose in 8 of 10 seeds and pass@16 in 7 of 10

Two runs on one machine print the same digits, but digits differ between CPUs (float rounding grows through sampling
into another trajectory). So the printout passes when it equals the README's seed-0 numbers. Otherwise (another CPU)
the base's evaluation (seeded draws of the untrained model) must lie in the README's range for it, and each metric
must rise where the README says every measured seed rose. The trained numbers are another CPU's draw of the
trajectory, as another seed is: the chance that an 11th draw falls outside the range of 10 is 2 in 11, so the check
reports where they fall against the range but asserts only the direction. The README is read at check time, so the
two cannot drift apart.
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
RANGES = re.compile(
    r"pass@1 went from (\d\.\d+)-(\d\.\d+) to (\d\.\d+)-(\d\.\d+) .*?pass@16 from (\d\.\d+)-(\d\.\d+) to "
    r"(\d\.\d+)-(\d\.\d+)"
)
DIRECTION = re.compile(r"pass@1 rose in (\d+) of (\d+) seeds and pass@16 in (\d+) of (\d+)")
PRINTED = re.compile(r"held-out (before|after)\s*: pass@1 (\d\.\d+)\s+pass@16 (\d\.\d+)")


def readme_claim(text: str) -> dict:
    """The README's seed-0 numbers, the seeds' ranges (pass@1, pass@16) before and after, and per metric whether every
    measured seed rose (newlines ignored).

    Example:
        >>> claim = readme_claim("prints pass@1 0.018 -> 0.093 and pass@16\\n0.103 -> 0.289 (seed 0, ...). pass@1 "
        ...     "went from 0.016-0.021 to 0.008-0.106 (mean ...) and pass@16 from 0.084-0.140 to 0.061-0.289 (...): "
        ...     "pass@1 rose in 10 of 10 seeds and pass@16 in 7 of 10")
        >>> claim["before"], claim["after"], claim["all_rose"]
        ((0.018, 0.103), (0.093, 0.289), (True, False))
        >>> claim["before_range"], claim["after_range"]
        (((0.016, 0.021), (0.084, 0.14)), ((0.008, 0.106), (0.061, 0.289)))
    """
    flat = " ".join(text.split())
    claim, ranges, direction = CLAIM.search(flat), RANGES.search(flat), DIRECTION.search(flat)
    if claim is None or ranges is None or direction is None:
        raise SystemExit(
            "error: README.md: no 'pass@1 A -> B and pass@16 C -> D (seed 0' / 'pass@1 went from A-B to C-D ... "
            "pass@16 from E-F to G-H' / 'pass@1 rose in N of M seeds and pass@16 in N of M' line"
        )
    number = lambda key: float(claim.group(key))
    r = [float(x) for x in ranges.groups()]
    counts = [int(x) for x in direction.groups()]
    all_rose = (counts[0] == counts[1], counts[2] == counts[3])
    return {"before": (number("b1"), number("b16")), "after": (number("a1"), number("a16")), "all_rose": all_rose,
            "before_range": ((r[0], r[1]), (r[4], r[5])), "after_range": ((r[2], r[3]), (r[6], r[7]))}  # fmt: skip


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
    """'' when the printout agrees with the README (the same digits; or the base inside its range and a rise where
    every seed rose), else the one-line reason.

    Example:
        >>> claim = {"before": (0.018, 0.103), "after": (0.093, 0.289), "all_rose": (True, False),
        ...          "before_range": ((0.016, 0.021), (0.084, 0.14)), "after_range": ((0.008, 0.106), (0.061, 0.289))}
        >>> verdict(claim, {"before": (0.018, 0.103), "after": (0.05, 0.09)})  # another CPU: pass@1 rose, as claimed
        ''
        >>> verdict(claim, {"before": (0.018, 0.103), "after": (0.01, 0.2)})
        'pass@1 went 0.018 -> 0.01 here; the README says it rose in every seed'
        >>> verdict(claim, {"before": (0.025, 0.103), "after": (0.093, 0.289)})
        'the base evaluated to pass@1 0.025 here; the README says 0.016-0.021 over seeds 0-9'
    """
    if got == {"before": claim["before"], "after": claim["after"]}:
        return ""
    for i, name in enumerate(("pass@1", "pass@16")):  # the base's seeded evaluation lies in the seeds' range
        low, high = claim["before_range"][i]
        if not low <= got["before"][i] <= high:
            return f"the base evaluated to {name} {got['before'][i]} here; the README says {low}-{high} over seeds 0-9"
    for i, name in enumerate(("pass@1", "pass@16")):
        if claim["all_rose"][i] and not got["after"][i] > got["before"][i]:
            return f"{name} went {got['before'][i]} -> {got['after'][i]} here; the README says it rose in every seed"
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
    shared = [name for name, rose in zip(("pass@1", "pass@16"), claim["all_rose"]) if rose]
    check = f"checked that {' and '.join(shared)} rose" if shared else "no direction shared by every seed to check"
    inside = [low <= got["after"][i] <= high for i, (low, high) in enumerate(claim["after_range"])]
    where = "inside" if all(inside) else "outside (not asserted: another CPU's trajectory is another draw)"
    note = "the same digits" if same else f"other digits: {check}; trained numbers {where} the README's seed range"
    readme = f"{claim['before']} -> {claim['after']}"
    print(f"first command (pass@1, pass@16): {got['before']} -> {got['after']} (README, seed 0: {readme}; {note})")
    if reason:
        raise SystemExit(f"error: the first command contradicts README.md: {reason}")


if __name__ == "__main__":
    main()
