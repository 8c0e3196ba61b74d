"""The OS sandbox of every process that lets torch touch archive content (the IR extraction child today).

A child calls :func:`confine` once, before it reads a byte of the archive (and before it imports torch, so
that no thread exists yet that would escape the per-thread Landlock layer). Two kernel layers, set up
through ``ctypes`` (nothing to install), each blocking what it can on its own:

- **seccomp-BPF** (x86_64 only; the filter is assembled here): an allowlist of system calls; everything
  else fails with ENOSYS (so the C library falls back, as for ``clone3``). Refused with EPERM: ``execve``,
  ``execveat``, ``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD`` (threads work, processes do not),
  every socket call, opening a file for writing, creating, appending or truncating (``O_WRONLY``,
  ``O_RDWR``, ``O_CREAT``, ``O_TRUNC``, ``O_APPEND``, ``O_TMPFILE``), ``creat``, rename, link, unlink,
  mkdir, rmdir, mknod, chmod, chown, utime, xattr changes, ``truncate``, ``ptrace`` and reads or writes of
  other processes' memory, signals to other processes, raising resource limits, ``memfd_create``,
  ``TIOCSTI``, ``prctl`` options beyond a short list. Unlisted (ENOSYS): namespaces, mounts, ``bpf``,
  ``io_uring``, ``userfaultfd``, key rings, ``setuid``, ...
  Syscalls of another ABI (i386 ``int 0x80``) kill the process; x32 numbers fail.
- **Landlock** (any architecture, Linux 5.13+): the file system is readable only under the given folders,
  the interpreter's and its libraries' folders and a few system files; nothing is writable, removable or
  executable anywhere; with ABI 4+ no TCP bind or connect; with ABI 6+ no signals to, and no abstract
  UNIX sockets of, processes outside the sandbox.

So the child writes nothing to any file: it has no need to (its JSON goes to an inherited pipe), which is
stricter than "only inside its temporary folder". What it cannot stop: reading what Landlock allows,
burning CPU and memory up to the resource limits (:func:`set_limits`), writing garbage to its own stdout
and stderr, and kernel bugs. Where a layer cannot be set up the child still runs and says so
(:class:`Confinement`), and the static gate still refuses what it judges unsafe.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct
import sys
from dataclasses import dataclass, field

# --- Landlock (linux/landlock.h); its system call numbers are the same on every architecture ---
_NR_LANDLOCK_CREATE_RULESET, _NR_LANDLOCK_ADD_RULE, _NR_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LL_VERSION = 1
_LL_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 14, 1 << 15
_FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV

_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_SECCOMP = 21

# --- seccomp (linux/seccomp.h, linux/filter.h, linux/audit.h) ---
_NR_SECCOMP = 317
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1
_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
EPERM, ENOSYS = 1, 38

_O_WRITE_MASK = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000  # WRONLY RDWR CREAT TRUNC APPEND __O_TMPFILE
_CLONE_THREAD = 0x10000
_CLONE_NEW_ANY = 0x7E020080  # NEWNS NEWCGROUP NEWUTS NEWIPC NEWUSER NEWPID NEWNET NEWTIME
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
# prctl options a C library, Python or torch use on themselves: PDEATHSIG set/get, GET_DUMPABLE, thread
# name set/get, seccomp get/set (only ever narrows), CAPBSET_READ, NO_NEW_PRIVS set/get, GET_THP_DISABLE,
# SET_VMA (naming anonymous memory). The rest (PR_SET_MM with root's CAP_SYS_RESOURCE, ...) is refused.
_PRCTL_OPTIONS = (1, 2, 3, 15, 16, 21, 22, 23, 38, 39, 42, 0x53564D41)

# x86_64 system call numbers (asm/unistd_64.h)
_X86_64 = {
    "read": 0, "write": 1, "open": 2, "close": 3, "stat": 4, "fstat": 5, "lstat": 6, "poll": 7, "lseek": 8,
    "mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12, "rt_sigaction": 13, "rt_sigprocmask": 14,
    "rt_sigreturn": 15, "ioctl": 16, "pread64": 17, "pwrite64": 18, "readv": 19, "writev": 20, "access": 21,
    "pipe": 22, "select": 23, "sched_yield": 24, "mremap": 25, "msync": 26, "mincore": 27, "madvise": 28,
    "dup": 32, "dup2": 33, "pause": 34, "nanosleep": 35, "getitimer": 36, "alarm": 37, "setitimer": 38,
    "getpid": 39, "sendfile": 40, "socket": 41, "connect": 42, "accept": 43, "sendto": 44, "recvfrom": 45,
    "sendmsg": 46, "recvmsg": 47, "shutdown": 48, "bind": 49, "listen": 50, "getsockname": 51,
    "getpeername": 52, "socketpair": 53, "setsockopt": 54, "getsockopt": 55, "clone": 56, "fork": 57,
    "vfork": 58, "execve": 59, "exit": 60, "wait4": 61, "kill": 62, "uname": 63, "fcntl": 72, "flock": 73,
    "fsync": 74, "fdatasync": 75, "truncate": 76, "ftruncate": 77, "getdents": 78, "getcwd": 79, "chdir": 80,
    "fchdir": 81, "rename": 82, "mkdir": 83, "rmdir": 84, "creat": 85, "link": 86, "unlink": 87,
    "symlink": 88, "readlink": 89, "chmod": 90, "fchmod": 91, "chown": 92, "fchown": 93, "lchown": 94,
    "umask": 95, "gettimeofday": 96, "getrlimit": 97, "getrusage": 98, "sysinfo": 99, "times": 100,
    "ptrace": 101, "getuid": 102, "getgid": 104, "geteuid": 107, "getegid": 108, "getppid": 110,
    "getpgrp": 111, "getgroups": 115, "getresuid": 118, "getresgid": 120, "getpgid": 121, "getsid": 124,
    "capget": 125, "rt_sigpending": 127, "rt_sigtimedwait": 128, "rt_sigqueueinfo": 129,
    "rt_sigsuspend": 130, "sigaltstack": 131, "utime": 132, "mknod": 133, "statfs": 137, "fstatfs": 138,
    "sched_getparam": 143, "sched_getscheduler": 145, "sched_get_priority_max": 146,
    "sched_get_priority_min": 147, "prctl": 157, "arch_prctl": 158, "setrlimit": 160, "gettid": 186,
    "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "getxattr": 191, "lgetxattr": 192,
    "fgetxattr": 193, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199, "tkill": 200,
    "time": 201, "futex": 202, "sched_setaffinity": 203, "sched_getaffinity": 204, "epoll_create": 213,
    "getdents64": 217, "set_tid_address": 218, "restart_syscall": 219, "fadvise64": 221,
    "timer_create": 222, "timer_settime": 223, "timer_gettime": 224, "timer_getoverrun": 225,
    "timer_delete": 226, "clock_gettime": 228, "clock_getres": 229, "clock_nanosleep": 230,
    "exit_group": 231, "epoll_wait": 232, "epoll_ctl": 233, "tgkill": 234, "utimes": 235, "mbind": 237,
    "set_mempolicy": 238, "get_mempolicy": 239, "openat": 257, "mkdirat": 258, "mknodat": 259,
    "fchownat": 260, "futimesat": 261, "newfstatat": 262, "unlinkat": 263, "renameat": 264, "linkat": 265,
    "symlinkat": 266, "readlinkat": 267, "fchmodat": 268, "faccessat": 269, "pselect6": 270, "ppoll": 271,
    "set_robust_list": 273, "get_robust_list": 274, "utimensat": 280, "epoll_pwait": 281,
    "timerfd_create": 283, "eventfd": 284, "fallocate": 285, "timerfd_settime": 286, "timerfd_gettime": 287,
    "accept4": 288, "signalfd4": 289, "eventfd2": 290, "epoll_create1": 291, "dup3": 292, "pipe2": 293,
    "preadv": 295, "pwritev": 296, "rt_tgsigqueueinfo": 297, "recvmmsg": 299, "prlimit64": 302,
    "sendmmsg": 307, "getcpu": 309, "process_vm_readv": 310, "process_vm_writev": 311, "renameat2": 316,
    "getrandom": 318, "memfd_create": 319, "execveat": 322, "membarrier": 324, "preadv2": 327,
    "pwritev2": 328, "statx": 332, "rseq": 334, "pidfd_send_signal": 424, "pidfd_open": 434, "clone3": 435,
    "close_range": 436, "openat2": 437, "faccessat2": 439, "epoll_pwait2": 441, "futex_waitv": 449,
    "fchmodat2": 452, "map_shadow_stack": 453, "futex_wake": 454, "futex_wait": 455, "futex_requeue": 456,
    "setxattrat": 463, "removexattrat": 466,
}

# allowed as they are, the busiest first (the filter is a linear scan)
_ALLOW = (
    "futex", "read", "write", "mmap", "munmap", "madvise", "mprotect", "brk", "lseek", "newfstatat", "close",
    "sched_yield", "fstat", "pread64", "readv", "writev", "getdents64", "fcntl", "clock_gettime",
    "clock_nanosleep", "nanosleep", "gettid", "getpid", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "mremap", "msync", "mincore", "stat", "lstat", "statx", "access", "faccessat", "faccessat2", "readlink",
    "readlinkat", "getcwd", "chdir", "fchdir", "dup", "dup2", "dup3", "pipe", "pipe2", "poll", "ppoll",
    "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
    "epoll_pwait2", "eventfd", "eventfd2", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "ftruncate",
    "fallocate", "fsync", "fdatasync", "flock", "fadvise64", "statfs", "fstatfs", "getxattr", "lgetxattr",
    "fgetxattr", "close_range", "umask", "uname", "sysinfo", "getrandom", "getrusage", "times", "time",
    "gettimeofday", "clock_getres", "getrlimit", "getuid", "getgid", "geteuid", "getegid", "getgroups",
    "getresuid", "getresgid", "getppid", "getpgrp", "getpgid", "getsid", "capget", "arch_prctl",
    "set_tid_address", "set_robust_list", "rseq", "restart_syscall", "exit", "exit_group",
    "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_getscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "getcpu", "membarrier", "mbind", "set_mempolicy",
    "get_mempolicy", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue", "map_shadow_stack",
    "sigaltstack", "rt_sigpending", "rt_sigtimedwait", "rt_sigsuspend", "pause", "alarm", "getitimer",
    "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "signalfd4", "wait4",
)
_REFUSE = (  # EPERM: what a payload would try
    "execve", "execveat", "fork", "vfork", "socket", "socketpair", "connect", "bind", "listen", "accept",
    "accept4", "sendto", "sendmsg", "sendmmsg", "recvfrom", "recvmsg", "recvmmsg", "shutdown", "getsockname",
    "getpeername", "setsockopt", "getsockopt", "sendfile", "creat", "rename", "renameat", "renameat2", "link",
    "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir", "mknod", "mknodat",
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "truncate", "utime",
    "utimes", "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr", "setxattrat", "removexattrat", "ptrace", "process_vm_readv", "process_vm_writev",
    "tkill", "pidfd_open", "pidfd_send_signal", "setrlimit", "memfd_create", "get_robust_list",
)
_NOT_THERE = ("clone3", "openat2")  # ENOSYS: the C library falls back to clone / openat, which are checked


@dataclass
class Confinement:
    """What confinement a process runs under; the ``sandbox`` object of the IR document (docs/ir.md)."""

    state: str  # "on" (every layer), "partial" (some), "off" (none)
    layers: list[str] = field(default_factory=list)  # "seccomp", "landlock 7" (its ABI version)
    reason: str | None = None  # why a layer is missing

    def to_json(self) -> dict:
        return {"state": self.state, "layers": list(self.layers), "reason": self.reason}

    @classmethod
    def from_json(cls, data) -> "Confinement | None":
        if not isinstance(data, dict) or data.get("state") not in ("on", "partial", "off"):
            return None
        layers = data.get("layers")  # written by the child: trust no shape
        layers = [x for x in layers if isinstance(x, str)] if isinstance(layers, list) else []
        reason = data.get("reason")
        return cls(data["state"], layers, str(reason) if reason is not None else None)

    @property
    def message(self) -> str:
        """One line for a user: ``sandbox on: landlock 7, seccomp`` or ``sandbox off: <why>``."""
        if self.state == "on":
            return f"sandbox on: {', '.join(self.layers)}"
        if self.state == "partial":
            return f"sandbox partial ({', '.join(self.layers)}): {self.reason or 'no reason given'}"
        return f"sandbox off: {self.reason or 'no reason given'}"


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    return libc


def _syscall(libc, number: int, *args) -> int:
    ret = libc.syscall(ctypes.c_long(number), *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def landlock_abi() -> tuple[int, str | None]:
    """(Landlock ABI version, None) or (0, why it is unavailable)."""
    if not sys.platform.startswith("linux"):
        return 0, f"Landlock is Linux only (this is {sys.platform})"
    try:
        return _syscall(_libc(), _NR_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(_LL_VERSION)), None
    except OSError as exc:
        why = {38: "the kernel has no Landlock (before Linux 5.13)",
               95: "Landlock is built in but not enabled (add landlock to the lsm= boot parameter)"}
        return 0, why.get(exc.errno, f"Landlock refused: {exc.strerror}")


def _machine() -> str:
    return os.uname().machine


def seccomp_supported() -> str | None:
    """None when this process can install the seccomp filter, else why not."""
    if not sys.platform.startswith("linux"):
        return f"seccomp is Linux only (this is {sys.platform})"
    machine = _machine()
    if machine != "x86_64" or sys.maxsize < 2 ** 32:
        return f"the seccomp filter knows x86_64 system call numbers only (this is {machine or 'unknown'})"
    try:
        ret = _libc().prctl(_PR_GET_SECCOMP, 0, 0, 0, 0)
    except (OSError, AttributeError) as exc:
        return f"prctl is unavailable ({exc})"
    if ret < 0:
        return f"the kernel has no seccomp ({os.strerror(ctypes.get_errno())})"
    return None


def support() -> Confinement:
    """What :func:`confine` would set up on this machine, without setting anything up."""
    seccomp_why = seccomp_supported()
    abi, landlock_why = landlock_abi()
    layers = ([] if seccomp_why else ["seccomp"]) + ([f"landlock {abi}"] if abi else [])
    return _summary(layers, [why for why in (seccomp_why, landlock_why) if why])


def _summary(layers: list[str], reasons: list[str]) -> Confinement:
    state = "on" if not reasons else ("partial" if layers else "off")
    return Confinement(state, sorted(layers), "; ".join(reasons) or None)


def confine(readable=(), *, pid: int | None = None) -> Confinement:
    """Confine this process (all its threads, for seccomp) for good; never raises.

    ``readable``: folders and files that must stay readable besides Python, its libraries and a few system
    files (the folder holding the archive copy, ``--library`` folders). Call it before importing torch.
    """
    if not sys.platform.startswith("linux"):
        return Confinement("off", [], f"the sandbox needs Linux (this is {sys.platform})")
    try:
        return _confine(_libc(), readable, os.getpid() if pid is None else pid)
    except Exception as exc:  # noqa: BLE001 - an odd C library: run, and say the sandbox is off
        return Confinement("off", [], f"cannot set up the sandbox: {type(exc).__name__}: {exc}")


def _confine(libc, readable, pid: int) -> Confinement:
    layers, reasons = [], []
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return Confinement("off", [], f"cannot set no_new_privs: {os.strerror(ctypes.get_errno())}")
    abi, why = landlock_abi()  # first: the seccomp filter refuses the Landlock calls
    if abi:
        try:
            _landlock(libc, abi, _readable_paths(readable))
            layers.append(f"landlock {abi}")
        except OSError as exc:
            reasons.append(f"Landlock failed: {exc.strerror}")
    else:
        reasons.append(why)
    why = seccomp_supported()
    if why is None:
        try:
            _install_filter(libc, seccomp_program(pid))
            layers.append("seccomp")
        except OSError as exc:
            reasons.append(f"seccomp failed: {exc.strerror}")
    else:
        reasons.append(why)
    return _summary(layers, reasons)


# --- Landlock ---

def _readable_paths(extra) -> tuple[list[str], list[str]]:
    """(folders, files) the sandboxed process may read."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
               "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/zoneinfo",
               "/sys/devices/system/cpu", "/proc/self"}
    folders.update(p for p in sys.path if p)
    folders.update(p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p)
    files = {"/etc/ld.so.cache", "/etc/localtime", "/usr/lib/ssl/openssl.cnf", "/proc/cpuinfo", "/proc/meminfo",
             "/proc/stat", "/proc/sys/vm/overcommit_memory", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"}
    for path in extra:
        (folders if os.path.isdir(path) else files).add(str(path))
    return sorted(folders), sorted(files)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


def _landlock(libc, abi: int, paths: tuple[list[str], list[str]]) -> None:
    handled_fs = _FS_ALL_BY_ABI.get(abi, _FS_ALL_BY_ABI[5])
    attr = _RulesetAttr(handled_fs, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
                        _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8  # the struct grew with the ABI
    ruleset = _syscall(libc, _NR_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                       ctypes.c_uint32(0))
    try:
        folders, files = paths
        for path, rights in [(p, _FS_READ_FILE | _FS_READ_DIR) for p in folders] + \
                            [(p, _FS_READ_FILE) for p in files]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # absent on this machine
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    rights &= _FILE_RIGHTS
                rule = struct.pack("<Qi", rights & handled_fs, fd)  # landlock_path_beneath_attr, packed
                _syscall(libc, _NR_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_LL_RULE_PATH_BENEATH),
                         ctypes.c_char_p(rule), ctypes.c_uint32(0))
            finally:
                os.close(fd)
        _syscall(libc, _NR_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)


# --- seccomp ---

def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _arg_low(i: int) -> int:
    return 16 + 8 * i  # seccomp_data.args[i], low 32 bits (little-endian)


def seccomp_program(pid: int) -> bytes:
    """The BPF filter (x86_64), as bytes of ``struct sock_filter``. Every rule starts with the syscall
    number in the accumulator and ends in a return, so rules need no long jumps."""
    nr = _X86_64
    allow, perm, nosys = _insn(_RET, _RET_ALLOW), _insn(_RET, _RET_ERRNO | EPERM), _insn(_RET, _RET_ERRNO | ENOSYS)
    prog = [_insn(_LD_ABS_W, 4), _insn(_JEQ, _AUDIT_ARCH_X86_64, 1, 0), _insn(_RET, _RET_KILL_PROCESS),
            _insn(_LD_ABS_W, 0), _insn(_JGE, _X32_BIT, 0, 1), nosys]

    def rule(name: str, body: list[bytes]) -> None:
        prog.append(_insn(_JEQ, nr[name], 0, len(body)))
        prog.extend(body)

    for name in _ALLOW[:12]:
        rule(name, [allow])
    for name, arg in (("openat", 2), ("open", 1)):  # read-only opens only
        rule(name, [_insn(_LD_ABS_W, _arg_low(arg)), _insn(_JSET, _O_WRITE_MASK, 0, 1), perm, allow])
    # threads only: CLONE_THREAD set and no new namespace
    rule("clone", [_insn(_LD_ABS_W, _arg_low(0)), _insn(_JSET, _CLONE_THREAD, 0, 2),
                   _insn(_JSET, _CLONE_NEW_ANY, 1, 0), allow, perm])
    for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):  # signals to itself only
        rule(name, [_insn(_LD_ABS_W, _arg_low(0)), _insn(_JEQ, pid, 0, 1), allow, perm])
    # prlimit64(pid, resource, new, old): reading only (new == NULL)
    rule("prlimit64", [_insn(_LD_ABS_W, _arg_low(2)), _insn(_JEQ, 0, 0, 3), _insn(_LD_ABS_W, _arg_low(2) + 4),
                       _insn(_JEQ, 0, 0, 1), allow, perm])
    rule("prctl", [_insn(_LD_ABS_W, _arg_low(0))]
         + [_insn(_JEQ, option, len(_PRCTL_OPTIONS) - i, 0) for i, option in enumerate(_PRCTL_OPTIONS)]
         + [perm, allow])
    rule("ioctl", [_insn(_LD_ABS_W, _arg_low(1)), _insn(_JEQ, _TIOCSTI, 2, 0), _insn(_JEQ, _TIOCLINUX, 1, 0),
                   allow, perm])
    for name in _ALLOW[12:]:
        rule(name, [allow])
    for name in _REFUSE:
        rule(name, [perm])
    for name in _NOT_THERE:
        rule(name, [nosys])
    prog.append(nosys)  # everything unlisted
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _install_filter(libc, program: bytes) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    # TSYNC: every thread of the process gets the filter, not only the calling one
    _syscall(libc, _NR_SECCOMP, ctypes.c_uint(_SECCOMP_SET_MODE_FILTER), ctypes.c_uint(_SECCOMP_FILTER_FLAG_TSYNC),
             ctypes.byref(fprog))


# --- resource limits ---

def set_limits(memory: int | None, cpu_seconds: int | None, file_size: int | None) -> None:
    """Lower this process's limits: address space, CPU seconds, largest file written, no core dumps.
    Never raised above a hard limit; call before :func:`confine` (which forbids changing them)."""
    import resource

    wanted = [(resource.RLIMIT_CORE, 0), (resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu_seconds),
              (resource.RLIMIT_FSIZE, file_size)]
    for limit, value in wanted:
        if value is None:
            continue
        try:
            _soft, hard = resource.getrlimit(limit)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(limit, (value, hard))
        except (ValueError, OSError):
            pass
