"""Run model-written Python code in a separate, locked-down process.

`PythonSandbox(...).run(code)` starts a fresh interpreter, runs `code` in it and returns a
`SandboxResult`; `make_python_tool()` wraps that as the typed `python(code) -> str` tool that
TRL turns into a JSON schema. Results come back ToRL-style: stdout and stderr together, cut to
head + "..." + tail, and on an exception only the last line of the traceback. Each result
says which isolation level it ran under (`SandboxResult.isolation`, also `python.isolation`
on the tool), and `paretopo train` records it in the run's config.json.

Isolation levels, the strongest that works detected once per process (`detect_isolation`):

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
    environment and a temporary working directory, running as the calling user. When
    mode="auto" falls back to it, a warning says so (once per process).

All levels: a wall-time limit (the whole process group is SIGKILLed), RLIMIT_CPU, RLIMIT_AS,
RLIMIT_FSIZE, RLIMIT_NOFILE and no core dumps; stdin is /dev/null; the environment is built
from scratch (PATH, HOME, LANG, PYTHONHASHSEED, single-threaded BLAS), so the parent's
secrets are not passed on; output is read into a bounded buffer, so a print loop cannot
fill the host's memory.

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
    - memory in total: the bound is max_processes x memory_mb plus scratch_mb, enforced
      per process (no cgroup is used); CPU contention is bounded only by the time limits;
    - forged error lines: the last traceback line is written from inside the sandbox, so
      code can fake its own error message (timeouts, limits and the exit status are judged
      from outside);
    - anything in "rlimits-only" mode beyond the limits above: the code runs as the calling
      user with the network on and that user's files readable and writable; as root,
      RLIMIT_NPROC is not enforced, so a fork bomb is stopped only by the wall time, and
      processes that leave the session (setsid) survive the kill.
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
from collections.abc import Callable

ISOLATION_LEVELS = ("bwrap", "namespaces", "rlimits-only")
ISOLATED_LEVELS = ("bwrap", "namespaces")  # the allow-listed filesystem view
WORKDIR_IN_NAMESPACE = "/tmp/sandbox"
SYSTEM_READONLY_PATHS = ("/usr/lib", "/usr/lib64", "/usr/bin")  # loader, shared libraries, sh
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom")
# pivot_root has no libc wrapper; the syscall number differs per architecture.
_PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}


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
    """Isolation to use: "auto" (the strongest available, warns on a fallback to
    "rlimits-only"), "bwrap", "namespaces" or "rlimits-only"."""

    def __post_init__(self) -> None:
        if self.mode not in ("auto", *ISOLATION_LEVELS):
            raise ValueError(
                f"mode={self.mode!r}: use 'auto', 'bwrap', 'namespaces' or 'rlimits-only'"
            )
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
        """The level `run` uses: "bwrap", "namespaces" or "rlimits-only" (probed once, cached)."""
        if self.mode == "auto":
            return detect_isolation()
        problem = _level_problem(self.mode)
        if problem is not None:
            raise RuntimeError(f"mode={self.mode!r} is unavailable here: {problem}")
        return self.mode

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
        """Run `code` as a script in the sandbox and report what happened."""
        return self._run(code, self.isolation)

    def _run(self, code: str, isolation: str) -> SandboxResult:
        start = time.perf_counter()
        host_workdir = None
        as_root = os.geteuid() == 0
        isolated = isolation in ISOLATED_LEVELS
        view = self.filesystem_view() if isolated else []
        if isolated:
            workdir = WORKDIR_IN_NAMESPACE
            # The interpreter's real path: the view holds the binary, not a venv's symlink to it.
            python = os.path.realpath(sys.executable)
        else:
            host_workdir = tempfile.mkdtemp(prefix="paretopo-sandbox-")
            workdir = host_workdir
            python = sys.executable
        if isolation == "bwrap":
            argv = _bwrap_argv(view, as_root)
        elif isolation == "namespaces":
            argv = ["unshare", "--mount", "--pid", "--net", "--ipc", "--uts", "--fork",
                    "--kill-child", "--mount-proc"]  # fmt: skip
        else:
            argv = []
        cfg = {
            "isolation": isolation,
            # In the isolated levels, root drops to a fresh uid so RLIMIT_NPROC holds.
            "uid": _fresh_uid() if isolated and as_root else None,
            "workdir": workdir,
            "cpu_s": self.cpu_time_s,
            "memory_mb": self.memory_mb,
            "file_size_mb": self.file_size_mb,
            "nproc": self._nproc_limit(isolation),
            "site_dirs": [os.path.realpath(p) for p in _site_dirs()] if self.site_packages else [],
            "view": view if isolation == "namespaces" else [],  # bwrap builds it itself
            "pivot_root": _PIVOT_ROOT_SYSCALL.get(platform.machine()),
            "env": _minimal_env(workdir, python),
        }
        # -S skips site.py and its .pth hooks (the editable-install hook alone costs ~10 ms);
        # the supervisor puts site-packages on sys.path itself. -u: partial output survives a kill.
        argv += [python, "-S", "-u", "-c", _supervisor_source(), json.dumps(cfg)]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=host_workdir or "/",
                env=cfg["env"],
                start_new_session=True,
            )
            output, status, timed_out = self._pump(
                proc, code.encode("utf-8", "surrogateescape"), start
            )
        finally:
            if host_workdir is not None:
                shutil.rmtree(host_workdir, ignore_errors=True)
        text, truncated = output.text(self.max_output_chars, self.head_chars, self.tail_chars)
        error, limit_hit = self._error_line(status, timed_out)
        return SandboxResult(
            output=text,
            ok=error is None,
            error=error,
            timed_out=timed_out or limit_hit,
            duration_s=time.perf_counter() - start,
            truncated=truncated,
            isolation=isolation,
        )

    def _nproc_limit(self, isolation: str) -> int:
        if os.geteuid() == 0:
            return self.max_processes  # isolated: a fresh uid; else not enforced for root anyway
        # RLIMIT_NPROC counts every task of the real uid, so leave room for the ones running.
        return self.max_processes + _count_tasks_of(os.getuid())

    def _pump(
        self, proc: subprocess.Popen, code: bytes, start: float
    ) -> tuple[_BoundedBuffer, _BoundedBuffer, bool]:
        """Feed the code to stdin and read stdout/stderr until exit or the wall-time limit."""
        output = _BoundedBuffer(
            4 * max(self.max_output_chars, self.head_chars) + 4, 4 * self.tail_chars + 4
        )
        status = _BoundedBuffer(1 << 16, 1 << 12)  # supervisor's JSON lines, tail kept
        sinks = {proc.stdout: output, proc.stderr: status}
        selector = selectors.DefaultSelector()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
        selector.register(proc.stdin, selectors.EVENT_WRITE)
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        deadline = start + self.wall_time_s
        written = 0
        timed_out = False
        try:
            while selector.get_map():
                remaining = deadline - time.perf_counter()
                if remaining <= 0 and proc.poll() is None:
                    timed_out = True
                    break
                for key, _ in selector.select(min(max(remaining, 0), 0.05)):
                    if key.fileobj is proc.stdin:
                        try:
                            written += os.write(
                                proc.stdin.fileno(), code[written : written + 65536]
                            )
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            written = len(code)
                        if written >= len(code):
                            selector.unregister(proc.stdin)
                            proc.stdin.close()
                        continue
                    try:
                        data = os.read(key.fileobj.fileno(), 65536)
                    except BlockingIOError:
                        continue
                    if data:
                        sinks[key.fileobj].feed(data)
                    else:
                        selector.unregister(key.fileobj)
                # Left-over holders of the pipes must not stall us once the supervisor is done.
                if proc.poll() is not None:
                    for stream, sink in ((proc.stdout, output), (proc.stderr, status)):
                        if stream in selector.get_map():
                            _drain(stream.fileno(), sink)
                    break
            if timed_out:
                _kill_session(proc)
        finally:
            selector.close()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if not stream.closed:
                    stream.close()
            proc.wait()
        return output, status, timed_out

    def _error_line(self, status: _BoundedBuffer, timed_out: bool) -> tuple[str | None, bool]:
        """(error line or None, whether a time limit was hit) from the supervisor's report."""
        if timed_out:
            return f"TimeoutError: execution exceeded {self.wall_time_s} s", True
        error, wait_status, other = None, None, []
        for line in status.text(1 << 20, 0, 1 << 20)[0].splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                other.append(line)
                continue
            if isinstance(message, dict) and "error" in message:
                error = str(message["error"])
            elif isinstance(message, dict) and "setup_error" in message:
                return f"RuntimeError: sandbox setup failed: {message['setup_error']}", False
            elif isinstance(message, dict) and isinstance(message.get("wait"), int):
                wait_status = message["wait"]
        if wait_status is None:  # the supervisor itself failed, e.g. unshare was refused
            detail = other[-1] if other else "no status reported"
            return f"RuntimeError: sandbox failed to run the code: {detail}", False
        if os.WIFSIGNALED(wait_status):
            sig = os.WTERMSIG(wait_status)
            if sig == signal.SIGXCPU:
                return f"TimeoutError: CPU time limit of {self.cpu_time_s} s exceeded", True
            return f"RuntimeError: killed by signal {_signal_name(sig)}", False
        code = os.WEXITSTATUS(wait_status)
        if code == 0:  # judged from outside: an error line alone cannot fail a run
            return None, False
        if error is None:
            return f"SystemExit: {code}", False
        error, _ = truncate_output(error, self.max_output_chars, self.head_chars, self.tail_chars)
        return error, False


def make_python_tool(sandbox: PythonSandbox | None = None) -> Callable[[str], str]:
    """Build the `python` tool for an agent, running in `sandbox` (default limits if None).

    The returned function is typed and documented so that TRL's `tools=` (through
    transformers' `get_json_schema`) can describe it to the model. Its `isolation` attribute
    is the level its runs get, for run logs.

    Example:
        >>> make_python_tool()("print(6 * 7)")
        '42\\n'
    """
    box = sandbox if sandbox is not None else PythonSandbox()

    def python(code: str) -> str:
        """Run Python code in a sandbox and return what it printed.

        Args:
            code: Python source code to execute. Use print() to show results.
        """
        return box.run(code).as_tool_text()

    python.isolation = box.isolation  # type: ignore[attr-defined]
    return python


@functools.cache
def detect_isolation() -> str:
    """The strongest isolation level that works here, probed once per process.

    "bwrap" and "namespaces" give the same view; warns (once) when it has to fall back to
    "rlimits-only".
    """
    problems = {}
    for level in ISOLATED_LEVELS:
        problems[level] = _level_problem(level)
        if problems[level] is None:
            return level
    if os.geteuid() == 0:
        who = "root, WITHOUT a process-count limit (RLIMIT_NPROC is not enforced for root),"
    else:
        who = f"uid {os.geteuid()}"
    warnings.warn(
        f"PythonSandbox: no isolated level works here (bwrap: {problems['bwrap']}; "
        f"namespaces: {problems['namespaces']}); falling back to 'rlimits-only' isolation: "
        f"model code runs as {who} with resource limits, a minimal environment and a temporary "
        "directory, but WITH network access and the host's files in view. Install bubblewrap "
        "(apt-get install bubblewrap) for the allow-listed view; see the threat model in "
        "paretopo.tools.sandbox.",
        RuntimeWarning,
        stacklevel=2,
    )
    return "rlimits-only"


def _level_problem(level: str) -> str | None:
    """Why `level` cannot be used here, or None when it works."""
    if level == "bwrap":
        return _bwrap_problem()
    if level == "namespaces":
        return _namespace_problem()
    return None


@functools.cache
def _bwrap_problem() -> str | None:
    """Why "bwrap" cannot be used here, or None when a probe run succeeded."""
    if not sys.platform.startswith("linux"):
        return f"platform is {sys.platform}"
    if shutil.which("bwrap") is None:
        return "no `bwrap` executable (apt-get install bubblewrap)"
    return _probe("bwrap")


@functools.cache
def _namespace_problem() -> str | None:
    """Why "namespaces" cannot be used here, or None when a probe run succeeded."""
    if not sys.platform.startswith("linux"):
        return f"platform is {sys.platform}"
    if os.geteuid() != 0:
        return "not running as root"
    if shutil.which("unshare") is None:
        return "no `unshare` executable"
    return _probe("namespaces")


def _probe(level: str) -> str | None:
    """Run a tiny program at `level`: None if it ran confined, else what went wrong."""
    probe = PythonSandbox(wall_time_s=10.0)._run(
        "import os\nprint(os.getuid() != 0, os.path.exists('/etc'))", level
    )
    if probe.ok and probe.output == "True False\n":  # not root, and /etc is out of view
        return None
    return f"probe run failed: {probe.error or probe.output!r}"


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
    the code from stdin; in "namespaces" mode (as root inside the fresh namespaces) it builds
    the allow-listed filesystem view (bwrap has built it already in "bwrap" mode); then it
    forks a worker that confines itself and runs the code, and reports the worker's wait
    status as a JSON line on stderr. In the isolated levels its exit ends the PID namespace,
    which kills everything the code started.
    """
    import ctypes
    import json
    import os
    import resource
    import sys

    code = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    report_fd = os.dup(2)  # JSON lines to the host; the worker's own fd 2 joins its stdout
    libc = ctypes.CDLL(None, use_errno=True)
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
    MS_RELATIME, MNT_DETACH = 1 << 21, 2
    ST_NOATIME, ST_NODIRATIME, ST_RELATIME = 1024, 2048, 4096  # statvfs f_flag bits
    PR_SET_NO_NEW_PRIVS = 38

    def report(**message) -> None:
        os.write(report_fd, (json.dumps(message) + "\n").encode())

    def check(result: int, what: str) -> None:
        if result != 0:
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
        if cfg["pivot_root"] is None:
            raise OSError(f"no pivot_root syscall number for {os.uname().machine}")
        check(libc.syscall(cfg["pivot_root"], b".", b"."), "pivot_root")  # new root over old
        check(libc.umount2(b".", MNT_DETACH), "umount the host's root")
        os.chdir("/")
        mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        libc.sethostname(b"sandbox", 7)

    def confine() -> None:
        """In the worker: limits, then (as root) the unprivileged uid, then a clean slate."""
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
        if cfg["uid"] is not None:
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])  # from root to a plain uid: every capability is gone
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        if cfg["isolation"] != "rlimits-only":
            os.mkdir(cfg["workdir"], 0o700)  # in the scratch tmpfs, owned by the code's uid
        os.chdir(cfg["workdir"])
        os.environ.clear()
        os.environ.update(cfg["env"])
        sys.path.extend(cfg["site_dirs"])
        sys.argv = [""]
        os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
        os.dup2(1, 2)
        os.closerange(3, report_fd)
        os.closerange(report_fd + 1, 1 << 16)

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

    def run_code() -> int:
        """Run the code as __main__; the exit status the worker should have."""
        import builtins

        builtins.exit = builtins.quit = sys.exit  # normally added by site.py, skipped by -S
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        try:
            exec(compile(code, "<sandbox>", "exec"), namespace)
            return 0
        except BaseException as e:
            if isinstance(e, SystemExit) and e.code in (None, 0):
                return 0
            namespace.clear()  # free a memory bomb's data before formatting the error
            e.__traceback__ = None
            report(error=error_line(e))
            return 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:
                    pass

    if cfg["isolation"] == "namespaces":
        build_filesystem_view()
    worker = os.fork()
    if worker == 0:
        try:
            confine()
        except BaseException as e:  # never run the code half-confined
            report(setup_error=repr(e))
            os._exit(125)
        os._exit(run_code())
    _, wait_status = os.waitpid(worker, 0)
    report(wait=wait_status)
    if cfg["isolation"] == "rlimits-only":
        os.killpg(0, 9)  # take the worker's left-overs (and ourselves) down with us
    os._exit(0)
