"""The sandbox's kernel filters (domains/sandbox_launcher.py): seccomp, the system calls a program may not make, and
Landlock, a second wall on files behind the new root (the only one in the unsafe fallback without a new root).

A deny list over the calls that ordinary Python never needs, closed at the top: every call numbered above the
highest one reviewed here (MAX_REVIEWED) fails with ENOSYS, so a call that a newer kernel adds stays denied until it
is reviewed. On top of the list, arguments are checked for clone (threads only), socketpair (AF_UNIX only), ioctl
(a short allow list) and fcntl (no leases, notifications or locks). Numbers: x86_64, aarch64 (None: absent there).
"""

import ctypes
import os
import struct

DENIED = {
    # new processes and programs, namespaces, mounts (a fork-like clone is refused below, clone3 is ENOSYS)
    "fork": (57, None), "vfork": (58, None), "execve": (59, 221), "execveat": (322, 281), "unshare": (272, 97),
    "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442), "open_tree_attr": (467, 467),
    "statmount": (457, 457), "listmount": (458, 458), "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    # identity: no way back to root, no new groups, no capabilities
    "setuid": (105, 146), "setgid": (106, 144), "setreuid": (113, 145), "setregid": (114, 143),
    "setgroups": (116, 159), "setresuid": (117, 147), "setresgid": (119, 149), "setfsuid": (122, 151),
    "setfsgid": (123, 152), "capset": (126, 91), "setsid": (112, 157), "setpgid": (109, 154),
    # other processes and the kernel's riskier corners
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "kcmp": (312, 272),
    "pidfd_getfd": (438, 438), "process_madvise": (440, 440), "process_mrelease": (448, 448), "keyctl": (250, 219),
    "add_key": (248, 217), "request_key": (249, 218), "bpf": (321, 280), "perf_event_open": (298, 241),
    "userfaultfd": (323, 282), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "io_setup": (206, 0), "io_submit": (209, 2), "modify_ldt": (154, None),
    "uselib": (134, None), "personality": (135, 92),
    # state shared with the host or with other runs: memory outside RLIMIT_AS, IPC, watches, locks
    "memfd_create": (319, 279), "memfd_secret": (447, 447), "shmget": (29, 194), "shmat": (30, 196),
    "shmctl": (31, 195), "semget": (64, 190), "semop": (65, 193), "semctl": (66, 191), "semtimedop": (220, 192),
    "msgget": (68, 186), "msgsnd": (69, 189), "msgrcv": (70, 188), "msgctl": (71, 187), "mq_open": (240, 180),
    "mq_unlink": (241, 181), "inotify_init": (253, None), "inotify_init1": (294, 26),
    "inotify_add_watch": (254, 27), "fanotify_init": (300, 262), "fanotify_mark": (301, 263), "flock": (73, 32),
    "socket": (41, 198),
    # a file's mode, owner, times, attributes and inode flags
    "truncate": (76, 45), "chmod": (90, None), "fchmod": (91, 52), "fchmodat": (268, 53), "fchmodat2": (452, 452),
    "chown": (92, None), "fchown": (93, 55), "lchown": (94, None), "fchownat": (260, 54), "utime": (132, None),
    "utimes": (235, None), "futimesat": (261, None), "utimensat": (280, 88), "setxattr": (188, 5),
    "lsetxattr": (189, 6), "fsetxattr": (190, 7), "removexattr": (197, 14), "lremovexattr": (198, 15),
    "fremovexattr": (199, 16), "setxattrat": (463, 463), "removexattrat": (466, 466), "file_setattr": (469, 469),
    "file_getattr": (468, 468),
}  # fmt: skip
CHECKED = {"clone": (56, 220), "clone3": (435, 435), "socketpair": (53, 199), "ioctl": (16, 29), "fcntl": (72, 25)}
MAX_REVIEWED = 470  # calls numbered above this (added by kernels newer than this table) fail with ENOSYS
# TCGETS, TIOCGWINSZ, FIONCLEX, FIOCLEX, FIONREAD, FIONBIO; any other ioctl fails with ENOTTY
IOCTL_ALLOWED = [0x5401, 0x5413, 0x5450, 0x5451, 0x541B, 0x5421]
# F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW, F_SETLEASE, F_GETLEASE, F_NOTIFY: EPERM
FCNTL_DENIED = [5, 6, 7, 36, 37, 38, 1024, 1025, 1026]
ARCHES = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}  # column in the tables, AUDIT_ARCH_*
CLONE_THREAD, CLONE_NEW_ANY, AF_UNIX = 0x10000, 0x7E020080, 1  # CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET,TIME}
RET_KILL, RET_ERRNO, RET_ALLOW, EPERM, ENOTTY, ENOSYS = 0x80000000, 0x50000, 0x7FFF0000, 1, 25, 38
LD_W_ABS, JEQ, JGT, JGE, JSET, RET = 0x20, 0x15, 0x25, 0x35, 0x45, 0x06  # classic BPF opcodes


def number(name: str) -> int:
    """This machine's number of the system call `name` (from DENIED or CHECKED)."""
    return {**DENIED, **CHECKED}[name][ARCHES[os.uname().machine][0]]


def program() -> bytes:
    """The filter as classic BPF: wrong architecture or x32 -> kill; too new -> ENOSYS; DENIED -> EPERM; then the
    argument checks; everything else allowed. Jumps are relative, so each checked call is one self-contained block.

    Example:
        >>> len(program()) % 8, program()[:8] == struct.pack("HBBI", LD_W_ABS, 0, 0, 4)
        (0, True)
    """
    machine = os.uname().machine
    if machine not in ARCHES:
        raise OSError(f"no syscall table for {machine}")
    column, arch = ARCHES[machine]
    op = lambda code, k, jt=0, jf=0: struct.pack("HBBI", code, jt, jf, k)  # one BPF instruction
    deny = lambda errno: op(RET, RET_ERRNO | errno)
    prog = [op(LD_W_ABS, 4), op(JEQ, arch, 1, 0), op(RET, RET_KILL), op(LD_W_ABS, 0)]  # seccomp_data.arch, then .nr
    if column == 0:
        prog += [op(JGE, 0x40000000, 0, 1), op(RET, RET_KILL)]  # the x32 ABI's numbers would dodge the table
    prog += [op(JGT, MAX_REVIEWED, 0, 1), deny(ENOSYS)]
    for numbers in DENIED.values():
        if numbers[column] is not None:
            prog += [op(JEQ, numbers[column], 0, 1), deny(EPERM)]
    nr = {name: numbers[column] for name, numbers in CHECKED.items()}
    prog += [op(JEQ, nr["clone3"], 0, 1), deny(ENOSYS)]  # libc then falls back to clone, whose flags we can read
    blocks = {
        "clone": [op(LD_W_ABS, 16), op(JSET, CLONE_NEW_ANY, 1, 0), op(JSET, CLONE_THREAD, 1, 0), deny(EPERM)]
        + [op(RET, RET_ALLOW)],  # a thread: allow; a new namespace or process: deny
        "socketpair": [op(LD_W_ABS, 16), op(JEQ, AF_UNIX, 0, 1), op(RET, RET_ALLOW), deny(EPERM)],
        "ioctl": [op(LD_W_ABS, 24)]
        + [op(JEQ, cmd, len(IOCTL_ALLOWED) - i, 0) for i, cmd in enumerate(IOCTL_ALLOWED)]
        + [deny(ENOTTY), op(RET, RET_ALLOW)],
        "fcntl": [op(LD_W_ABS, 24)]
        + [op(JEQ, cmd, len(FCNTL_DENIED) - i, 0) for i, cmd in enumerate(FCNTL_DENIED)]
        + [op(RET, RET_ALLOW), deny(EPERM)],
    }
    for name, block in blocks.items():
        prog += [op(JEQ, nr[name], 0, len(block))] + block
    prog.append(op(RET, RET_ALLOW))
    return b"".join(prog)


def install() -> None:
    """Install the filter on this thread (no_new_privs must be set, or the caller must hold CAP_SYS_ADMIN)."""
    code = program()
    libc = ctypes.CDLL(None, use_errno=True)
    address = ctypes.cast(ctypes.c_char_p(code), ctypes.c_void_p).value
    fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", len(code) // 8, address))  # struct sock_fprog
    if libc.prctl(22, 2, ctypes.c_void_p(ctypes.addressof(fprog)), 0, 0) != 0:  # PR_SET_SECCOMP, MODE_FILTER
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


# Landlock (kernel docs: userspace-api/landlock): filesystem rights by ABI version, then network (4) and scopes (6).
FS_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # execute, write, read, truncate, ioctl on devices: valid on a file
READ_RIGHTS = 1 | 4 | 8  # execute, read a file, read a directory


def landlock(readable: list[str], writable: str) -> None:
    """Deny every file right (and TCP, and signals / abstract sockets outside) except: read `readable`, read and write
    /dev/null and anything beneath `writable`."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = _checked(libc.syscall(444, None, 0, 1))  # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    handled = FS_RIGHTS[max(v for v in FS_RIGHTS if v <= abi)]
    attr = struct.pack("QQQ", handled, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    ruleset = _checked(libc.syscall(444, attr, 8 if abi < 4 else 16 if abi < 6 else 24, 0))
    for path, rights in [(p, READ_RIGHTS) for p in readable] + [(p, handled) for p in ("/dev/null", writable)]:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        rights &= handled if os.path.isdir(path) else handled & FILE_RIGHTS
        _checked(libc.syscall(445, ruleset, 1, struct.pack("=Qi", rights, fd), 0))  # LANDLOCK_RULE_PATH_BENEATH
        os.close(fd)
    _checked(libc.syscall(446, ruleset, 0))  # landlock_restrict_self
    os.close(ruleset)


def _checked(result: int) -> int:
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result
