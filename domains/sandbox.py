"""Running model-written code: each program in its own process, behind kernel walls it cannot climb.

`run_program(source, stdin)` runs a Python program and returns its status, stdout, stderr and wall time. On Linux with
user namespaces, Landlock and seccomp (checked at first use; without them it REFUSES to run anything unless
EXPRL_UNSAFE_SANDBOX=1 asks for an unprotected fallback) the program, and everything it starts:
- time: is killed at `timeout` seconds of wall clock (SIGKILL: ignoring SIGTERM does not help), and by RLIMIT_CPU;
- memory: has at most `memory_mb` of address space (RLIMIT_AS); since it cannot start processes (fork, vfork and clone
  without CLONE_THREAD fail, seccomp) this bounds the whole sandbox, and threads are bounded too (MAX_TASKS);
- files: reads only the interpreter and the system's libraries (Landlock), writes only in a fresh tmpfs of `disk_mb`
  over /tmp (its working directory is a new folder there) in a private mount namespace that vanishes with it;
  stdout and stderr stop at `output_bytes`;
- network: has none, not even 127.0.0.1 (a new network namespace, nothing up; Landlock denies TCP as well);
- everything else: gets an empty environment, no capabilities, no new privileges, its own PID and IPC namespaces (it
  sees and signals nothing outside), and a seccomp filter against the kernel's riskier calls (namespaces, mounts,
  ptrace, bpf, io_uring, keyrings, chmod/chown of files, ...); no process of it outlives run_program.
What this does NOT guarantee (kernel bugs, side channels, what stat() or readable system files reveal): docs/sandbox.md.

How: the caller starts `python -I -S -c <_KEEPER>` in a new session. That "keeper" unshares the namespaces and forks
PID 1 of the new PID namespace, which confines itself, reports "ok" on a pipe and only then runs the program. When
PID 1 exits or is killed, the kernel kills whatever else is left in its namespace.
"""

import _signal  # the signal module without its enum layer, which would cost the sandbox's start-up milliseconds
import ctypes
import os
import resource
import struct
import sys
import time

UNSAFE_ENV = "EXPRL_UNSAFE_SANDBOX"  # "1": run even where protection is missing (NOT safe; prints what is missing)
SANDBOX_UID = 61_000_000  # the code's real uid when the caller is root (RLIMIT_NPROC counts per real uid)
MAX_TASKS = 64  # processes + threads of one sandbox (RLIMIT_NPROC, counted inside its own user namespace)
MAX_FILES = 256  # open files of one sandbox (RLIMIT_NOFILE)
DISK_MB = 64  # size of the private tmpfs that is its working directory
OUTPUT_BYTES = 16 * 2**20  # stdout and stderr each stop here (RLIMIT_FSIZE); the run's status is "output_limit"
STDERR_CHARS = 4000  # RunResult.stderr keeps the last this many characters
POLL_SECONDS = 0.05  # how often the caller checks the output size while the program runs
SIGKILL, SIGTERM, SIGXCPU = 9, 15, 24  # the same numbers on x86_64 and aarch64
READ_ONLY = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime", "/dev/urandom", "/dev/zero"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
if sys.platform == "linux":
    _libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4


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
    result, report = _launch(source, stdin, timeout, memory_mb, disk_mb, output_bytes, strict)
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
        return ["Linux (namespaces, Landlock, seccomp)"]
    result, report = _launch("pass", "", 30.0, 256, 1, 2**16, strict=True)
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


def _launch(source, stdin, timeout, memory_mb, disk_mb, output_bytes, strict):
    """Start the keeper on memfds, wait, clean up; (RunResult, PID 1's report: "ok" or what it could not set up)."""
    import shutil
    import subprocess
    import tempfile

    workdir = "/tmp" if strict else tempfile.mkdtemp(prefix="exprl-sandbox-")  # strict: a private tmpfs on /tmp
    fds = {name: os.memfd_create(name) for name in ("source", "stdin", "stdout", "stderr")}
    os.pwrite(fds["source"], source.encode(errors="replace"), 0)  # pwrite: the offset stays 0, where reading starts
    os.pwrite(fds["stdin"], stdin.encode(errors="replace"), 0)  # ("replace": a lone surrogate must not crash a reward)
    report_read, report_write = os.pipe()
    to_close = [*fds.values(), report_read, report_write]
    command = [sys.executable, "-I", "-S", "-c", _KEEPER, str(int(strict)), str(report_write), str(fds["source"])]
    command += [workdir, str(timeout), str(memory_mb), str(disk_mb), str(output_bytes)]
    start = time.monotonic()
    try:
        keeper = subprocess.Popen(
            command, stdin=fds["stdin"], stdout=fds["stdout"], stderr=fds["stderr"], env={}, cwd="/",
            pass_fds=(report_write, fds["source"]), start_new_session=True,
        )  # fmt: skip
        os.close(report_write)
        to_close.remove(report_write)
        stopped = _wait(keeper, start + timeout, fds["stdout"], fds["stderr"], output_bytes)
        seconds = time.monotonic() - start
        report = os.read(report_read, 4096).decode(errors="replace")
        sizes = [os.fstat(fds[name]).st_size for name in ("stdout", "stderr")]
        stdout = os.pread(fds["stdout"], min(sizes[0], output_bytes), 0).decode(errors="replace")
        tail = os.pread(fds["stderr"], 4 * STDERR_CHARS, max(0, sizes[1] - 4 * STDERR_CHARS))
        stderr = tail.decode(errors="replace")[-STDERR_CHARS:]
    finally:
        for fd in to_close:
            os.close(fd)
        if not strict:
            shutil.rmtree(workdir, ignore_errors=True)
    code = keeper.returncode
    if stopped:
        status = stopped
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
    return RunResult(status, stdout, stderr, seconds, code), report


def _wait(keeper, deadline: float, stdout_fd: int, stderr_fd: int, output_bytes: int) -> str | None:
    """Wait for the keeper until `deadline`; stop the sandbox on time, on a full output or if interrupted. Why, or None.

    Stopping: SIGTERM to the keeper, which SIGKILLs PID 1 and reaps it, so the PID namespace is empty when it exits
    (SIGKILL to its process group if it has not within 2 s). A last SIGKILL to the group while the keeper is a zombie
    (its pid, so its group id, cannot be reused yet), then it is reaped."""
    import select

    pidfd = os.pidfd_open(keeper.pid)  # readable once the keeper has exited; poll, not select: any fd number works
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    exited = lambda seconds: bool(poller.poll(None if seconds is None else max(0, seconds) * 1000))
    stopped = "interrupted"  # unless the loop ends
    try:
        while True:
            if exited(min(POLL_SECONDS, deadline - time.monotonic())):
                stopped = None
            elif time.monotonic() >= deadline:
                stopped = "timeout"
            elif max(os.fstat(stdout_fd).st_size, os.fstat(stderr_fd).st_size) >= output_bytes:
                stopped = "output_limit"
            else:
                continue
            break
    finally:
        if stopped:
            os.kill(keeper.pid, SIGTERM)
            if not exited(2.0):
                os.killpg(keeper.pid, SIGKILL)
                exited(None)
        try:
            os.killpg(keeper.pid, SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        keeper.wait()
        os.close(pidfd)
    return stopped


# ---------------------------------------------------------------------------------------------------------------------
# The sandbox's side: the keeper runs _KEEPER (no `site` yet: a small process forks fast), then PID 1 runs the program.

_HERE = os.path.dirname(os.path.abspath(__file__))
_KEEPER = f"import sys; sys.path.append({_HERE!r}); import sandbox; sandbox._child_main(*sys.argv[1:])"  # stdlib first
CLONE_NEWUSER = 0x10000000
NAMESPACES = {0x20000: "mount", 0x40000000: "network", 0x8000000: "IPC", 0x20000000: "PID"}  # CLONE_NEW* flags
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 1, 22, 38


def _child_main(strict, report_fd, source_fd, workdir, timeout, memory_mb, disk_mb, output_bytes) -> None:
    """The keeper: isolate, fork PID 1, relay its exit. PID 1: confine itself, report, run the program."""
    report_fd, source_fd = int(report_fd), int(source_fd)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    child, stop = [0], [False]

    def on_sigterm(*_):  # the caller's deadline: kill PID 1 (and with it the namespace), then exit as it did
        stop[0] = True
        child[0] and os.kill(child[0], SIGKILL)

    _signal.signal(SIGTERM, on_sigterm)
    missing = _isolate()
    child[0] = os.fork()
    if child[0]:  # the keeper: outside the new PID namespace, so the program cannot see or signal it
        os.close(report_fd)
        if stop[0]:
            os.kill(child[0], SIGKILL)
        code = os.waitstatus_to_exitcode(os.waitpid(child[0], 0)[1])
        if code < 0:  # die of the same signal, so that the caller sees it
            if -code != SIGKILL:
                _signal.signal(-code, _signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code)
    _signal.signal(SIGTERM, _signal.SIG_DFL)
    own_mounts = not any("mount" in m for m in missing)  # else a tmpfs would cover the host's directory
    missing += _confine(workdir, own_mounts, float(timeout), int(memory_mb), int(disk_mb), int(output_bytes))
    os.write(report_fd, ("; ".join(missing) or "ok").encode())
    os.close(report_fd)
    if missing and strict == "1":
        os._exit(0)  # never run the program with a protection missing, unless the caller opted in
    with os.fdopen(source_fd, "rb") as f:
        code = compile(f.read(), "solution.py", "exec")
    sys.path.remove(_HERE)  # the repository, which _KEEPER added; then what `python -I` sets up (site-packages, exit())
    import site

    site.main()
    main = type(sys)("__main__")  # a fresh __main__ module, so `if __name__ == "__main__":` works as usual
    sys.modules["__main__"], sys.argv = main, ["solution.py"]
    exec(code, main.__dict__)


def _isolate() -> list[str]:
    """In the keeper: a real uid of its own, then new user, mount, network, IPC and PID namespaces. What failed.

    Root's real uid becomes SANDBOX_UID (the kernel never applies RLIMIT_NPROC to uid 0); the effective uid stays, so
    the interpreter stays readable (in /root/.pyenv, say): Landlock and seccomp guard the files, not permissions."""
    missing = []
    if os.getuid() == 0:
        try:
            os.setgroups([])
            os.setresuid(SANDBOX_UID, 0, 0)
        except OSError as e:
            missing.append(f"a real uid of its own ({e.strerror})")
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER | sum(NAMESPACES)) == 0:
        flags = 0
    elif _libc.unshare(CLONE_NEWUSER) == 0:
        flags = sum(NAMESPACES)
    else:
        return missing + [f"user, mount, network, IPC and PID namespaces ({os.strerror(ctypes.get_errno())})"]
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)  # map our own effective uid and gid only: no other id exists in here
    for flag, name in NAMESPACES.items():
        if flags & flag and _libc.unshare(flag) != 0:
            missing.append(f"{name} namespaces ({os.strerror(ctypes.get_errno())})")
    return missing


def _confine(base: str, own_mounts: bool, timeout: float, memory_mb: int, disk_mb: int, output_bytes: int):
    """In PID 1, before the program: private tmpfs, limits, no privileges, Landlock, seccomp. What failed (a list).

    The tmpfs covers `base` (/tmp); the program starts in a new folder of it, a path that never exists on the host."""
    missing = []

    def attempt(name, step) -> bool:
        try:
            step()
            return True
        except OSError as e:
            missing.append(f"{name} ({e.strerror or e})")
            return False

    _libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)  # if the keeper dies, so does PID 1 (and the namespace)
    size = f"size={disk_mb}m,nr_inodes=1024".encode()
    tmpfs = (b"tmpfs", base.encode(), b"tmpfs", ctypes.c_ulong(0x2 | 0x4), size)  # flags: nosuid, nodev
    mounted = own_mounts and attempt("a private tmpfs", lambda: _checked(_libc.mount(*tmpfs)))
    workdir = os.path.join(base, f"exprl-sandbox-{os.urandom(6).hex()}") if mounted else base
    if mounted:
        os.mkdir(workdir, 0o700)
    os.chdir(workdir)
    limits = {resource.RLIMIT_AS: memory_mb * 2**20, resource.RLIMIT_NPROC: MAX_TASKS}
    limits |= {resource.RLIMIT_NOFILE: MAX_FILES, resource.RLIMIT_FSIZE: output_bytes}
    for limit, value in limits.items():
        resource.setrlimit(limit, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (int(timeout) + 1, int(timeout) + 2))  # SIGXCPU, a second later SIGKILL
    attempt("no_new_privs", lambda: _checked(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)))
    attempt("Landlock", lambda: _landlock(base))  # all rights in the tmpfs, or in the caller's temporary folder
    capabilities_none = (struct.pack("Ii", 0x20080522, 0), bytes(24))  # _LINUX_CAPABILITY_VERSION_3, all sets empty
    attempt("a capability drop", lambda: _checked(_libc.capset(*capabilities_none)))
    attempt("seccomp", _seccomp)
    return missing


def _checked(result: int) -> int:
    """The result of a libc call, or OSError from errno when it failed (returned -1)."""
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def _syscall(number: int, *args) -> int:
    return _checked(_libc.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in (number, *args))))


# Landlock (kernel docs: userspace-api/landlock): filesystem rights by ABI version, then network (4) and scopes (6).
FS_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # execute, write, read, truncate, ioctl on devices: valid on a file
READ_RIGHTS = 1 | 4 | 8  # execute, read a file, read a directory


def _landlock(workdir: str) -> None:
    """Deny every file right (and TCP, and signals / abstract sockets outside) except: read the interpreter and system
    libraries, read and write /dev/null, anything inside the working directory."""
    abi = _syscall(444, None, 0, 1)  # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    handled = FS_RIGHTS[max(v for v in FS_RIGHTS if v <= abi)]
    attr = struct.pack("QQQ", handled, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    ruleset = _syscall(444, attr, 8 if abi < 4 else 16 if abi < 6 else 24, 0)
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}  # a venv and its base Python
    python = [os.path.join(p, d) for p in sorted(prefixes) for d in ("lib", "lib64", "bin")]  # not all of the prefix
    rules = [(p, READ_RIGHTS) for p in READ_ONLY + python] + [(p, handled) for p in ("/dev/null", workdir)]
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # not on this machine (/lib64 on aarch64, ...)
        rights &= handled if os.path.isdir(path) else handled & FILE_RIGHTS
        _syscall(445, ruleset, 1, struct.pack("=Qi", rights, fd), 0)  # LANDLOCK_RULE_PATH_BENEATH
        os.close(fd)
    _syscall(446, ruleset, 0)  # landlock_restrict_self
    os.close(ruleset)


# seccomp: EPERM for namespaces and mounts, other processes' memory, keyrings, bpf, perf, io_uring, leaving the process
# group, and a file's mode, owner, times, xattrs or truncation by path (Landlock does not cover those; the effective uid
# may own the files). Module loading, kexec and the like need capabilities we never have. Fork-like clones fail; clone3
# says ENOSYS so that libc falls back to clone, whose flags a filter can read. Numbers: x86_64, aarch64 (None: absent).
DENIED = {
    "fork": (57, None), "vfork": (58, None), "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40),
    "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51), "open_tree": (428, 428),
    "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432),
    "fspick": (433, 433), "mount_setattr": (442, 442), "ptrace": (101, 117), "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282), "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426), "io_uring_register": (427, 427), "setsid": (112, 157), "setpgid": (109, 154),
    "truncate": (76, 45), "chmod": (90, None), "fchmod": (91, 52), "fchmodat": (268, 53), "fchmodat2": (452, 452),
    "chown": (92, None), "fchown": (93, 55), "lchown": (94, None), "fchownat": (260, 54), "utime": (132, None),
    "utimes": (235, None), "futimesat": (261, None), "utimensat": (280, 88), "setxattr": (188, 5),
    "lsetxattr": (189, 6), "fsetxattr": (190, 7), "removexattr": (197, 14), "lremovexattr": (198, 15),
    "fremovexattr": (199, 16), "setxattrat": (463, 463), "removexattrat": (466, 466),
}  # fmt: skip
ARCHES = {"x86_64": (0, 0xC000003E, 56), "aarch64": (1, 0xC00000B7, 220)}  # column in DENIED, AUDIT_ARCH_*, clone
CLONE3, CLONE_THREAD, CLONE_NEW_ANY = 435, 0x10000, 0x7E020080  # CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET,TIME}
RET_KILL, RET_ERRNO, RET_ALLOW, EPERM, ENOSYS = 0x80000000, 0x50000, 0x7FFF0000, 1, 38
LD_W_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06  # classic BPF opcodes


def _seccomp() -> None:
    """Install the filter: wrong architecture or x32 -> kill; DENIED -> EPERM; clone only for threads."""
    column, arch, clone = ARCHES.get(os.uname().machine, (None, None, None))
    if arch is None:
        raise OSError(f"no syscall table for {os.uname().machine}")
    op = lambda code, k, jt=0, jf=0: struct.pack("HBBI", code, jt, jf, k)  # one BPF instruction: jumps are relative
    prog = [op(LD_W_ABS, 4), op(JEQ, arch, 1, 0), op(RET, RET_KILL), op(LD_W_ABS, 0)]  # seccomp_data.arch, then .nr
    if column == 0:
        prog += [op(JGE, 0x40000000, 0, 1), op(RET, RET_KILL)]  # the x32 ABI's numbers would dodge the table
    for numbers in DENIED.values():
        if numbers[column] is not None:
            prog += [op(JEQ, numbers[column], 0, 1), op(RET, RET_ERRNO | EPERM)]
    prog += [op(JEQ, CLONE3, 0, 1), op(RET, RET_ERRNO | ENOSYS)]
    prog += [
        op(JEQ, clone, 0, 4),  # not clone: allow
        op(LD_W_ABS, 16),  # the low 32 bits of args[0], the clone flags
        op(JSET, CLONE_NEW_ANY, 1, 0),  # a new namespace: deny
        op(JSET, CLONE_THREAD, 1, 0),  # a thread: allow; anything else (a process): deny
        op(RET, RET_ERRNO | EPERM),
        op(RET, RET_ALLOW),
    ]
    program = b"".join(prog)
    address = ctypes.cast(ctypes.c_char_p(program), ctypes.c_void_p).value
    fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", len(prog), address))  # struct sock_fprog
    _checked(_libc.prctl(PR_SET_SECCOMP, 2, ctypes.addressof(fprog), 0, 0))  # SECCOMP_MODE_FILTER
