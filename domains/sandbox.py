"""Running model-written code: each program in a fresh, minimal machine of its own, as nobody, behind kernel walls.

`run_program(source, stdin)` runs a Python program and returns its status, stdout, stderr and wall time. On Linux with
user, mount and PID namespaces and seccomp (checked at first use; without them it REFUSES to run anything unless
EXPRL_UNSAFE_SANDBOX=1 asks for an unprotected fallback) the program, and everything it starts:
- identity: runs as uid/gid 65534 (nobody) in a user namespace of its own, with no capabilities, no_new_privs, and
  no way back (setuid and friends fail; root's id is not even mapped); as root, 65534 is also its uid on the host;
- files: sees a new root holding only the interpreter's and the system's libraries (read-only), /dev/null & co, its
  own /proc and a private /tmp of `disk_mb` (its working directory is a new folder there); the host's tree is gone;
- time: is killed at `timeout` seconds of wall clock (SIGKILL: ignoring SIGTERM does not help), and by RLIMIT_CPU;
- memory: has at most `memory_mb` of address space (RLIMIT_AS); no memfd, no shared memory, no SysV IPC (seccomp),
  so nothing holds RAM outside that limit but its tmpfs; it cannot start processes, and threads are bounded
  (MAX_TASKS, RLIMIT_NPROC, which applies since its uid is not root);
- system calls: a seccomp filter refuses sockets (socketpair of AF_UNIX only), namespaces, mounts, exec, ptrace, bpf,
  io_uring, keyrings, inotify, leases and locks, memfd, inode flags, ... and every call newer than the table;
- output: stdout and stderr stop at `output_bytes`; no process of it outlives run_program.
What this does NOT guarantee (kernel bugs, side channels, what readable system files reveal): docs/sandbox.md.

How: the first call starts a warm server (domains/sandbox_launcher.py, `python -I -S`, which has already run `site`).
Per program the server forks a keeper (namespaces; deadline and output cap) which forks PID 1 (new root, limits,
identity, Landlock where present, seccomp), which reports "ok" and only then runs the program: no interpreter
start-up per run. When PID 1 exits or is killed, the kernel kills whatever else is left in its namespace.
"""

import json
import os
import socket
import sys
import threading
import time

UNSAFE_ENV = "EXPRL_UNSAFE_SANDBOX"  # "1": run even where protection is missing (NOT safe; prints what is missing)
MAX_TASKS = 64  # processes + threads of one sandbox (RLIMIT_NPROC, counted inside its own user namespace)
MAX_FILES = 256  # open files of one sandbox (RLIMIT_NOFILE)
DISK_MB = 64  # size of the private tmpfs that is its /tmp and working directory
OUTPUT_BYTES = 16 * 2**20  # stdout and stderr each stop here (RLIMIT_FSIZE); the run's status is "output_limit"
STDERR_CHARS = 4000  # RunResult.stderr keeps the last this many characters
GRACE_SECONDS = 10  # the caller's own deadline past `timeout`, should the keeper never answer
SIGKILL, SIGXCPU = 9, 24  # the same numbers on x86_64 and aarch64


def run_program(
    source: str, stdin: str = "", timeout: float = 6.0, memory_mb: int = 1024, *, disk_mb: int = DISK_MB,
    output_bytes: int = OUTPUT_BYTES,
) -> "RunResult":  # fmt: skip
    """Run the Python program `source` on `stdin` in the sandbox; a RunResult (status "ok" iff it exited 0).

    Otherwise the status says why: "timeout", "memory" (out of memory_mb), "output_limit", "error" (any other non-zero
    exit). Raises SandboxUnavailable, one line, when this machine cannot protect the run (see probe).

    Example:
        >>> run_program("print(int(input()) * 2)", stdin="21\\n").stdout
        '42\\n'
    """
    strict = _protection_ready()
    result, report = _launch(
        source, stdin, timeout=timeout, memory_mb=memory_mb, disk_mb=disk_mb, output_bytes=output_bytes, strict=strict
    )
    if strict and report != "ok" and (report or result.status != "timeout"):  # never run it unprotected
        raise SandboxUnavailable(f"sandbox: this run could not be protected: {report or result.stderr[-300:]!r}")
    return result


class SandboxUnavailable(RuntimeError):
    """This machine lacks a protection the sandbox needs (the message is one line: what is missing, how to opt out)."""


class RunResult:
    """What one run did: status, stdout, the last STDERR_CHARS of stderr, wall-clock seconds, the exit code."""

    def __init__(self, status: str, stdout: str, stderr: str, seconds: float, returncode: int | None):
        self.status, self.stdout, self.stderr, self.seconds = status, stdout, stderr, seconds
        self.returncode = returncode  # negative: killed by that signal

    def __repr__(self) -> str:
        return f"RunResult(status={self.status!r}, seconds={self.seconds:.3f}, stdout={self.stdout[:80]!r})"


# ---------------------------------------------------------------------------------------------------------------------
# The caller's side: probe once, then start the keeper, wait with a deadline, read back the output, clean up.

_missing: list[str] | None = None  # None until probed (threads starting together may each probe); [] when protected
_warned = False


def probe() -> list[str]:
    """The protections this machine lacks ([] if none): an empty program is started strictly and reports them."""
    if sys.platform != "linux":
        return ["Linux (namespaces, seccomp)"]
    result, report = _launch("pass", "", timeout=30.0, memory_mb=256, disk_mb=1, output_bytes=2**16, strict=True)
    if report == "ok":
        return []
    last_line = (result.stderr.strip().splitlines() or ["no report"])[-1]
    return report.split("; ") if report else [f"a working sandbox ({last_line[-300:]})"]


def _protection_ready() -> bool:
    """True when fully protected; False when protection is missing but UNSAFE_ENV opts in; else SandboxUnavailable."""
    global _missing, _warned
    if _missing is None:
        _missing = probe()
    if not _missing:
        return True
    missing = "; ".join(_missing)
    if os.environ.get(UNSAFE_ENV) != "1" or sys.platform != "linux":
        raise SandboxUnavailable(
            f"sandbox: refusing to run model-written code: this machine lacks {missing}; set {UNSAFE_ENV}=1 to run "
            "it without that protection (unsafe, Linux only, see docs/sandbox.md)"
        )
    if not _warned:
        print(f"sandbox: WARNING: {UNSAFE_ENV}=1: running model-written code WITHOUT {missing}", file=sys.stderr)
        _warned = True
    return False


def _launch(source, stdin, *, timeout, memory_mb, disk_mb, output_bytes, strict):
    """Send one run to the server, wait for the keeper's answer, read back the output; (RunResult, report)."""
    import shutil
    import tempfile

    workdir = "" if strict else tempfile.mkdtemp(prefix="exprl-sandbox-")  # used only where no new root can be made
    fds = {name: os.memfd_create(name) for name in ("source", "stdin", "stdout", "stderr")}
    os.pwrite(fds["source"], source.encode(errors="replace"), 0)  # pwrite: the offset stays 0, where reading starts
    os.pwrite(fds["stdin"], stdin.encode(errors="replace"), 0)  # ("replace": a lone surrogate must not crash a reward)
    params = {"strict": strict, "timeout": timeout, "memory_mb": memory_mb, "disk_mb": disk_mb, "workdir": workdir}
    params |= {"output_bytes": output_bytes, "max_tasks": MAX_TASKS, "max_files": MAX_FILES}
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    start = time.monotonic()
    try:
        _request(json.dumps(params).encode(), [theirs.fileno(), *fds.values()])
        theirs.close()
        mine.settimeout(timeout + GRACE_SECONDS)
        try:
            answer = json.loads(mine.recv(1 << 16) or b'{"code": null, "stopped": null, "report": ""}')
        except socket.timeout:  # the keeper never answered; closing our end makes it kill the run
            answer = {"code": None, "stopped": "timeout", "report": ""}
        seconds = time.monotonic() - start
        sizes = [os.fstat(fds[name]).st_size for name in ("stdout", "stderr")]
        stdout = os.pread(fds["stdout"], min(sizes[0], output_bytes), 0).decode(errors="replace")
        tail = os.pread(fds["stderr"], 4 * STDERR_CHARS, max(0, sizes[1] - 4 * STDERR_CHARS))
        stderr = tail.decode(errors="replace")[-STDERR_CHARS:]
    finally:
        for fd in fds.values():
            os.close(fd)
        mine.close()
        theirs.close()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    code = answer["code"]
    if answer["stopped"]:
        status = answer["stopped"]
    elif max(sizes) >= output_bytes:
        status = "output_limit"
    elif code == 0:
        status = "ok"
    elif code in (-SIGXCPU, -SIGKILL):  # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one
        status = "timeout"
    elif "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        status = "memory"
    else:
        status = "error"
    return RunResult(status, stdout, stderr, seconds, code), answer["report"]


# ---------------------------------------------------------------------------------------------------------------------
# The warm server: one per caller process (a forked caller starts its own), stopped when the caller closes its socket.

_HERE = os.path.dirname(os.path.abspath(__file__))
_BOOT = (
    f"import sys; sys.path.append({_HERE!r}); import sandbox_launcher; "
    f"sandbox_launcher.run(*sandbox_launcher.serve(sys.argv[1], {_HERE!r}))"
)  # the server runs serve(); only a sandboxed PID 1 comes back from it, and runs the program
_server: dict = {}
_server_lock = threading.Lock()


def _request(message: bytes, fds: list[int]) -> None:
    """Hand one run to the server, starting it (again) if this process has none or it has died."""
    with _server_lock:
        for attempt in range(2):
            if _server.get("owner") != os.getpid() or _server["process"].poll() is not None:
                _start_server()
            try:
                socket.send_fds(_server["socket"], [message], fds)
                return
            except OSError:
                if attempt:
                    raise
                _stop_server()


def _start_server() -> None:
    import subprocess

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _BOOT, str(theirs.fileno())], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, env={}, cwd="/", pass_fds=(theirs.fileno(),), start_new_session=True,
    )  # fmt: skip
    theirs.close()
    _server.update(owner=os.getpid(), socket=ours, process=process)


def _stop_server() -> None:
    """Close the server's socket (it exits) and reap it; runs in flight finish on their own."""
    if _server.get("owner") == os.getpid():
        _server["socket"].close()
        _server["process"].wait()
    _server.clear()
