"""What the sandbox costs: domains.sandbox.run_program against a bare `python -I` subprocess, and a batch of code
rewards.

    python -m scripts.sandbox_bench                      # 40 interleaved pairs, then 64 programs x 10 tests
    python -m scripts.sandbox_bench --pairs 100 --programs 128

1. Overhead per run: the same small stdin program, run alternately by run_program and by a bare
   `subprocess.run([python, "-I", "-c", program], env={})`, so that both see the same machine load. Prints the median
   and range (min..max) of each, the median and range of the per-pair ratio sandbox / bare, and CPU ms per run (for
   the sandbox: the warm server's own time plus that of the keepers and PID 1s it has reaped, from /proc).
2. Throughput: domains.rule_rewards.code_rewards on `programs` LiveCodeBench-style responses x `tests` stdin tests
   each, on all of this machine's cores (one thread per core driving sandbox processes), next to the same runs as bare
   subprocesses (in alternating parts, see throughput).
The numbers in docs/sandbox.md ("Speed") come from this script.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from domains.rule_rewards import CODE_HEADER, code_rewards
from domains.sandbox import run_program

PROGRAM = "n = int(input())\nvalues = list(map(int, input().split()))\nprint(sum(values), max(values))\n"


def bare(program: str, stdin: str, timeout: float = 6.0) -> str:
    """The baseline: a plain subprocess, no protection at all."""
    return subprocess.run(
        [sys.executable, "-I", "-c", program], input=stdin, capture_output=True, text=True, env={}, timeout=timeout
    ).stdout


def spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """'median (min..max)' of values x scale."""
    return (
        f"{statistics.median(values) * scale:.{digits}f} ({min(values) * scale:.{digits}f}"
        f"..{max(values) * scale:.{digits}f})"
    )


def server_cpu_seconds() -> float:
    """CPU seconds of the sandbox's warm server and of the children it has reaped (utime, stime, cutime, cstime)."""
    from domains import sandbox

    fields = open(f"/proc/{sandbox._server['process'].pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def overhead(pairs: int) -> dict:
    """Interleaved single runs: bare, sandbox, bare, sandbox, ...; wall seconds per run, the per-pair ratio, and the
    CPU time of the processes each run started (their rusage, which a loaded machine changes less than wall time)."""
    stdin = "5\n3 1 4 1 5\n"
    run_program(PROGRAM, stdin)  # the first call probes the machine once; not counted
    wall = {"bare": [], "sandbox": []}
    cpu = {"bare": 0.0, "sandbox": 0.0}
    ways = {"bare": lambda: bare(PROGRAM, stdin), "sandbox": lambda: run_program(PROGRAM, stdin).stdout}
    server_before = server_cpu_seconds()
    for _ in range(pairs):
        for name, way in ways.items():
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            assert way() == "14 5\n"
            wall[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if name == "bare":
                cpu[name] += after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
    time.sleep(1.5)  # the server reaps its last keepers within a second
    cpu["sandbox"] = server_cpu_seconds() - server_before
    ratios = [s / b for s, b in zip(wall["sandbox"], wall["bare"])]
    return {
        "bare_ms": spread(wall["bare"], 1000),
        "sandbox_ms": spread(wall["sandbox"], 1000),
        "ratio_of_medians": round(statistics.median(wall["sandbox"]) / statistics.median(wall["bare"]), 2),
        "per_pair_ratio": spread(ratios, digits=2),
        "cpu_ms_per_run": {name: round(seconds / pairs * 1000, 1) for name, seconds in cpu.items()},
    }


def throughput(programs: int, tests: int, workers: int, rounds: int = 4) -> dict:
    """code_rewards on programs x tests (all correct, so every test runs), and the same runs as bare subprocesses.

    The batch is cut into `rounds` parts, each run both ways, alternating which goes first, so that a drift in the
    machine's load falls on both."""
    inputs = [f"{k + 1}\n{' '.join(str(i * k % 97) for i in range(k + 1))}\n" for k in range(tests)]
    outputs = [bare(PROGRAM, x) for x in inputs]
    response = f"Read, sum, max.\n```python\n{PROGRAM}```"
    case = {"inputs": inputs, "outputs": outputs}
    part = programs // rounds

    def sandboxed():
        assert code_rewards([response] * part, [case] * part, workers=workers) == [1.0] * part

    def unprotected():  # the same programs as run_tests builds them, without the sandbox
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda x: bare(CODE_HEADER + PROGRAM, x), inputs * part))

    seconds = {sandboxed: 0.0, unprotected: 0.0}
    for r in range(rounds):
        for way in (sandboxed, unprotected) if r % 2 == 0 else (unprotected, sandboxed):
            start = time.perf_counter()
            way()
            seconds[way] += time.perf_counter() - start
    runs = part * rounds * tests
    return {
        "runs": runs,
        "workers": workers,
        "sandbox_s": round(seconds[sandboxed], 1),
        "bare_s": round(seconds[unprotected], 1),
        "sandbox_runs_per_s": round(runs / seconds[sandboxed], 1),
        "bare_runs_per_s": round(runs / seconds[unprotected], 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="interleaved bare/sandbox pairs for the overhead")
    parser.add_argument("--programs", type=int, default=64, help="responses in the throughput batch")
    parser.add_argument("--tests", type=int, default=10, help="stdin tests per response")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="threads (default: cores)")
    args = parser.parse_args(argv)
    result = {"cores": len(os.sched_getaffinity(0)), "overhead": overhead(args.pairs)}
    print(json.dumps(result["overhead"]), flush=True)
    result["throughput"] = throughput(args.programs, args.tests, args.workers)
    print(json.dumps(result["throughput"]), flush=True)
    return result


if __name__ == "__main__":
    main()
