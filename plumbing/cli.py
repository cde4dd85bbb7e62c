"""The command line of every script: documented dataclass fields (`arg`), parsing them (`parse_cli`), and stopping a
bad flag or input with ONE line on stderr and exit status 2 (`fail`, `check_flags`), before anything is loaded.

    error: --group_size 0: must be >= 1
"""

import argparse
import sys
from dataclasses import field

from transformers import HfArgumentParser


class UsageError(SystemExit):
    """Exit status 2 (argparse's) for a bad command line or input; str() is the message (what tests match)."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def fail(message: str):
    """A bad command line or input: one line on stderr, exit status 2, no traceback; raised before anything is
    loaded or written."""
    print(f"error: {message}", file=sys.stderr)
    raise UsageError(message)


def check_flags(args, rules) -> None:
    """rules: (flag name, condition, what the value must be); the first false condition stops with one line naming
    the flag and its value. NaN fails every comparison, so `--lr nan` lands here too.

    Example: check_flags(args, [("n", args.n >= 1, ">= 1")]) with n = 0 -> `error: --n 0: must be >= 1`, exit 2.
    """
    for name, ok, expected in rules:
        if not ok:
            fail(f"--{name} {getattr(args, name)!r}: must be {expected}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the plain scripts (evaluate.py, analysis/): errors are one line, exit status 2, no usage block."""

    def error(self, message: str):
        fail(message)


class _OneLineParser(HfArgumentParser):
    """HfArgumentParser whose errors (unknown flag, invalid choice, bad number) are one line, not the usage block."""

    def error(self, message: str):
        fail(message)


def arg(default, help: str, choices=None):
    """A documented dataclass field of a script's arguments; with `choices`, any other value stops the command line.

    Example: `reward: str = arg("outcome", "outcome | process | sparse", choices=("outcome", "process", "sparse"))`
    """
    metadata = {"help": help} if choices is None else {"help": help, "choices": list(choices)}
    return field(default=default, metadata=metadata)


def parse_cli(dataclass_type, argv: list[str] | None = None):
    """Command line -> (the script's @dataclass of arguments, names of the flags given explicitly).

    Fields with metadata "choices" accept only those values; a wrong one stops here:
    `error: argument --reward: invalid choice: 'foo' (choose from outcome, process, sparse)`.
    """
    argv = sys.argv[1:] if argv is None else argv
    args, unknown = _OneLineParser(dataclass_type).parse_args_into_dataclasses(argv, return_remaining_strings=True)
    if unknown:
        fail(f"unrecognized arguments: {' '.join(unknown)} (--help lists the flags)")
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    return args, given
