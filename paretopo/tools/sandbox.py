"""Run model-written Python code in a separate, locked-down process.

`PythonSandbox(...).run(code)` starts a fresh interpreter, runs `code` in it and returns a
`SandboxResult`; `make_python_tool()` wraps that as the typed `python(code) -> str` tool that
TRL turns into a JSON schema. Results come back ToRL-style: stdout and stderr together, cut to
head + "..." + tail, and on an exception only the last line of the traceback. Each result
says which isolation level it ran under (`SandboxResult.isolation`; the tool counts its calls
per level in `python.runs_by_isolation`), `paretopo train` records the level in the run's
config.json and `paretopo eval` each call's in its summary ("tool_isolation").

Isolation levels, the strongest allowed one that works chosen on every run (`run`): a
sandbox that fails to start (the code never ran, e.g. EAGAIN from clone() under pid pressure)
is retried SETUP_ATTEMPTS times, a level that keeps failing is skipped for
LEVEL_RETRY_AFTER_S and then tried again, so no transient failure pins a process to a weaker
level. `require_isolation` (or $PARETOPO_REQUIRE_ISOLATION, `--require-isolation` on
`paretopo train` and `eval`) refuses to run code below a level: the run returns an error
result and `make_python_tool` raises.

"bwrap" (Debian's bubblewrap, the sandbox Flatpak uses, when `bwrap` is installed), and
"namespaces" (the same view built by hand with `unshare` and mount calls, as root, when bwrap
is absent) give model code the same allow-listed view:
    - new mount, PID, network, IPC and UTS namespaces; when the run ends or times out, every
      process in its PID namespace dies with it;
    - as root, the code runs as a fresh random uid with no capabilities and no_new_privs, so
      RLIMIT_NPROC is enforced (it is not for root) and counts only this run's processes
      (bwrap without root: the caller's uid inside a user namespace);
    - no network: the namespace has only a loopback device, left down;
    - the filesystem is an allow-list, built on an empty root (`PythonSandbox.filesystem_view`).
      Model code sees only:
        * read-only: the interpreter binary, its standard library and LIBDIR, the allowed
          site-packages (`site_packages=True`), `extra_readonly_paths`; the loader and shared
          libraries (/usr/lib, /usr/lib64; /lib and /lib64 as the host has them) and /usr/bin
          (with /bin), so that `sh` and `subprocess` work - programs, not data;
        * a private writable tmpfs /tmp of `scratch_mb` (working directory /tmp/sandbox;
          /dev/shm points into it);
        * /dev/null, /dev/zero, /dev/urandom, and /dev/fd, /dev/std{in,out,err};
        * /proc of its own PID namespace.
      Nothing else of the host: not the checkout, not the folders beside it, not /home, /root,
      /etc, /var, /srv, /opt, /mnt or any other top-level folder. Directories on the way to an
      allowed path (e.g. /root/.pyenv for a pyenv interpreter) exist but list only that path.
"rlimits-only" (no bwrap and no root `unshare`, e.g. some notebook hosts and containers):
    a separate process in its own session with the resource limits below, a minimal
    environment and a temporary working directory. As root it runs as a fresh random uid
    (keeping only CAP_DAC_READ_SEARCH, so an interpreter under /root stays reachable): it
    cannot signal, ptrace or read /proc/<pid>/environ of the trainer or any other process,
    RLIMIT_NPROC holds, and every process of that uid is killed when the run ends, its SysV
    segments and /dev/shm files removed. When mode="auto" falls back to it, a warning says so.

All levels: a wall-time limit (the whole process group is SIGKILLed), RLIMIT_CPU, RLIMIT_AS,
RLIMIT_FSIZE, RLIMIT_NOFILE and no core dumps; stdin is /dev/null; the environment is built
from scratch (PATH, HOME, LANG, PYTHONHASHSEED, single-threaded BLAS), so the parent's
secrets are not passed on; output is read into a bounded buffer, so a print loop cannot
fill the host's memory; a new, empty kernel session keyring (the caller's keys are out of
reach, and a key planted there does not reach the next run).

Memory of a run in total: where a memory cgroup can be made (cgroup v1's memory hierarchy,
or v2 where our cgroup delegates the memory controller;
`paretopo.tools.sandbox_cgroup.memory_cgroup_problem()` says why not), every process of the run is in one cgroup of `run_memory_mb` (default memory_mb +
scratch_mb): heap, memfd_create files, SysV and POSIX shared memory, tmpfs files and page
cache all count, and the OOM killer ends the code's processes (oom_score_adj 1000) with
"MemoryError: out of memory (all processes: N MB)". Without one, a seccomp filter refuses
memfd_create and shmget (EPERM; x86_64 and aarch64), whose memory no rlimit counts (writes
to a memfd ignore RLIMIT_FSIZE: measured), and the bound is max_processes x memory_mb
(RLIMIT_AS) plus scratch_mb for the isolated levels.

The verdict (ok, timeouts, setup failures, exit status) is judged from outside: the confined
process says "ready" on a pipe it closes before the code runs, and its parent (the host at
rlimits-only, the supervisor in the namespaces, running as another uid and not dumpable)
reads its wait status and CPU time with wait4. A CPU-limit kill with SIGXCPU ignored (the hard
limit's SIGKILL) is told by that CPU time. The code holds no fd of the status channel.

Threat model. This is for code written by a language model during RL: mostly buggy,
sometimes runaway (infinite loops, fork or memory bombs, huge prints), now and then
"curious" (reading files, environment variables or the network to find answers, such as the
answer keys in the checkout's data or a researcher's other projects). It is NOT a security
boundary against a determined attacker. It does not protect against:
    - kernel exploits: the code shares the host kernel, and a local privilege escalation
      escapes every level here (use a VM or gVisor for hostile code);
    - side and covert channels: timing, caches, CPU load, /proc/cpuinfo and the like;
    - what the allow-list shows: the host's installed programs and libraries, the Python
      installation and its site-packages (read-only), and the kernel's global /proc files;
    - memory without a cgroup beyond the bound above (and, at rlimits-only, files the code
      writes to the host's world-writable folders); CPU contention is bounded only by the
      time limits;
    - forged error lines: the last traceback line is written from inside the sandbox, so
      code can fake its own error message (never the verdict: see above);
    - anything in "rlimits-only" mode beyond the above: the network is on and the host's
      files are readable (as root: all of them, through CAP_DAC_READ_SEARCH; writable only
      where the world may write). Not as root, the code runs as the calling user: it can
      signal and read the environment of that user's processes (the trainer's included),
      reach the user's keyring (@u), and processes that leave the session (setsid) survive
      the kill unless a memory cgroup holds the run.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import platform
import select
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

from paretopo.tools.sandbox_cgroup import (
    MemoryCgroup,
    kill_processes,
    pids_of_uid,
    remove_shared_memory_of,
    uid_of,
)

ISOLATION_LEVELS = ("bwrap", "namespaces", "rlimits-only")  # strongest first
ISOLATED_LEVELS = ("bwrap", "namespaces")  # the allow-listed filesystem view
# What `require_isolation` compares: bwrap, the audited tool, above the same view built by hand.
ISOLATION_STRENGTH = {"rlimits-only": 0, "namespaces": 1, "bwrap": 2}
REQUIRE_ISOLATION_ENV = "PARETOPO_REQUIRE_ISOLATION"
"""The default of `PythonSandbox.require_isolation` (set by `require_isolation_for_process`)."""
SETUP_ATTEMPTS = 3
"""Tries of one run at one level whose sandbox failed to start (the code never ran), e.g.
EAGAIN from clone() under pid pressure, before the next weaker level is tried."""
LEVEL_RETRY_AFTER_S = 30.0
"""A level that failed its probe or SETUP_ATTEMPTS starts in a row is skipped this long, then
tried again: one transient failure never pins a process to a weaker level for good."""
WORKDIR_IN_NAMESPACE = "/tmp/sandbox"
SYSTEM_READONLY_PATHS = ("/usr/lib", "/usr/lib64", "/usr/bin")  # loader, shared libraries, sh
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom")
# pivot_root, keyctl and capset have no libc wrapper; the numbers differ per architecture.
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "keyctl": 250, "capset": 126,
               "seccomp_arch": 0xC000003E, "memfd_create": 319, "shmget": 29, "x32": 0x40000000},
    "aarch64": {"pivot_root": 41, "keyctl": 219, "capset": 91,
                "seccomp_arch": 0xC00000B7, "memfd_create": 279, "shmget": 194},
    "riscv64": {"pivot_root": 41, "keyctl": 219, "capset": 91},
    "ppc64le": {"pivot_root": 203, "keyctl": 271, "capset": 184},
    "s390x": {"pivot_root": 217, "keyctl": 280, "capset": 185},
}


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """What one run produced.

    output: stdout and stderr interleaved, truncated to head + "..." + tail; "" if none.
    ok: True when the code ran to the end without an exception or a limit.
    error: one line, e.g. "ZeroDivisionError: division by zero"; None when ok.
    timed_out: the wall-time or CPU-time limit stopped it.
    duration_s: round trip seen by the caller, interpreter start-up included.
    truncated: output was cut.
    isolation: the level it ran under: "bwrap", "namespaces" or "rlimits-only".
    """

    output: str
    ok: bool
    error: str | None
    timed_out: bool
    duration_s: float
    truncated: bool
    isolation: str = ""

    def as_tool_text(self) -> str:
        """What the model sees: the output, then the error line if there is one."""
        if self.error is None:
            return self.output
        output = self.output.rstrip("\n")
        return f"{output}\n{self.error}" if output else self.error


def truncate_output(
    text: str, max_chars: int = 256, head: int = 128, tail: int = 128
) -> tuple[str, bool]:
    """Cut `text` longer than `max_chars` to its first `head` + "..." + last `tail` characters.

    Example: truncate_output("a" * 300) -> ("a" * 128 + "..." + "a" * 128, True)
    """
    if len(text) <= max_chars:
        return text, False
    return text[:head] + "..." + (text[-tail:] if tail else ""), True


@dataclasses.dataclass
class PythonSandbox:
    """Runs Python source in a fresh, limited process; see the module docstring.

    Example:
        >>> PythonSandbox(wall_time_s=2.0).run("print(1 + 1)").output
        '2\\n'
    """

    wall_time_s: float = 5.0
    """Wall-clock limit for the whole run, interpreter start-up included."""
    cpu_time_s: int = 5
    """RLIMIT_CPU per process (SIGXCPU at the limit, SIGKILL one second later)."""
    memory_mb: int = 512
    """RLIMIT_AS per process: virtual memory, so the interpreter's own ~30 MB count too."""
    file_size_mb: int = 8
    """RLIMIT_FSIZE: the largest file the code may write."""
    scratch_mb: int = 64
    """Size of the private tmpfs behind /tmp and the working directory ("namespaces" only)."""
    max_processes: int = 8
    """RLIMIT_NPROC for the sandbox uid, threads included ("namespaces", or not root)."""
    max_output_chars: int = 256
    """Output longer than this is cut to head_chars + "..." + tail_chars."""
    head_chars: int = 128
    """Characters kept from the start of a cut output."""
    tail_chars: int = 128
    """Characters kept from the end of a cut output."""
    site_packages: bool = True
    """Make the host's site-packages (numpy, sympy, ...) importable; no .pth hooks are run."""
    extra_readonly_paths: tuple[str, ...] = ()
    """More host files or folders to show read-only (isolated levels; e.g. "/etc/ld.so.cache"
    where the loader needs it). Everything not allow-listed stays invisible."""
    mode: str = "auto"
    """Isolation to use: "auto" (the strongest that works, chosen per run; warns on a fallback
    to "rlimits-only"), "bwrap", "namespaces" or "rlimits-only"."""
    run_memory_mb: int | None = None
    """Memory of all the run's processes together: heap, memfd and shared memory, tmpfs files,
    page cache. Enforced by a memory cgroup where one can be made (see
    `sandbox_cgroup.memory_cgroup_problem()`); None: memory_mb + scratch_mb."""
    require_isolation: str | None = dataclasses.field(
        default_factory=lambda: os.environ.get(REQUIRE_ISOLATION_ENV) or None
    )
    """Refuse to run code below this level: None, "namespaces" (the allow-listed view: the
    hand-built level or bwrap) or "bwrap". A refused run returns an error result, and
    `isolation` raises RuntimeError. Default: $PARETOPO_REQUIRE_ISOLATION, else None."""

    def __post_init__(self) -> None:
        if self.mode not in ("auto", *ISOLATION_LEVELS):
            raise ValueError(
                f"mode={self.mode!r}: use 'auto', 'bwrap', 'namespaces' or 'rlimits-only'"
            )
        if self.require_isolation not in (None, *ISOLATION_LEVELS):
            raise ValueError(
                f"require_isolation={self.require_isolation!r} (or ${REQUIRE_ISOLATION_ENV}): "
                "use None, 'namespaces' or 'bwrap'"
            )
        if self.mode != "auto" and _weaker(self.mode, self.require_isolation):
            raise ValueError(
                f"mode={self.mode!r} is below require_isolation={self.require_isolation!r}"
            )
        if self.run_memory_mb is not None and self.run_memory_mb <= 0:
            raise ValueError(f"run_memory_mb={self.run_memory_mb} must be positive")
        for name in (
            "wall_time_s",
            "cpu_time_s",
            "memory_mb",
            "file_size_mb",
            "scratch_mb",
            "max_processes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if (
            self.head_chars < 0
            or self.tail_chars < 0
            or self.head_chars + self.tail_chars > self.max_output_chars
        ):
            raise ValueError(
                f"head_chars={self.head_chars} + tail_chars={self.tail_chars} must be non-negative "
                f"and at most max_output_chars={self.max_output_chars}"
            )
        self.extra_readonly_paths = tuple(self.extra_readonly_paths)

    @property
    def isolation(self) -> str:
        """The level the next run gets: "bwrap", "namespaces" or "rlimits-only".

        Chosen afresh on every run (a level that failed is retried after LEVEL_RETRY_AFTER_S);
        raises RuntimeError when no allowed level works (fixed `mode` unavailable, or nothing
        at or above `require_isolation`).
        """
        problems = {}
        for level in self._allowed_levels():
            problems[level] = _level_problem(level)
            if problems[level] is None:
                if level == "rlimits-only" and self.mode == "auto":
                    _warn_fallback(problems)
                return level
        raise RuntimeError(self._unavailable(problems))

    def readonly_paths(self) -> list[str]:
        """Host paths the isolated levels show read-only, real paths, none inside another."""
        wanted = [*SYSTEM_READONLY_PATHS, *_interpreter_paths(), *self.extra_readonly_paths]
        wanted += _site_dirs() if self.site_packages else []
        # Without merged /usr, /bin, /lib and /lib64 are real folders holding sh and the loader.
        wanted += [p for p in ("/bin", "/lib", "/lib64") if os.path.isdir(p) and not os.path.islink(p)]
        kept: list[str] = []
        for path in sorted({os.path.realpath(p) for p in wanted if os.path.exists(p)}):
            if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
                kept.append(path)
        return kept

    def filesystem_view(self) -> list[tuple[str, str, str]]:
        """The whole filesystem of the isolated levels, as (kind, path, source) on an empty root.

        kind: "tmpfs" (source: size in MB), "dir" (an empty folder, mode 755), "ro" (a read-only
        bind of the host's `source`), "dev" (a device bind), "symlink" (source: its target),
        "proc" (a new procfs of the sandbox's PID namespace). In order: parents first.
        """
        view = [("tmpfs", "/tmp", str(self.scratch_mb))]
        made = {"/", "/tmp"}

        def parents(path: str) -> None:
            parent = os.path.dirname(path)
            if parent not in made:
                parents(parent)
                view.append(("dir", parent, ""))
                made.add(parent)

        readonly = self.readonly_paths()
        for path in readonly:
            parents(path)
            view.append(("ro", path, path))
        for name in ("/bin", "/lib", "/lib64"):  # merged /usr: keep the host's links into it
            target = os.path.realpath(name)
            if os.path.islink(name) and any(target == p or target.startswith(p + "/") for p in readonly):
                view.append(("symlink", name, os.readlink(name)))
        view.append(("dir", "/dev", ""))
        view += [("dev", device, device) for device in DEVICES if os.path.exists(device)]
        view += [("symlink", "/dev/fd", "/proc/self/fd"), ("symlink", "/dev/shm", "/tmp")]
        view += [("symlink", f"/dev/{name}", f"/proc/self/fd/{fd}")
                 for fd, name in enumerate(("stdin", "stdout", "stderr"))]
        view.append(("proc", "/proc", ""))
        return view

    def run(self, code: str) -> SandboxResult:
        """Run `code` as a script in the sandbox and report what happened.

        Any str is accepted (lone surrogates included); anything else gives an error result.
        The level is chosen per run: the strongest allowed one that works now; a sandbox that
        fails to start (the code never ran) is retried SETUP_ATTEMPTS times, then the next
        allowed level is tried. With no allowed level working the code is not run: the result
        says why (isolation "").
        """
        start = time.perf_counter()
        if not isinstance(code, str):
            return self._refusal(f"TypeError: code must be a str, not {type(code).__name__}", start)
        # A lone surrogate cannot be UTF-8 (nor compiled): sent as its escape, "\\ud800", which
        # in a string literal means the same str again.
        source = code.encode("utf-8", "backslashreplace")
        problems: dict[str, str | None] = {}
        for level in self._allowed_levels():
            problems[level] = _level_problem(level)
            if problems[level] is not None:
                continue
            for attempt in range(SETUP_ATTEMPTS):
                result, setup_problem = self._run(source, level)
                if setup_problem is None:
                    _LEVEL_FAILURES.pop(level, None)
                    if level == "rlimits-only" and self.mode == "auto":
                        _warn_fallback(problems)
                    return result
                time.sleep(0.05 * (attempt + 1))
            _LEVEL_FAILURES[level] = (time.monotonic(), setup_problem)
            problems[level] = f"failed to start {SETUP_ATTEMPTS} times: {setup_problem}"
        return self._refusal(f"RuntimeError: {self._unavailable(problems)}", start)

    def _allowed_levels(self) -> list[str]:
        if self.mode != "auto":
            return [self.mode]
        return [level for level in ISOLATION_LEVELS if not _weaker(level, self.require_isolation)]

    def _unavailable(self, problems: dict[str, str | None]) -> str:
        if self.mode != "auto":
            return (f"sandbox refused to run the code: mode={self.mode!r} is unavailable here: "
                    f"{problems.get(self.mode)}")  # fmt: skip
        floor = f"require_isolation={self.require_isolation!r}: " if self.require_isolation else ""
        reasons = "; ".join(f"{level}: {problem}" for level, problem in problems.items())
        return f"sandbox refused to run the code: {floor}no allowed level works here ({reasons})"

    def _refusal(self, error: str, start: float) -> SandboxResult:
        return SandboxResult("", False, error, False, time.perf_counter() - start, False, "")

    @property
    def run_memory_limit_mb(self) -> int:
        """The memory cgroup's limit for one run (see `run_memory_mb`)."""
        return self.run_memory_mb or self.memory_mb + self.scratch_mb

    def _run(self, source: bytes, isolation: str) -> tuple[SandboxResult, str | None]:
        """One run at `isolation`: (result, None), or (result, why) when the sandbox failed to
        start and the code never ran (safe to retry)."""
        start = time.perf_counter()
        as_root = os.geteuid() == 0
        isolated = isolation in ISOLATED_LEVELS
        # As root the code always runs as a fresh uid: RLIMIT_NPROC holds, and (rlimits-only)
        # it can neither signal nor read the trainer's processes.
        uid = _fresh_uid() if as_root else None
        view = self.filesystem_view() if isolated else []
        host_workdir = None
        if isolated:
            workdir = WORKDIR_IN_NAMESPACE
            # The interpreter's real path: the view holds the binary, not a venv's symlink to it.
            python = os.path.realpath(sys.executable)
        else:
            host_workdir = tempfile.mkdtemp(prefix="paretopo-sandbox-")
            if uid is not None:
                os.chown(host_workdir, uid, uid)
            workdir = host_workdir
            python = sys.executable
        if isolation == "bwrap":
            argv = _bwrap_argv(view, as_root)
        elif isolation == "namespaces":
            argv = ["unshare", "--mount", "--pid", "--net", "--ipc", "--uts", "--fork",
                    "--kill-child", "--mount-proc"]  # fmt: skip
        else:
            argv = []
        cgroup = MemoryCgroup.create(self.run_memory_limit_mb)
        # rlimits-only: the host judges its own child; the "ready" and error pipes are its.
        pipes = {} if isolated else {"ready": [*os.pipe()], "error": [*os.pipe()]}
        cfg = {
            "isolation": isolation,
            "uid": uid,
            "workdir": workdir,
            "cpu_s": self.cpu_time_s,
            "memory_mb": self.memory_mb,
            "file_size_mb": self.file_size_mb,
            "nproc": self._nproc_limit(isolation),
            "site_dirs": [os.path.realpath(p) for p in _site_dirs()] if self.site_packages else [],
            "view": view if isolation == "namespaces" else [],  # bwrap builds it itself
            "syscalls": _SYSCALLS.get(platform.machine()),
            "env": _minimal_env(workdir, python),
            "deny_shared_memory": cgroup is None,
            **{f"{name}_fd": ends[1] for name, ends in pipes.items()},
        }
        # -S skips site.py and its .pth hooks (the editable-install hook alone costs ~10 ms);
        # the supervisor puts site-packages on sys.path itself. -u: partial output survives a kill.
        argv += [python, "-S", "-u", "-c", _supervisor_source(), json.dumps(cfg)]
        if cgroup is not None:  # join it before anything forks, then become the sandbox
            argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', cgroup.procs_file, *argv]
        proc = None
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=host_workdir or "/",
                env=cfg["env"],
                start_new_session=True,
                pass_fds=[ends[1] for ends in pipes.values()],
            )
            for ends in pipes.values():
                os.close(ends[1])
                ends[1] = -1
            streams, timed_out = self._pump(
                proc, source, start, {name: ends[0] for name, ends in pipes.items()}
            )
            # Left-overs go before the leader is reaped (its pid, and pgid, stay ours till then).
            if not isolated and uid is not None:
                kill_processes(lambda: pids_of_uid(uid), lambda pid: uid_of(pid) == uid)
                remove_shared_memory_of(uid)
            if cgroup is not None:
                cgroup.kill_all()
            try:
                _, wait_status, usage = os.wait4(proc.pid, 0)
                cpu_s = usage.ru_utime + usage.ru_stime
                proc.returncode = os.waitstatus_to_exitcode(wait_status)
            except ChildProcessError:  # someone else in this process reaped it: status unknown
                wait_status, cpu_s, proc.returncode = None, 0.0, -1
            oom_kills = cgroup.oom_kills() if cgroup is not None else 0
        finally:
            for ends in pipes.values():
                for fd in ends:
                    if fd >= 0:
                        os.close(fd)
            if proc is not None and proc.returncode is None:  # an error above: never leak it
                _kill_session(proc)
                proc.wait()
            if cgroup is not None:
                cgroup.remove()
            if host_workdir is not None:
                shutil.rmtree(host_workdir, ignore_errors=True)
        if isolated:
            report = _supervisor_report(streams["status"])
        else:
            report = {
                "ready": bytes(streams["ready"].tail).decode("utf-8", "replace"),
                "wait": wait_status,
                "cpu_s": cpu_s,
                "error": bytes(streams["error"].tail).decode("utf-8", "replace"),
            }
        error, limit_hit, setup_problem = self._verdict(report, timed_out, oom_kills)
        text, truncated = streams["output"].text(
            self.max_output_chars, self.head_chars, self.tail_chars
        )
        result = SandboxResult(
            output=text,
            ok=error is None,
            error=error,
            timed_out=timed_out or limit_hit,
            duration_s=time.perf_counter() - start,
            truncated=truncated,
            isolation=isolation,
        )
        return result, setup_problem

    def _nproc_limit(self, isolation: str) -> int:
        if os.geteuid() == 0:
            return self.max_processes  # the code runs as a fresh uid: only its own tasks count
        # RLIMIT_NPROC counts every task of the real uid, so leave room for the ones running.
        return self.max_processes + _count_tasks_of(os.getuid())

    def _pump(
        self, proc: subprocess.Popen, code: bytes, start: float, extra_fds: dict[str, int]
    ) -> tuple[dict[str, _BoundedBuffer], bool]:
        """Feed the code to stdin and read the pipes until exit or the wall-time limit.

        Returns the buffers ("output": stdout, "status": stderr, one per `extra_fds` name) and
        whether the wall time ran out. The leader is left unreaped.
        """
        streams = {
            "output": _BoundedBuffer(
                4 * max(self.max_output_chars, self.head_chars) + 4, 4 * self.tail_chars + 4
            ),
            "status": _BoundedBuffer(1 << 16, 1 << 12),  # supervisor's JSON lines, tail kept
            **{name: _BoundedBuffer(0, 1 << 13) for name in extra_fds},  # the last 8 KB
        }
        sinks = {proc.stdout.fileno(): streams["output"], proc.stderr.fileno(): streams["status"]}
        sinks.update({fd: streams[name] for name, fd in extra_fds.items()})
        selector = selectors.DefaultSelector()
        os.set_blocking(proc.stdin.fileno(), False)
        selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
        for fd in sinks:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        stdin_fd = proc.stdin.fileno()
        deadline = start + self.wall_time_s
        written = 0
        timed_out = False
        try:
            while selector.get_map():
                remaining = deadline - time.perf_counter()
                if remaining <= 0 and not _has_exited(proc.pid):
                    timed_out = True
                    break
                for key, _ in selector.select(min(max(remaining, 0), 0.05)):
                    if key.fd == stdin_fd:
                        try:
                            written += os.write(key.fd, code[written : written + 65536])
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            written = len(code)
                        if written >= len(code):
                            selector.unregister(key.fd)
                            proc.stdin.close()
                        continue
                    try:
                        data = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if data:
                        sinks[key.fd].feed(data)
                    else:
                        selector.unregister(key.fd)
                # Left-over holders of the pipes must not stall us once the leader is done.
                if _has_exited(proc.pid):
                    for fd in list(selector.get_map()):
                        if fd in sinks:
                            _drain(fd, sinks[fd])
                    break
            if timed_out:
                _kill_session(proc)
        finally:
            selector.close()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if not stream.closed:
                    stream.close()
        return streams, timed_out

    def _verdict(
        self, report: dict | None, timed_out: bool, oom_kills: int
    ) -> tuple[str | None, bool, str | None]:
        """(error line or None, whether a limit was hit, why the sandbox failed to start).

        Judged only from what the code cannot forge: the wall clock, the "ready" word the
        confined process sent before the code ran, its wait status and CPU time as its parent
        saw them, the cgroup's OOM kills. The code's own error line is used only as the text
        of a failure that its exit status already shows.
        """
        if timed_out:
            return f"TimeoutError: execution exceeded {self.wall_time_s} s", True, None
        if report is None or not report.get("ready", "").startswith("R"):
            why = (report or {}).get("ready", "")[1:] or (report or {}).get("detail", "")
            why = why or "no status reported"
            return f"RuntimeError: sandbox setup failed: {why}", False, why
        wait_status = report.get("wait")
        if not isinstance(wait_status, int):  # the supervisor died after the code started
            return f"RuntimeError: sandbox failed: {report.get('detail') or 'no exit status'}", False, None
        if os.WIFSIGNALED(wait_status):
            sig = os.WTERMSIG(wait_status)
            # With SIGXCPU ignored, the hard limit's SIGKILL ends it: known by its CPU time.
            if sig == signal.SIGXCPU or (
                sig == signal.SIGKILL and float(report.get("cpu_s", 0)) >= self.cpu_time_s
            ):
                return f"TimeoutError: CPU time limit of {self.cpu_time_s} s exceeded", True, None
            if sig == signal.SIGKILL and oom_kills:
                limit = self.run_memory_limit_mb
                return f"MemoryError: out of memory (all processes: {limit} MB)", False, None
            return f"RuntimeError: killed by signal {_signal_name(sig)}", False, None
        code = os.WEXITSTATUS(wait_status)
        if code == 0:
            return None, False, None
        error = str(report.get("error") or "").rpartition("\0")[2] if code == 1 else ""
        if not error:
            return f"SystemExit: {code}", False, None
        error, _ = truncate_output(error, self.max_output_chars, self.head_chars, self.tail_chars)
        return error, False, None


def _supervisor_report(status: _BoundedBuffer) -> dict | None:
    """The supervisor's ready and wait messages merged, or None if it sent neither.

    Other lines (bwrap's or unshare's own errors) become "detail".
    """
    report: dict = {}
    other = []
    for line in status.text(1 << 20, 1 << 20, 0)[0].splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        if isinstance(message, dict):
            report.update(message)
    if other:
        report["detail"] = other[-1]
    return report or None


def make_python_tool(sandbox: PythonSandbox | None = None) -> Callable[[str], str]:
    """Build the `python` tool for an agent, running in `sandbox` (default limits if None).

    The returned function is typed and documented so that TRL's `tools=` (through
    transformers' `get_json_schema`) can describe it to the model. Its `isolation` attribute
    is the level its runs get now (raises RuntimeError here when the sandbox's
    `require_isolation` cannot be met), and `runs_by_isolation` counts the level each call
    actually ran under ("" for a refused call), for run logs and eval summaries.

    Example:
        >>> make_python_tool()("print(6 * 7)")
        '42\\n'
    """
    box = sandbox if sandbox is not None else PythonSandbox()
    runs_by_isolation: Counter[str] = Counter()

    def python(code: str) -> str:
        """Run Python code in a sandbox and return what it printed.

        Args:
            code: Python source code to execute. Use print() to show results.
        """
        result = box.run(code)
        runs_by_isolation[result.isolation] += 1
        return result.as_tool_text()

    python.isolation = box.isolation  # type: ignore[attr-defined]
    python.runs_by_isolation = runs_by_isolation  # type: ignore[attr-defined]
    return python


def require_isolation_setting() -> Any:
    """The settings field (``RunSettings``, ``EvalSettings``: ``--require-isolation``) that names the
    level model-written code must run at, declared once here beside the levels."""
    from paretopo.core.settings import setting

    return setting(None, "refuse to run model-written code below this sandbox level (namespaces: the "
                         "allow-listed view, hand-built or bwrap; bwrap: bubblewrap only); default: "
                         f"${REQUIRE_ISOLATION_ENV}", kind=str, choices=tuple(reversed(ISOLATED_LEVELS)))


def require_isolation_for_process(level: str | None) -> None:
    """Every sandbox made from now on, in this process and the processes it starts, refuses to
    run code below `level` ("namespaces" or "bwrap"); None changes nothing. Checked here."""
    if level is None:
        return
    PythonSandbox(mode="auto", require_isolation=level)  # ValueError for an unknown level
    os.environ[REQUIRE_ISOLATION_ENV] = level


def tool_isolation(tools: dict[str, Callable]) -> dict[str, dict[str, int]]:
    """How many calls of each sandboxed tool ran under each level, e.g.
    {"python": {"bwrap": 12}} (a refused call counts under "")."""
    return {
        name: dict(sorted(tool.runs_by_isolation.items()))
        for name, tool in tools.items()
        if hasattr(tool, "runs_by_isolation")
    }


def detect_isolation() -> str:
    """The strongest level that works here now (see `PythonSandbox.isolation`).

    "bwrap" and "namespaces" give the same view; warns (once per process) when it has to
    fall back to "rlimits-only".
    """
    return PythonSandbox().isolation


# level -> (time.monotonic() of its last failure, why): skipped until LEVEL_RETRY_AFTER_S later
_LEVEL_FAILURES: dict[str, tuple[float, str]] = {}
_CONFIRMED_LEVELS: set[str] = set()  # levels whose probe ran confined in this process
_FALLBACK_WARNED: list[bool] = []


def _reset_level_state() -> None:
    """Forget every probe and failure (tests)."""
    _LEVEL_FAILURES.clear()
    _CONFIRMED_LEVELS.clear()
    _FALLBACK_WARNED.clear()
    for static in (_bwrap_problem, _namespace_problem):
        getattr(static, "cache_clear", lambda: None)()  # a test may have replaced it


def _weaker(level: str, required: str | None) -> bool:
    return required is not None and ISOLATION_STRENGTH[level] < ISOLATION_STRENGTH[required]


def _warn_fallback(problems: dict[str, str | None]) -> None:
    if _FALLBACK_WARNED:
        return
    _FALLBACK_WARNED.append(True)
    reasons = "; ".join(f"{level}: {problem}" for level, problem in problems.items() if problem)
    who = "a fresh uid" if os.geteuid() == 0 else f"uid {os.geteuid()} (the caller's)"
    warnings.warn(
        f"PythonSandbox: no isolated level works here ({reasons}); falling back to "
        f"'rlimits-only' isolation: model code runs as {who} with resource limits, a minimal "
        "environment and a temporary directory, but WITH network access and the host's files "
        "in view. The isolated levels are tried again on later runs. Install bubblewrap "
        "(apt-get install bubblewrap) for the allow-listed view; see the threat model in "
        "paretopo.tools.sandbox; `require_isolation` refuses to run below a level.",
        RuntimeWarning,
        stacklevel=3,
    )


def _level_problem(level: str) -> str | None:
    """Why `level` cannot be used now, or None when it works.

    Missing programs or privileges are permanent; a failed probe or start is retried after
    LEVEL_RETRY_AFTER_S; a probe that ran confined is trusted for the process's life (each
    run still checks that its sandbox started).
    """
    if level == "rlimits-only":
        return None
    problem = _bwrap_problem() if level == "bwrap" else _namespace_problem()
    if problem is not None:
        return problem
    failed = _LEVEL_FAILURES.get(level)
    if failed is not None:
        age = time.monotonic() - failed[0]
        if age < LEVEL_RETRY_AFTER_S:
            return f"{failed[1]} ({age:.0f} s ago; tried again after {LEVEL_RETRY_AFTER_S:.0f} s)"
    if level not in _CONFIRMED_LEVELS:
        problem = _probe(level)
        if problem is not None:
            _LEVEL_FAILURES[level] = (time.monotonic(), problem)
            return problem
        _CONFIRMED_LEVELS.add(level)
    _LEVEL_FAILURES.pop(level, None)
    return None


@functools.cache
def _bwrap_problem() -> str | None:
    """Why "bwrap" can never be used in this process, or None."""
    if not sys.platform.startswith("linux"):
        return f"platform is {sys.platform}"
    if shutil.which("bwrap") is None:
        return "no `bwrap` executable (apt-get install bubblewrap)"
    return None


@functools.cache
def _namespace_problem() -> str | None:
    """Why "namespaces" can never be used in this process, or None."""
    if not sys.platform.startswith("linux"):
        return f"platform is {sys.platform}"
    if os.geteuid() != 0:
        return "not running as root"
    if shutil.which("unshare") is None:
        return "no `unshare` executable"
    return None


def _probe(level: str) -> str | None:
    """Run a tiny program at `level` (retrying a failed start): None if it ran confined."""
    code = b"import os\nprint(os.getuid() != 0, os.path.exists('/etc'))"
    for attempt in range(SETUP_ATTEMPTS):
        probe, setup_problem = PythonSandbox(wall_time_s=10.0)._run(code, level)
        if setup_problem is None:
            break
        time.sleep(0.05 * (attempt + 1))
    if probe.ok and probe.output == "True False\n":  # not root, and /etc is out of view
        return None
    return f"probe run failed: {probe.error or probe.output!r}"


def _has_exited(pid: int) -> bool:
    """Whether our child `pid` has exited, leaving it unreaped (its pid stays ours)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _bwrap_argv(view: list[tuple[str, str, str]], as_root: bool) -> list[str]:
    """bubblewrap's command line for `view` (see `PythonSandbox.filesystem_view`)."""
    argv = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--as-pid-1", "--hostname", "sandbox"]  # fmt: skip
    if as_root:  # the worker needs these two to drop to its fresh uid; all others are dropped
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user"]
    for kind, path, source in view:
        if kind == "tmpfs":
            argv += ["--size", str(int(source) << 20), "--perms", "1777", "--tmpfs", path]
        elif kind == "dir":  # bwrap would create missing parents with mode 700
            argv += ["--perms", "0755", "--dir", path]
        elif kind == "ro":
            argv += ["--ro-bind", source, path]
        elif kind == "dev":
            argv += ["--dev-bind", source, path]
        elif kind == "symlink":
            argv += ["--symlink", source, path]
        elif kind == "proc":
            argv += ["--proc", path]
    return [*argv, "--remount-ro", "/", "--chdir", "/"]


class _BoundedBuffer:
    """Keeps the first `head_bytes` and the last `tail_bytes` of a byte stream."""

    def __init__(self, head_bytes: int, tail_bytes: int) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.head_bytes, self.tail_bytes = head_bytes, tail_bytes
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        room = self.head_bytes - len(self.head)
        self.head += data[:room]
        self.tail += data[room:] if room > 0 else data
        excess = len(self.tail) - self.tail_bytes
        if excess > 0:
            self.dropped += excess
            del self.tail[:excess]

    def text(self, max_chars: int, head: int, tail: int) -> tuple[str, bool]:
        """Decoded and truncated like `truncate_output`.

        When bytes were dropped the text had more than max_chars characters (the buffers
        hold 4 bytes per kept character, UTF-8's maximum), so it is cut for sure.
        """
        if not self.dropped:
            return truncate_output(
                bytes(self.head + self.tail).decode("utf-8", "replace"), max_chars, head, tail
            )
        start = self.head.decode("utf-8", "replace")[:head]
        end = self.tail.decode("utf-8", "replace")[-tail:] if tail else ""
        return start + "..." + end, True


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of the (unreaped) leader `proc` and wait for its children.

    In the isolated levels the child (of `unshare`, or of `bwrap --as-pid-1`) is PID 1 of the
    namespace, which finishes exiting only after every process inside has gone, so no
    sandboxed process outlives this call.
    """
    pidfds = []
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            pidfds = [os.pidfd_open(int(pid)) for pid in f.read().split()]
    except OSError:
        pass  # no children file (CONFIG_PROC_CHILDREN) or a child already gone: kill only
    # The leader is not reaped yet, so its process group id cannot have been reused.
    os.killpg(proc.pid, signal.SIGKILL)
    for fd in pidfds:
        select.select([fd], [], [], 2.0)  # a pidfd turns readable when the process has exited
        os.close(fd)


def _drain(fd: int, sink: _BoundedBuffer) -> None:
    """Read what is left in the non-blocking pipe `fd` into `sink`."""
    while True:
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return
        if not data:
            return
        sink.feed(data)


def _signal_name(sig: int) -> str:
    try:
        return f"{signal.Signals(sig).name} ({signal.strsignal(sig)})"
    except ValueError:
        return str(sig)


def _fresh_uid() -> int:
    """A random uid that no one else uses, so RLIMIT_NPROC counts only this run's processes.

    Drawn from the top half of the largest uid range mapped into this user namespace (all of
    0..2**32-2 on a plain host; 65,536 ids in a typical rootless container).
    """
    with open("/proc/self/uid_map") as f:
        ranges = [tuple(map(int, line.split())) for line in f if line.strip()]
    first, _, count = max(ranges, key=lambda r: r[2])
    span = min(count // 2, 1 << 24)
    top = first + min(count, 3_000_000_000) - 3  # below 65534/65535 ("nobody") and (uid_t)-1
    return top - int.from_bytes(os.urandom(4), "little") % span


def _count_tasks_of(uid: int) -> int:
    """Tasks (threads included) owned by `uid`, as RLIMIT_NPROC counts them."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                pass  # exited meanwhile
    return count


@functools.cache
def _site_dirs() -> list[str]:
    import site

    return [p for p in site.getsitepackages() if os.path.isdir(p)]


@functools.cache
def _interpreter_paths() -> tuple[str, ...]:
    """What the interpreter needs to start: its binary, standard library and LIBDIR.

    The base installation's, not a venv's: the sandbox runs the real binary with -S, so it
    never reads pyvenv.cfg; LIBDIR holds libpython (and, for conda, libssl, libffi, ...).
    """
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    wanted = (sys.executable, paths["stdlib"], paths["platstdlib"], sysconfig.get_config_var("LIBDIR"))
    return tuple(os.path.realpath(p) for p in wanted if p and os.path.exists(p))


def _minimal_env(home: str, python: str) -> dict[str, str]:
    """The whole environment of the sandbox: nothing is inherited from the parent."""
    return {
        "PATH": f"{os.path.dirname(python)}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp" if home == WORKDIR_IN_NAMESPACE else home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # One BLAS thread: threads count against RLIMIT_NPROC and reserve address space.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        "MPLBACKEND": "Agg",
    }


@functools.cache
def _supervisor_source() -> str:
    return (
        inspect.getsource(_supervise)
        + "\n_supervise(__import__('json').loads(__import__('sys').argv[1]))\n"
    )


def _supervise(cfg: dict) -> None:
    """The program inside the sandbox: `python -S -u -c <this function's source> <cfg json>`.

    It is shipped as source alone, so it imports only the standard library, locally. It reads
    the code from stdin, then:
    - "rlimits-only": confines itself and runs the code in this very process; the host is its
      parent and judges it from outside (wait status and CPU time from wait4).
    - the isolated levels: it is root inside fresh namespaces. In "namespaces" mode it builds
      the allow-listed filesystem view (bwrap has built it already in "bwrap" mode); it forks
      a worker that confines itself (a fresh uid) and runs the code, and it reports the
      worker's wait status and CPU time as one JSON line on its stderr, a pipe the worker has
      closed and cannot reopen (another uid; this process is not dumpable). Its exit ends the
      PID namespace, which kills everything the code started.
    Either way the confined process says "ready" on a pipe it closes before the code runs, so
    a setup failure is known for sure and cannot be faked by the code.
    """
    import ctypes
    import json
    import os
    import resource
    import sys

    code = sys.stdin.buffer.read().decode("utf-8", "replace")  # the host sent valid UTF-8
    libc = ctypes.CDLL(None, use_errno=True)
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
    MS_RELATIME, MNT_DETACH = 1 << 21, 2
    ST_NOATIME, ST_NODIRATIME, ST_RELATIME = 1024, 2048, 4096  # statvfs f_flag bits
    PR_SET_DUMPABLE, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 4, 8, 38
    PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH = 47, 2, 2
    KEYCTL_JOIN_SESSION_KEYRING = 1
    ENOSYS, EPERM = 38, 1

    def check(result: int, what: str) -> None:
        if result < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    def mount(source, target, fstype, flags, data=None) -> None:
        args = [None if s is None else s.encode() for s in (source, target, fstype, data)]
        check(libc.mount(*args[:3], ctypes.c_ulong(flags), args[3]), f"mount {target}")

    def build_filesystem_view() -> None:
        """Build cfg["view"] on an empty tmpfs, then make it the root and drop the host's."""
        os.umask(0o022)
        # Sources are opened before anything is mounted, so no mount can shadow one.
        sources = {path: os.open(source, os.O_PATH) for kind, path, source in cfg["view"]
                   if kind in ("ro", "dev")}  # fmt: skip
        root = "/tmp"  # any folder does: this mount namespace is private
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        for kind, path, source in cfg["view"]:
            target = root + path
            if kind == "dir":
                os.mkdir(target, 0o755)
            elif kind == "symlink":
                os.symlink(source, target)
            elif kind == "tmpfs":
                os.mkdir(target, 0o755)
                mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={source}m,mode=1777")
            elif kind == "proc":
                os.mkdir(target, 0o555)
                mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            else:  # "ro" or "dev": bind the host's file or folder, then make the bind read-only
                fd = sources[path]
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.mkdir(target, 0o755)
                else:
                    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
                mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
                # Keep the flags a parent namespace may have locked (nodev, noexec, atime).
                held = os.statvfs(f"/proc/self/fd/{fd}").f_flag
                flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
                flags |= 0 if kind == "dev" and not held & MS_NODEV else MS_NODEV
                flags |= held & (MS_NOEXEC | ST_NOATIME | ST_NODIRATIME)
                flags |= MS_RELATIME if held & ST_RELATIME else 0
                mount(None, target, None, flags)
                os.close(fd)
        os.chdir(root)
        if cfg["syscalls"] is None:
            raise OSError(f"no syscall numbers for {os.uname().machine}")
        check(libc.syscall(cfg["syscalls"]["pivot_root"], b".", b"."), "pivot_root")
        check(libc.umount2(b".", MNT_DETACH), "umount the host's root")
        os.chdir("/")
        mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        libc.sethostname(b"sandbox", 7)

    def keep_read_search() -> None:
        """rlimits-only as root: keep CAP_DAC_READ_SEARCH across the uid change (and exec), so
        an interpreter under /root stays reachable; without it in our set, go on without."""
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this task
        bit = 1 << CAP_DAC_READ_SEARCH
        data = (ctypes.c_uint32 * 6)(bit, bit, bit, 0, 0, 0)  # effective, permitted, inheritable
        if cfg["syscalls"] and libc.syscall(cfg["syscalls"]["capset"], header, data) == 0:
            libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0)

    def fresh_session_keyring() -> None:
        """A new, empty session keyring: the caller's keys are out of reach, and nothing
        planted here reaches the next run. Where keyrings are off or filtered, nothing to do."""
        if cfg["syscalls"] is None:
            return
        if libc.syscall(cfg["syscalls"]["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
            if ctypes.get_errno() not in (ENOSYS, EPERM):
                check(-1, "keyctl(KEYCTL_JOIN_SESSION_KEYRING)")

    def deny_shared_memory() -> None:
        """Without a memory cgroup: refuse memfd_create and shmget (EPERM), whose memory no
        rlimit counts, with a seccomp filter (classic BPF, built here: no library needed)."""
        calls = cfg["syscalls"]
        if not calls or "seccomp_arch" not in calls:
            return  # an architecture without known numbers: documented as unbounded

        class SockFilter(ctypes.Structure):
            _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                        ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]  # fmt: skip

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

        LOAD, JEQ, JGE, RET = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ/JGE|K, BPF_RET|K
        ALLOW, DENY = 0x7FFF0000, 0x00050000 | EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
        checks = [(JGE, calls["x32"])] if "x32" in calls else []  # x32 ABI numbers: refused
        checks += [(JEQ, calls["memfd_create"]), (JEQ, calls["shmget"])]
        deny_at = 3 + len(checks) + 1  # index of the final "ret DENY"
        program = [(LOAD, 0, 0, 4), (JEQ, 0, deny_at - 2, calls["seccomp_arch"]), (LOAD, 0, 0, 0)]
        for code_, k in checks:
            program.append((code_, deny_at - len(program) - 1, 0, k))
        program += [(RET, 0, 0, ALLOW), (RET, 0, 0, DENY)]
        filters = (SockFilter * len(program))(*[SockFilter(*ins) for ins in program])
        fprog = SockFprog(len(program), filters)
        check(libc.prctl(22, 2, ctypes.byref(fprog), 0, 0), "prctl(PR_SET_SECCOMP)")

    def confine(keep_fds: tuple[int, ...]) -> None:
        """Limits, then (as root) an unprivileged uid, then a clean slate of fds and environment."""
        limits = {
            resource.RLIMIT_CPU: (cfg["cpu_s"], cfg["cpu_s"] + 1),
            resource.RLIMIT_AS: (cfg["memory_mb"] << 20,) * 2,
            resource.RLIMIT_FSIZE: (cfg["file_size_mb"] << 20,) * 2,
            resource.RLIMIT_NPROC: (cfg["nproc"],) * 2,
            resource.RLIMIT_NOFILE: (256, 256),
            resource.RLIMIT_CORE: (0, 0),
        }
        for which, (soft, hard) in limits.items():
            ceiling = resource.getrlimit(which)[1]  # a limit can only go down
            if ceiling != resource.RLIM_INFINITY:
                soft, hard = min(soft, ceiling), min(hard, ceiling)
            resource.setrlimit(which, (soft, hard))
        try:  # the first to go when the run's memory cgroup is full (raising needs no privilege)
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass
        if cfg["uid"] is not None:
            keep = cfg["isolation"] == "rlimits-only"
            if keep:
                check(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])  # from root to a plain uid: every capability is gone
            if keep:
                keep_read_search()
        fresh_session_keyring()
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        if cfg["deny_shared_memory"]:
            deny_shared_memory()
        if cfg["isolation"] != "rlimits-only":
            os.mkdir(cfg["workdir"], 0o700)  # in the scratch tmpfs, owned by the code's uid
        os.chdir(cfg["workdir"])
        os.environ.clear()
        os.environ.update(cfg["env"])
        sys.path.extend(cfg["site_dirs"])
        sys.argv = [""]
        os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
        os.dup2(1, 2)
        low = 3
        for fd in sorted(keep_fds):  # everything else the host or the supervisor had open
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 16)

    def error_line(e: BaseException) -> str:
        """The last line of the traceback Python would print for `e`."""
        kind = type(e).__qualname__
        if type(e).__module__ not in ("builtins", "__main__"):
            kind = f"{type(e).__module__}.{kind}"
        try:
            message = e.msg if isinstance(e, SyntaxError) else str(e)
        except BaseException:
            message = "<exception str() failed>"
        if isinstance(e, MemoryError):  # numpy's _ArrayMemoryError included
            kind = "MemoryError"
            message = message or f"out of memory (limit {cfg['memory_mb']} MB)"
        return f"{kind}: {message}" if message else kind

    def run_confined(ready_fd: int, error_fd: int) -> None:
        """Confine this process, say ready, run the code; exits with the code's status."""
        try:
            confine((ready_fd, error_fd))
        except BaseException as e:  # never run the code half-confined
            os.write(ready_fd, b"E" + repr(e).encode("utf-8", "backslashreplace")[:4000])
            os._exit(125)
        os.write(ready_fd, b"R")
        os.close(ready_fd)  # from here on the code runs, and it has no way to say "ready"
        import builtins

        def error(e: BaseException) -> int:
            """Send the error line; what the code says about itself: shown, never trusted.
            After a NUL, so that what the code wrote to this pipe before stays apart."""
            e.__traceback__ = None
            line = error_line(e).encode("utf-8", "backslashreplace")[:4000]
            try:
                os.write(error_fd, b"\0" + line)
            except OSError:
                pass
            return 1

        builtins.exit = builtins.quit = sys.exit  # normally added by site.py, skipped by -S
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        status = 0
        try:
            exec(compile(code, "<sandbox>", "exec"), namespace)
        except SystemExit as e:
            if isinstance(e.code, int) or e.code is None:  # the status says it, seen from outside
                status = (e.code or 0) & 0xFF
            else:
                status = error(e)
        except BaseException as e:
            namespace.clear()  # free a memory bomb's data before formatting the error
            status = error(e)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(status)

    if cfg["isolation"] == "rlimits-only":
        run_confined(cfg["ready_fd"], cfg["error_fd"])
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # our fds stay closed to /proc/<pid>/fd of the worker
    try:  # the OOM killer takes the code's processes, not the judge (root only; else no-op)
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000")
    except OSError:
        pass
    report_fd = os.dup(2)
    if cfg["isolation"] == "namespaces":
        build_filesystem_view()
    ready_r, ready_w = os.pipe()
    error_r, error_w = os.pipe()
    worker = os.fork()
    if worker == 0:
        os.close(report_fd)
        os.close(ready_r)
        os.close(error_r)
        run_confined(ready_w, error_w)
    os.close(ready_w)
    os.close(error_w)
    ready = b""
    while chunk := os.read(ready_r, 4096):  # EOF once the worker is confined (or gone)
        ready += chunk
    # First, on its own line: whether the code got to run at all (safe to retry if not).
    os.write(report_fd, (json.dumps({"ready": ready.decode("utf-8", "replace")}) + "\n").encode())
    _, wait_status, usage = os.wait4(worker, 0)
    os.set_blocking(error_r, False)
    error = b""
    try:
        while chunk := os.read(error_r, 65536):
            error = (error + chunk)[-8192:]  # the worker's own line comes last
    except OSError:
        pass
    message = {
        "wait": wait_status,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "error": error.decode("utf-8", "replace"),
    }
    os.write(report_fd, (json.dumps(message) + "\n").encode())
    os._exit(0)

