"""The red team's escapes, each as a program, and a check on the HOST that the damage did not happen.

Numbers of the issue: 1 host unix sockets, 2 inode flags, 3 leases, 4 setresuid / RLIMIT_NPROC, 5 memfd and shared
memory, 6 inotify, 9 metadata (the grader's 7 and 8 are in tests/test_answer_code.py). Then the virtual environments
(one under /tmp, the unsafe fallback in one) and an ordinary user as the caller.
"""

import array
import fcntl
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from domains import sandbox
from domains.sandbox import run_program

REPO = os.path.dirname(os.path.dirname(os.path.abspath(sandbox.__file__)))
VISIBLE = os.__file__  # a host file that the sandbox does see (read-only): the standard library's os.py


def run(source: str, **kwargs) -> sandbox.RunResult:
    return run_program(textwrap.dedent(source), **kwargs)


def test_1_a_host_unix_socket_outside_tmp_is_unreachable():
    path = f"/var/tmp/exprl-attack-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    server.settimeout(0.5)
    try:
        result = run(
            f"""
            import socket
            for family in (socket.AF_UNIX, socket.AF_INET):
                try:
                    s = socket.socket(family)
                    s.connect({path!r}) if family == socket.AF_UNIX else s.connect(("127.0.0.1", 22))
                    s.sendall(b"LEAK"); print("ESCAPED")
                except OSError as e:
                    print(type(e).__name__)
            """
        )
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()
        os.remove(path)
    assert (result.status, result.stdout) == ("ok", "PermissionError\nPermissionError\n")  # socket() itself fails


def getflags(path: str) -> int:
    flags = array.array("l", [0])
    with open(path, "rb") as f:
        fcntl.ioctl(f, 0x80086601, flags)  # FS_IOC_GETFLAGS
    return flags[0]


def test_2_inode_flags_of_a_visible_host_file_stay():
    before = getflags(VISIBLE)
    result = run(
        f"""
        import array, ctypes, fcntl, os
        libc = ctypes.CDLL(None, use_errno=True)
        with open({VISIBLE!r}, "rb") as f:
            try:
                fcntl.ioctl(f, 0x40086602, array.array("l", [0x20 | 0x80]))  # FS_IOC_SETFLAGS: append-only, noatime
                print("ESCAPED ioctl")
            except OSError as e:
                print("ioctl", e.errno)
        attr = ctypes.create_string_buffer(32)  # struct file_attr, zeroed: fa_xflags = 0
        print("file_setattr", libc.syscall(469, -100, {VISIBLE.encode()!r}, attr, 32, 0), ctypes.get_errno())
        """
    )
    assert result.status == "ok" and "ESCAPED" not in result.stdout
    assert result.stdout.splitlines() == ["ioctl 25", "file_setattr -1 1"]  # ENOTTY (seccomp), EPERM (seccomp)
    assert getflags(VISIBLE) == before


def test_3_a_lease_cannot_block_the_host():
    result_box = []
    program = f"""
        import fcntl, time
        f = open({VISIBLE!r}, "rb")
        try:
            fcntl.fcntl(f, 1024, fcntl.F_RDLCK)  # F_SETLEASE
            print("LEASED", flush=True)
        except OSError as e:
            print("lease", e.errno, flush=True)
        time.sleep(3)
        """
    import threading

    thread = threading.Thread(target=lambda: result_box.append(run(program, timeout=5)))
    thread.start()
    time.sleep(1.0)  # the program holds its file open by now
    start = time.monotonic()
    os.close(os.open(VISIBLE, os.O_WRONLY))  # a lease would block this open until the run ends (no write happens)
    blocked = time.monotonic() - start
    thread.join()
    assert blocked < 0.5 and result_box[0].stdout == "lease 1\n"


def test_4_identity_no_way_back_to_root_and_threads_bounded():
    result = run(
        """
        import os, threading, time
        print(os.getresuid(), os.getresgid(), os.getgroups())
        for attempt in (lambda: os.setresuid(0, 0, 0), lambda: os.setuid(0), lambda: os.setgroups([0])):
            try:
                attempt(); print("ESCAPED")
            except OSError as e:
                print(type(e).__name__)
        threading.stack_size(32768)
        started = 0
        try:
            while started < 1000:
                threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
                started += 1
        except RuntimeError:
            pass
        print(started)
        """,
        timeout=5,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "(65534, 65534, 65534) (65534, 65534, 65534) []"
    assert lines[1:4] == ["PermissionError"] * 3 and int(lines[4]) < sandbox.MAX_TASKS


def test_5_no_memory_outside_the_limit():
    result = run(
        """
        import ctypes, mmap, os
        libc = ctypes.CDLL(None, use_errno=True)
        print("memfd", libc.syscall(319, b"x", 0), ctypes.get_errno())  # memfd_create
        print("shmget", libc.syscall(29, 0, 600 * 2**20, 0o1600), ctypes.get_errno())  # IPC_PRIVATE | IPC_CREAT
        print("dev/shm", os.path.exists("/dev/shm"))
        try:
            from multiprocessing import shared_memory
            shared_memory.SharedMemory(create=True, size=600 * 2**20)
            print("ESCAPED")
        except OSError as e:
            print(type(e).__name__)
        """,
        memory_mb=256,
    )
    assert result.stdout.splitlines() == ["memfd -1 1", "shmget -1 1", "dev/shm False", "FileNotFoundError"]


def test_6_and_9_no_inotify_flock_statmount_listmount():
    result = run(
        f"""
        import ctypes, fcntl
        libc = ctypes.CDLL(None, use_errno=True)
        for name, number, args in [("inotify_init1", 294, (0,)), ("inotify_init", 253, ()),
                                   ("fanotify_init", 300, (0, 0)), ("statmount", 457, (0, 0, 0, 0)),
                                   ("listmount", 458, (0, 0, 0, 0)), ("open_tree", 428, (-100, b"/", 0))]:
            print(name, libc.syscall(number, *args), ctypes.get_errno())
        with open({VISIBLE!r}, "rb") as f:
            for lock in (lambda: fcntl.flock(f, fcntl.LOCK_SH), lambda: fcntl.lockf(f, fcntl.LOCK_SH)):
                try:
                    lock(); print("ESCAPED")
                except OSError as e:
                    print("lock", e.errno)
        """
    )
    lines = result.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:6]] == ["-1 1"] * 6 and lines[6:] == ["lock 1", "lock 1"]


def test_9_the_machine_it_sees_is_minimal():
    result = run(
        """
        import os
        print(sorted(os.listdir("/")), sorted(os.listdir("/proc")), os.path.exists("/etc/passwd"))
        print(len(open("/proc/self/mountinfo").read().splitlines()), os.uname().nodename)
        for path in ("/proc/2", "/proc/1/root/etc/hostname", "/sys", "/home", "/root/.ssh"):
            print(path, os.path.exists(path))
        """
    )
    lines = result.stdout.splitlines()
    top, proc = eval(lines[0].rsplit(" ", 1)[0].replace("] [", "], ["))  # noqa: S307 (our own printed lists)
    assert {"proc", "tmp", "dev", "usr", "etc"} <= set(top) and not {"home", "sys", "var", "boot"} & set(top)
    assert proc == ["1", "self", "thread-self"] and lines[0].endswith("False")
    mounts, hostname = lines[1].split()
    assert int(mounts) < 20 and hostname == "sandbox"
    assert all(line.endswith("False") for line in lines[2:])


def test_exec_and_network_are_gone():
    result = run(
        """
        import os
        try:
            os.execv("/usr/bin/python3", ["python3", "-c", "print('ESCAPED')"])
        except OSError as e:
            print("exec", e.errno)
        """
    )
    assert result.stdout == "exec 1\n"


# ---------------------------------------------------------------------------------------------------------------------
# Where users install: a virtual environment under /tmp (the private /tmp must not hide it), the unsafe fallback in a
# venv (site ran before any confinement, so pyvenv.cfg is never needed), and an ordinary user as the caller.

HELPER = """
import os, sys
sys.path.insert(0, {repo!r})
from domains import sandbox
if {unsafe!r}:
    os.environ[sandbox.UNSAFE_ENV] = "1"
    sandbox._missing = ["Landlock (pretended missing)"]
result = sandbox.run_program({program!r})
print(sandbox.probe() if {probe!r} else "", result.status, result.stdout.strip(), result.stderr[-300:])
"""


def venv_under_tmp(tmp_path) -> str:
    """A venv under /tmp with one package of its own (exprl_probe) and the caller's packages on a .pth line."""
    if not str(tmp_path).startswith("/tmp/"):
        pytest.skip("the temporary folder is not under /tmp here")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site_packages = next(venv.glob("lib/python*/site-packages"))
    (site_packages / "exprl_probe.py").write_text("VALUE = 42\n")
    caller = next(p for p in sys.path if p.endswith("site-packages"))
    (site_packages / "caller.pth").write_text(caller + "\n")  # so that numpy, if installed here, is there too
    return str(venv / "bin" / "python")


@pytest.mark.parametrize("unsafe", [False, True], ids=["protected", "unsafe fallback"])
def test_a_venv_under_tmp_keeps_its_packages(tmp_path, unsafe):
    python = venv_under_tmp(tmp_path)
    program = "import exprl_probe, sys\nprint(exprl_probe.VALUE, sys.prefix)"
    code = HELPER.format(repo=REPO, unsafe=unsafe, program=program, probe=False)
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[:3] == ["ok", "42", str(tmp_path / "venv")], out.stdout + out.stderr
    assert ("WARNING" in out.stderr) == unsafe


def test_numpy_is_importable_when_installed():
    pytest.importorskip("numpy")
    result = run_program("import numpy as np\nprint(int(np.arange(10).sum()))")
    assert (result.status, result.stdout) == ("ok", "45\n"), result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an ordinary user")
def readable_by_others(path: str) -> bool:
    """Whether a uid other than the owner can reach `path` (x on every folder above it, r+x on it): os.access answers
    for the caller, and root passes it anywhere."""
    path = os.path.abspath(path)
    folders, folder = [], os.path.dirname(path)
    while folder not in folders:  # up to "/", whose dirname is itself
        folders.append(folder)
        folder = os.path.dirname(folder)
    return os.stat(path).st_mode & 0o005 == 0o005 and all(os.stat(f).st_mode & 0o001 for f in folders)


def test_an_ordinary_user_as_the_caller():
    python = "/usr/bin/python3"  # the repository's own interpreter may live where an ordinary user cannot read
    if not os.access(python, os.X_OK) or not readable_by_others(REPO):
        pytest.skip("no system python3, or the repository is not readable by others")
    program = "import os\nprint(os.getresuid()[0], sorted(os.listdir('/proc')))\nos.setresuid(0, 0, 0)"
    code = HELPER.format(repo=REPO, unsafe=False, program=program, probe=True)
    user = lambda: (os.setgroups([]), os.setresgid(54321, 54321, 54321), os.setresuid(54321, 54321, 54321))
    out = subprocess.run(
        [python, "-I", "-c", code], capture_output=True, text=True, timeout=120, preexec_fn=user, cwd="/"
    )
    assert out.stdout.startswith("[] error 65534 ['1', 'self', 'thread-self']"), out.stdout + out.stderr
    assert "PermissionError" in out.stdout  # setresuid(0, 0, 0)
