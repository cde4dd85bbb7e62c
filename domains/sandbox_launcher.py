"""The sandbox's side of domains/sandbox.py: a warm server that forks one isolated process tree per program.

domains.sandbox starts it once per caller process as `python -I -S -c BOOT` (standard library only, empty
environment); it runs `site` once (so a virtual environment's packages are on sys.path before anything is confined),
then waits for requests on a socket. Per request (the program, stdin, stdout and stderr as memory files):

    server --fork--> keeper: a new user namespace (its id map written by the server, outside), then new mount, PID,
                     IPC, UTS, network and cgroup namespaces; it enforces the deadline and the output cap
           --fork--> PID 1: builds a new root (read-only binds of the interpreter and system libraries, a private
                     /tmp of disk_mb, /dev/null & co, its own /proc), sets the limits, becomes uid/gid 65534 with no
                     capabilities, sets no_new_privs, Landlock (where the kernel has it) and the seccomp filter
                     (domains/sandbox_seccomp.py), reports "ok", and only then returns the program to BOOT to run.

A step that fails is reported (the "report": what is missing); the caller refuses to run the program unless it opted
into the unsafe fallback. When PID 1 dies, the kernel kills everything else in its PID namespace.
"""

import ctypes
import json
import os
import resource
import select
import socket
import struct
import sys
import time

try:
    import sandbox_seccomp  # in the server, which has domains/ itself on sys.path
except ImportError:  # imported as domains.sandbox_launcher (pytest's doctest collection)
    from domains import sandbox_seccomp

SANDBOX_ID = 65534  # the program's uid and gid inside its namespace ("nobody"); as root also outside
POLL_SECONDS = 0.05  # how often the keeper checks the output size while the program runs
SIGKILL = 9
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x20000
NAMESPACES = {0x20000: "mount", 0x20000000: "PID", 0x8000000: "IPC", 0x4000000: "UTS", 0x40000000: "network"}
NAMESPACES |= {0x2000000: "cgroup"}  # CLONE_NEW* flags
MS = {"rdonly": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "remount": 32, "bind": 4096, "rec": 16384}
MS |= {"private": 1 << 18, "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21}
ST_FLAGS = {1: "rdonly", 2: "nosuid", 4: "nodev", 8: "noexec", 1024: "noatime", 2048: "nodiratime", 4096: "relatime"}
SYSTEM = ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/localtime"]  # shared libraries
DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]
PRELOAD = ["bisect", "collections", "contextlib", "functools", "heapq", "itertools", "json", "math", "random", "re"]
PRELOAD += ["string", "typing"]  # grader.CODE_HEADER's imports: a program starts with them already loaded

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
_libc.syscall.restype = ctypes.c_long


def serve(control_fd: str, here: str):
    """The server loop. Returns only in a sandboxed PID 1: (the program's source bytes, a fresh __main__ module)."""
    import site

    sys.path.remove(here)  # nothing of the repository is importable in a sandbox
    site.main()  # what `python -I` does at start-up: the venv's site-packages, exit(), ...
    for name in PRELOAD:
        __import__(name)
    control = socket.socket(fileno=int(control_fd))
    poller = select.poll()
    poller.register(control, select.POLLIN)
    while True:
        while _reap():
            pass
        if not poller.poll(1000):
            continue
        message, fds, _, _ = socket.recv_fds(control, 1 << 16, 8)
        if not message:  # the caller has gone: reap the last keepers (they stop their runs on the hang-up), exit
            while _reap(0):
                pass
            os._exit(0)
        to_keeper, from_keeper = os.pipe(), os.pipe()  # (read, write) each
        pid = os.fork()
        if pid == 0:
            control.close()
            os.close(to_keeper[1])
            os.close(from_keeper[0])
            return _keeper(json.loads(message), fds, from_keeper[1], to_keeper[0])
        for fd in [*fds, to_keeper[0], from_keeper[1]]:
            os.close(fd)
        _map_ids(pid, from_keeper[0], to_keeper[1])


def run(source: bytes, main) -> None:
    """Run the program as `python` would, then exit at once: tracebacks, SystemExit codes, non-daemon threads, atexit
    and flushed output as usual, but no interpreter teardown (freeing every preloaded module costs milliseconds)."""
    import threading  # preloaded by typing; its _shutdown joins the program's non-daemon threads
    import traceback

    code = 0
    try:
        exec(compile(source, "solution.py", "exec"), main.__dict__)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException as e:
        traceback.print_exception(e)
        code = 1
    try:
        threading._shutdown()
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        code = code or 120  # what python itself returns when the final flush fails
    os._exit(code & 0xFF)


def _reap(options: int = os.WNOHANG) -> bool:
    try:
        return os.waitpid(-1, options)[0] > 0
    except ChildProcessError:
        return False


def _map_ids(pid: int, from_keeper: int, to_keeper: int) -> None:
    """Write the keeper's id map from outside its new user namespace: 65534 inside is 65534 outside (root caller:
    the program owns no host file and RLIMIT_NPROC applies to it; 0 stays 0 for the setup) or the caller's own ids
    (an ordinary user)."""
    answer = b"no answer"
    if select.select([from_keeper], [], [], 5)[0] and os.read(from_keeper, 1) == b"u":
        uid, gid = (SANDBOX_ID, SANDBOX_ID) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
        root = "0 0 1\n" if os.geteuid() == 0 else ""  # setup runs as root; the program never can (_drop_identity)
        maps = {"setgroups": "deny", "uid_map": f"{root}{SANDBOX_ID} {uid} 1", "gid_map": f"{root}{SANDBOX_ID} {gid} 1"}
        try:
            for name, text in maps.items():
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write(text)
            answer = b"ok"
        except OSError as e:
            answer = f"an id map ({e.strerror})".encode()
    try:
        os.write(to_keeper, answer)
    except OSError:
        pass
    os.close(from_keeper)
    os.close(to_keeper)


def _keeper(params: dict, fds: list[int], to_server: int, from_server: int):
    """Isolate, fork PID 1, enforce the deadline and the output cap, send back {"code", "stopped", "report"}."""
    reply, source, stdin, stdout, stderr = fds
    missing = []
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.geteuid() == 0:
        os.setgroups([])  # root's supplementary groups must not follow the program
    if _libc.unshare(CLONE_NEWUSER) == 0:
        os.write(to_server, b"u")
        answer = os.read(from_server, 200).decode(errors="replace")
        userns = answer == "ok"
        missing += [] if userns else [answer or "an id map (no answer)"]
    else:
        os.write(to_server, b"n")
        userns = False
        missing.append(f"user namespaces ({os.strerror(ctypes.get_errno())})")
    os.close(to_server)
    os.close(from_server)
    failed = [] if _libc.unshare(sum(NAMESPACES)) == 0 else [f for f in NAMESPACES if _libc.unshare(f) != 0]
    if failed:
        missing.append(f"{', '.join(NAMESPACES[f] for f in failed)} namespaces ({os.strerror(ctypes.get_errno())})")
    strict = params["strict"]
    if missing and strict:
        _send(reply, {"code": None, "stopped": None, "report": "; ".join(missing)})
    report_read, report_write = os.pipe()
    keeper = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(report_read)
        os.close(reply)
        own = {"mount": CLONE_NEWNS not in failed, "uts": 0x4000000 not in failed, "userns": userns}
        return _pid1(params, keeper, source, (stdin, stdout, stderr), report_write, missing=missing, own=own)
    os.close(report_write)
    stopped = _wait(child, reply, stdout, stderr, params)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    report = os.read(report_read, 4096).decode(errors="replace")
    _send(reply, {"code": code, "stopped": stopped, "report": report})


def _send(reply: int, result: dict) -> None:
    try:
        os.write(reply, json.dumps(result).encode())
    finally:
        os._exit(0)


def _wait(child: int, reply: int, stdout: int, stderr: int, params: dict) -> str | None:
    """Wait for PID 1 until the deadline; SIGKILL it on time, on a full output, or when the caller hangs up."""
    deadline = time.monotonic() + params["timeout"]
    pidfd = os.pidfd_open(child)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(reply, select.POLLIN | select.POLLHUP)
    stopped = None
    while True:
        events = dict(poller.poll(max(0, min(POLL_SECONDS, deadline - time.monotonic())) * 1000))
        if pidfd in events:
            break
        if reply in events:
            stopped = "interrupted"
        elif time.monotonic() >= deadline:
            stopped = "timeout"
        elif max(os.fstat(stdout).st_size, os.fstat(stderr).st_size) >= params["output_bytes"]:
            stopped = "output_limit"
        if stopped:
            os.kill(child, SIGKILL)
            break
    os.close(pidfd)
    return stopped


def _pid1(params, keeper, source_fd, stdio, report_fd, missing, own):
    """PID 1: confine this process (_confine), report, then hand the program back to BOOT. A strict run with anything
    missing, or a setup that raised, stops there without running anything."""
    _libc.prctl(1, SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: if the keeper dies, so does PID 1 (and the namespace)
    if os.getppid() not in (0, keeper):  # 0: the keeper is outside our new PID namespace
        os._exit(1)
    source = os.pread(source_fd, os.fstat(source_fd).st_size, 0)
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    os.closerange(3, report_fd)
    os.closerange(report_fd + 1, 1 << 16)
    try:
        _confine(params, missing, own)
    except Exception as e:  # a step that we did not foresee failing: report it, never run half-confined
        os.write(report_fd, f"a sandbox step ({type(e).__name__}: {e})".encode())
        os._exit(0)
    os.write(report_fd, ("; ".join(missing) or "ok").encode())
    os.close(report_fd)
    if missing and params["strict"]:
        os._exit(0)  # never run the program with a protection missing, unless the caller opted in
    import random

    random.seed()  # preloaded in the server: without this, every run would draw the same numbers
    main = type(sys)("__main__")  # a fresh __main__ module, so `if __name__ == "__main__":` works as usual
    sys.modules["__main__"], sys.argv = main, ["solution.py"]
    return source, main


def _confine(params: dict, missing: list[str], own: dict) -> None:
    """New root, limits, identity, no_new_privs, Landlock, seccomp, in that order; what failed is added to missing."""

    def attempt(name, step) -> bool:
        try:
            step()
            return True
        except OSError as e:
            missing.append(f"{name} ({e.strerror or e})")
            return False

    root = own["mount"] and attempt("a new root", lambda: _new_root(params["disk_mb"]))
    if own["uts"]:
        _libc.sethostname(b"sandbox", 7)
    if not root and params["workdir"]:  # unsafe fallback: the caller's temporary folder on the host
        os.chdir(params["workdir"])
    limits = {resource.RLIMIT_AS: params["memory_mb"] * 2**20, resource.RLIMIT_NPROC: params["max_tasks"]}
    limits |= {resource.RLIMIT_NOFILE: params["max_files"], resource.RLIMIT_FSIZE: params["output_bytes"]}
    limits |= {resource.RLIMIT_MEMLOCK: 0, resource.RLIMIT_MSGQUEUE: 0}
    for limit, value in limits.items():
        resource.setrlimit(limit, (value, value))
    cpu = int(params["timeout"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, a second later SIGKILL
    # without a new root, uid 65534 might not reach the interpreter (under /root, say): the fallback keeps the uid
    attempt("an unprivileged uid without capabilities", lambda: _drop_identity(root and own["userns"]))
    if root:
        workdir = f"/tmp/exprl-sandbox-{os.urandom(6).hex()}"  # a path that never exists on the host
        os.mkdir(workdir, 0o700)
        os.chdir(workdir)
    attempt("no_new_privs", lambda: _checked(_libc.prctl(38, 1, 0, 0, 0)))
    readable = ["/"] if root else _sources()
    landlocked = attempt("Landlock", lambda: sandbox_seccomp.landlock(readable, "/tmp" if root else params["workdir"]))
    if landlocked or root:  # Landlock is a second wall behind the new root; without a new root it is the only one
        missing[:] = [m for m in missing if not m.startswith("Landlock")]
    attempt("seccomp", sandbox_seccomp.install)


def _checked(result: int) -> int:
    """The result of a libc call, or OSError from errno when it failed (returned -1)."""
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def _sources() -> list[str]:
    """What the program may read: the interpreter's library folders and sys.path, and the system's libraries."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    python = [os.path.join(p, d) for p in sorted(prefixes) for d in ("lib", "lib64")] + sys.path
    return [p for p in dict.fromkeys(SYSTEM + python) if p and os.path.exists(p)]


def _mkdirs(root: str, path: str) -> str:
    """Create root + path, one folder at a time, never through a symbolic link (which could point at the host)."""
    current = root
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if os.path.islink(current) or not os.path.isdir(current):
                raise OSError(f"{current} is not a folder") from None
    return current


def _new_root(disk_mb: int) -> None:
    """A tmpfs holding only what the program needs, made the root (pivot_root); the host's tree is detached."""
    mount = lambda *args: _checked(_libc.mount(*args))
    mount(None, b"/", None, MS["rec"] | MS["private"], None)  # nothing we mount propagates to the host
    sources = {}
    for path in _sources() + [d for d in DEVICES if os.path.exists(d)]:
        if path not in sources:
            sources[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)  # opened first: the root may cover them
    base = next(p for p in ("/tmp", "/mnt", "/var/tmp") if os.path.isdir(p) and not os.path.islink(p))
    mount(b"tmpfs", base.encode(), b"tmpfs", MS["nosuid"] | MS["nodev"], b"size=1m,nr_inodes=4096,mode=0755")
    tmp = f"size={disk_mb}m,nr_inodes=1024,mode=1777".encode()  # first: a venv under /tmp is bound on top of it
    mount(b"tmpfs", _mkdirs(base, "tmp").encode(), b"tmpfs", MS["nosuid"] | MS["nodev"], tmp)
    mounted = []  # real paths, parents first: a path beneath one already mounted is visible through it
    for path, fd in sorted(sources.items(), key=lambda item: os.path.realpath(item[0])):
        real = os.path.realpath(path)
        if not any(real == done or real.startswith(done + "/") for done in mounted):
            _bind(base, real, fd, read_only=path not in DEVICES)
            mounted.append(real)
        os.close(fd)
        _link(base, path)
    for name, to in (("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(to, f"{base}/dev/{name}")
    os.symlink("/proc/self/fd", f"{base}/dev/fd")
    proc = _mkdirs(base, "proc").encode()
    for options in (b"subset=pid,hidepid=invisible", None):  # only the run's own processes; older kernels: all
        if _libc.mount(b"proc", proc, b"proc", MS["nosuid"] | MS["nodev"] | MS["noexec"], options) == 0:
            break
    os.chdir(base)
    _checked(_libc.syscall(sandbox_seccomp.number("pivot_root"), b".", b"."))
    _checked(_libc.umount2(b".", 2))  # MNT_DETACH: the host's tree is gone from this namespace
    os.chdir("/")
    mount(None, b"/", None, MS["remount"] | MS["rdonly"] | MS["nosuid"] | MS["nodev"], None)


def _bind(base: str, real: str, fd: int, read_only: bool) -> None:
    """Bind the file or folder open as `fd` at base + real; read-only (keeping the flags the kernel locks) if asked."""
    target = os.path.join(base, real.lstrip("/"))
    if os.path.isdir(f"/proc/self/fd/{fd}"):
        _mkdirs(base, real)
    else:
        os.close(os.open(_mkdirs(base, os.path.dirname(real)) + "/" + os.path.basename(real), os.O_CREAT, 0o644))
    _checked(_libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, MS["bind"], None))
    if read_only:
        kept = sum(MS[name] for bit, name in ST_FLAGS.items() if os.statvfs(target).f_flag & bit)
        flags = MS["bind"] | MS["remount"] | MS["rdonly"] | MS["nosuid"] | MS["nodev"] | kept
        _checked(_libc.mount(None, target.encode(), None, flags, None))


def _link(base: str, path: str, depth: int = 0) -> None:
    """Recreate the symbolic links on the way to `path` (/lib -> usr/lib, a venv's lib64 -> lib) in the new root."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/" + "/".join(parts[:i])
        if os.path.islink(prefix) and depth < 8:
            target = os.readlink(prefix)
            here = os.path.join(base, prefix.lstrip("/"))
            if not os.path.lexists(here):
                _mkdirs(base, os.path.dirname(prefix))
                os.symlink(target, here)
            rest = "/".join(parts[i:])
            _link(base, os.path.normpath(os.path.join(os.path.dirname(prefix), target, rest)), depth + 1)
            return


def _drop_identity(mapped: bool) -> None:
    """Become SANDBOX_ID (uid and gid) and drop every capability, including the bounding and ambient sets."""
    for capability in range(64):
        _libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP (needs CAP_SETPCAP, so first; EINVAL past the last)
    _libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
    if mapped:
        os.setresgid(SANDBOX_ID, SANDBOX_ID, SANDBOX_ID)
        os.setresuid(SANDBOX_ID, SANDBOX_ID, SANDBOX_ID)
    header = ctypes.create_string_buffer(struct.pack("Ii", 0x20080522, 0))  # _LINUX_CAPABILITY_VERSION_3
    _checked(_libc.capset(header, ctypes.create_string_buffer(24)))
    data = ctypes.create_string_buffer(24)
    _checked(_libc.capget(header, data))
    if any(data.raw) or 0 in os.getresuid() or not mapped:
        raise OSError(f"still uid {os.getresuid()} or capabilities {data.raw.hex()}")
