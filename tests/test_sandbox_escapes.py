"""Issue 24's hostile programs against the sandbox, one property per test, at every level.

Each test runs under "bwrap", the hand-built "namespaces" level and "rlimits-only" where that
level works here, and is skipped with the reason where it does not. New names of the sandbox
module are reached through `sandbox_module`, so that this file also runs against the code
before the fix (where its tests fail).
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from paretopo.tools import sandbox as sandbox_module
from paretopo.tools.sandbox import (
    ISOLATED_LEVELS,
    PythonSandbox,
    SandboxResult,
    _level_problem,
    make_python_tool,
)


def _level_param(level: str):
    problem = None if level == "rlimits-only" else _level_problem(level)
    return pytest.param(level, marks=pytest.mark.skipif(problem is not None, reason=f"{level}: {problem}"))


LEVELS = [_level_param(level) for level in (*ISOLATED_LEVELS, "rlimits-only")]
ISOLATED_HERE = [level for level in ISOLATED_LEVELS if _level_problem(level) is None]


@pytest.fixture(params=LEVELS)
def level(request) -> str:
    return request.param


def cgroup_problem() -> str | None:
    try:
        from paretopo.tools.sandbox_cgroup import memory_cgroup_problem
    except ImportError:
        return "the sandbox has no memory cgroup support"
    return memory_cgroup_problem()


needs_cgroup = pytest.mark.skipif(
    cgroup_problem() is not None, reason=f"no memory cgroup here: {cgroup_problem()}"
)


@pytest.fixture
def fresh_levels():
    """Forget which levels were probed, before and after the test."""
    sandbox_module._reset_level_state()
    yield
    sandbox_module._reset_level_state()


# Memory outside RLIMIT_AS: memfd_create files and SysV shared memory

HOLD_MEMFD = """
import os
fds, held = [], 0
for i in range(96):  # 768 MB in 8 MB memfd files, written, never mapped
    fd = os.memfd_create(f"m{i}")
    os.write(fd, b"x" * (8 << 20))
    fds.append(fd)
    held += 8
print("held", held, "MB")
"""

HOLD_SYSV = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
held = 0
for i in range(12):  # 768 MB in 64 MB segments, each detached (out of RLIMIT_AS) once filled
    shmid = libc.shmget(0, 64 << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
    assert shmid >= 0, ctypes.get_errno()
    print("shmid", shmid, flush=True)
    address = libc.shmat(shmid, None, 0)
    ctypes.memset(address, 1, 64 << 20)
    libc.shmdt(ctypes.c_void_p(address))
    held += 64
print("held", held, "MB")
"""


def remove_segments(output: str) -> None:
    """Remove the SysV segments a run reported (rlimits-only before the fix leaves them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for word, shmid in zip(output.split(), output.split()[1:], strict=False):
        if word == "shmid":
            libc.shmctl(int(shmid), 0, None)  # IPC_RMID


@needs_cgroup
def test_memfd_files_count_against_the_run_memory_limit(level):
    result = PythonSandbox(mode=level, run_memory_mb=256, wall_time_s=20).run(HOLD_MEMFD)
    assert "held" not in result.output, result
    assert result.error == "MemoryError: out of memory (all processes: 256 MB)", result


@needs_cgroup
def test_memory_cgroup_counts_every_process_of_the_run(level):
    # Three processes holding 200 MB of memfd each at once: 600 MB in all, under 256 MB.
    code = (
        "import subprocess, sys\n"
        f"code = {HOLD_MEMFD.replace('range(96)', 'range(25)') + 'import time; time.sleep(1)'!r}\n"
        "children = [subprocess.Popen([sys.executable, '-c', code]) for _ in range(3)]\n"
        "codes = [child.wait() for child in children]\n"
        "print('children', codes)\n"
        "assert codes == [0, 0, 0]\n"
    )
    result = PythonSandbox(mode=level, run_memory_mb=256, wall_time_s=20).run(code)
    assert not result.ok and "children [0, 0, 0]" not in result.output, result


@needs_cgroup
def test_sysv_shared_memory_counts_against_the_run_memory_limit(level):
    box = PythonSandbox(mode=level, run_memory_mb=256, wall_time_s=20, max_output_chars=4096)
    result = box.run(HOLD_SYSV)
    remove_segments(result.output)
    assert "held" not in result.output, result
    assert result.error == "MemoryError: out of memory (all processes: 256 MB)", result


def test_without_a_cgroup_memfd_and_sysv_shm_are_refused(level, monkeypatch):
    """The bound claimed without a cgroup: no memfd_create, no SysV shared memory."""
    if not hasattr(sandbox_module, "MemoryCgroup"):
        pytest.fail("no fallback: memfd and SysV shared memory are unbounded")
    monkeypatch.setattr(sandbox_module.MemoryCgroup, "create", classmethod(lambda cls, limit_mb: None))
    box = PythonSandbox(mode=level, wall_time_s=20, max_output_chars=4096)
    assert box.run(HOLD_MEMFD).error.startswith("PermissionError: [Errno 1]"), "memfd_create"
    result = box.run(HOLD_SYSV)
    remove_segments(result.output)
    assert result.error == "AssertionError: 1", "shmget: EPERM"


# Kernel keyrings

KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)
ADD_KEY = {"x86_64": 248, "aarch64": 217}.get(os.uname().machine)
KEY_SPEC_SESSION_KEYRING, KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_READ, KEYCTL_SEARCH = -3, 1, 11, 10

KEY_TOOLS = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def read_key(key_id):
    buf = ctypes.create_string_buffer(256)
    n = libc.syscall({KEYCTL}, {KEYCTL_READ}, key_id, buf, 256)
    return buf.raw[:n] if n >= 0 else 'errno %d' % ctypes.get_errno()
def search(description):
    return libc.syscall({KEYCTL}, {KEYCTL_SEARCH}, {KEY_SPEC_SESSION_KEYRING}, b'user', description, 0)
def add(description, payload):
    return libc.syscall({ADD_KEY}, b'user', description, payload, len(payload), {KEY_SPEC_SESSION_KEYRING})
"""


@pytest.fixture(scope="module")
def host_key():
    """A key in this test process's own (new) session keyring: (id, description)."""
    if KEYCTL is None:
        pytest.skip(f"keyctl numbers unknown on {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, b"paretopo-test-session") < 0:
        pytest.skip(f"no kernel keyrings here (errno {ctypes.get_errno()})")
    description = f"paretopo-secret-{uuid.uuid4().hex}".encode()
    key_id = libc.syscall(ADD_KEY, b"user", description, b"hf_SECRET", 9, KEY_SPEC_SESSION_KEYRING)
    assert key_id > 0, ctypes.get_errno()
    return key_id, description


def test_callers_session_key_is_unreadable(level, host_key):
    key_id, description = host_key
    code = KEY_TOOLS + f"print(read_key({key_id}), search({description!r}))"
    result = PythonSandbox(mode=level).run(code)
    assert result.ok and "hf_SECRET" not in result.output, result
    assert result.output.split()[-1] == "-1", result  # not found in its session keyring


def test_a_planted_key_does_not_reach_the_next_run_or_the_caller(level, host_key):
    description = f"paretopo-planted-{uuid.uuid4().hex}".encode()
    box = PythonSandbox(mode=level)
    planted = box.run(KEY_TOOLS + f"print(add({description!r}, b'planted') > 0)")
    assert planted.output == "True\n", planted
    assert box.run(KEY_TOOLS + f"print(search({description!r}))").output == "-1\n"
    libc = ctypes.CDLL(None, use_errno=True)
    found = libc.syscall(KEYCTL, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, b"user", description, 0)
    assert found == -1


# The status channel: nothing the code writes can change the verdict

def forge(payload: str, then: str) -> str:
    """Code that writes `payload` (plus an unterminated line) into every pipe it can reach: its
    own fds, its parent's (the supervisor, or the host at rlimits-only) and the supervisor's as
    pid 1 of the sandbox (never the host's init), then runs `then`."""
    return f"""
import os
payload = {payload!r}.encode() + b'x' * 70000  # no newline: a real report that follows is spoilt
targets = [(None, fd) for fd in range(3, 256)]
try:
    init_is_supervisor = b'_supervise' in open('/proc/1/cmdline', 'rb').read()
except OSError:
    init_is_supervisor = False
for pid in {{os.getppid()}} | ({{1}} if init_is_supervisor else set()):
    try:
        targets += [(pid, int(fd)) for fd in os.listdir(f'/proc/{{pid}}/fd')]
    except OSError:
        pass
for pid, fd in targets:
    try:
        if pid is None:
            os.set_blocking(fd, False)
            os.write(fd, payload)
        elif os.readlink(f'/proc/{{pid}}/fd/{{fd}}').startswith('pipe:'):
            out = os.open(f'/proc/{{pid}}/fd/{{fd}}', os.O_WRONLY | os.O_NONBLOCK)
            os.write(out, payload)
            os.close(out)
    except OSError:
        pass
{then}
"""


SIGXCPU_STATUS = int(signal.SIGXCPU)  # a wait status: killed by SIGXCPU


def test_forged_success_after_exit_7_is_ignored(level):
    payload = '{"wait": 0, "ready": "R", "cpu_s": 0}\n'
    result = PythonSandbox(mode=level).run(forge(payload, "import sys; sys.exit(7)"))
    assert (result.ok, result.error) == (False, "SystemExit: 7"), result


def test_forged_cpu_timeout_is_ignored(level):
    payload = f'{{"wait": {SIGXCPU_STATUS}, "ready": "R", "cpu_s": 99}}\n'
    result = PythonSandbox(mode=level).run(forge(payload, "print('done')"))
    assert (result.ok, result.timed_out, result.error) == (True, False, None), result


def test_forged_setup_failure_is_ignored(level):
    payload = '{"setup_error": "forged", "ready": "Eforged"}\n'
    result = PythonSandbox(mode=level).run(forge(payload, "print('done')"))
    assert (result.ok, result.error) == (True, None), result
    assert result.output.endswith("done\n")


# CPU limit with SIGXCPU ignored

def test_cpu_limit_with_sigxcpu_ignored_is_a_cpu_timeout(level):
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass"
    result = PythonSandbox(mode=level, cpu_time_s=1, wall_time_s=20).run(code)
    assert result.timed_out and result.error == "TimeoutError: CPU time limit of 1 s exceeded", result


# Any string the model writes

def test_lone_surrogate_in_the_code_is_handled(level):
    result = PythonSandbox(mode=level).run("x = '\ud800'\nprint(len(x), hex(ord(x)))")
    assert (result.ok, result.output) == (True, "1 0xd800\n"), result


def test_surrogates_in_the_error_come_back_encodable(level):
    result = PythonSandbox(mode=level).run("raise ValueError('\udcff\ud800')")
    assert not result.ok and result.error.startswith("ValueError: ")
    result.error.encode("utf-8")  # a clean str: no lone surrogate reaches the host's logs


def test_code_that_is_not_a_string_gives_an_error_result():
    result = PythonSandbox().run(None)  # a model's tool call can carry any JSON value
    assert (result.ok, result.error) == (False, "TypeError: code must be a str, not NoneType")


# The trainer's processes, seen from the code (rlimits-only has no PID namespace)

@pytest.fixture
def trainer_like():
    """A root process with a secret in its environment, like a trainer with HF_TOKEN."""
    secret = f"hf_{uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "HF_TOKEN": secret}
    )
    yield proc.pid, secret
    proc.kill()
    proc.wait()


def test_code_cannot_read_the_trainers_environment(level, trainer_like):
    pid, secret = trainer_like
    code = (
        "import os\n"
        f"for pid in ({pid}, os.getppid()):\n"
        "    try:\n        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError as e:\n        print(type(e).__name__)\n"
    )
    result = PythonSandbox(mode=level).run(code)
    assert secret not in result.output and "HF_TOKEN" not in result.output, result
    assert result.ok and result.output.split() and all(
        word.endswith("Error") for word in result.output.split()
    ), result


def test_code_cannot_signal_the_trainer(level, trainer_like):
    pid, _ = trainer_like
    # Signal 0 checks the permission to signal without sending anything (harmless if allowed).
    code = (
        "import os\n"
        f"for pid in ({pid}, os.getppid()):\n"
        "    try:\n        os.kill(pid, 0); print('may signal', pid)\n"
        "    except OSError as e:\n        print(type(e).__name__)\n"
    )
    result = PythonSandbox(mode=level).run(code)
    assert result.ok and "may signal" not in result.output, result


def test_code_cannot_ptrace_the_trainer(level, trainer_like):
    pid, _ = trainer_like
    code = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"for pid in ({pid}, os.getppid()):\n"
        "    if libc.ptrace(16, pid, None, None) == 0:\n"  # PTRACE_ATTACH
        "        print('attached', pid); libc.ptrace(17, pid, None, None)\n"  # PTRACE_DETACH
        "    else:\n        print('errno', ctypes.get_errno())\n"
    )
    result = PythonSandbox(mode=level).run(code)
    assert result.ok and "attached" not in result.output, result


def test_escaped_session_dies_with_the_run(level):
    marker = f"paretopo-escape-{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}],"
        " start_new_session=True)\n"
        "time.sleep(0.3)\nprint('escaped')\n"
    )
    assert PythonSandbox(mode=level).run(code).output == "escaped\n"
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    for pid in left:
        os.kill(int(pid), signal.SIGKILL)
    assert left == []


def test_fork_bomb_is_capped_at_every_level(level):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    if os.geteuid() == 0 and level == "rlimits-only" and not hasattr(sandbox_module, "kill_processes"):
        pytest.fail("as root, rlimits-only runs the code as root: RLIMIT_NPROC does not hold")
    result = PythonSandbox(mode=level, wall_time_s=2.0, max_processes=4).run(bomb)
    assert result.timed_out and subprocess.run(["true"]).returncode == 0


# Level chosen per run

def test_a_failed_start_is_retried_at_the_same_level(fresh_levels, monkeypatch):
    if not ISOLATED_HERE:
        pytest.skip("needs an isolated level")
    top = ISOLATED_HERE[0]
    real_run = PythonSandbox._run
    failures = []

    def flaky(self, source, isolation):  # the first start fails as clone() does under pid pressure
        if isolation == top and not failures:
            failures.append(isolation)
            why = "simulated: clone: Resource temporarily unavailable"
            return SandboxResult("", False, f"RuntimeError: {why}", False, 0.0, False, top), why
        return real_run(self, source, isolation)

    monkeypatch.setattr(PythonSandbox, "_run", flaky)
    assert PythonSandbox(wall_time_s=10).run("print('hi')").isolation == top
    assert failures == [top]


def test_a_failed_probe_does_not_pin_the_process(fresh_levels, monkeypatch):
    if not ISOLATED_HERE:
        pytest.skip("needs an isolated level")
    real_probe = sandbox_module._probe
    monkeypatch.setattr(sandbox_module, "_probe", lambda level: "simulated: EAGAIN")
    with pytest.warns(RuntimeWarning, match="falling back to 'rlimits-only'"):
        assert PythonSandbox().run("pass").isolation == "rlimits-only"
    monkeypatch.setattr(sandbox_module, "_probe", real_probe)
    monkeypatch.setattr(sandbox_module, "LEVEL_RETRY_AFTER_S", 0.0)
    assert PythonSandbox().run("pass").isolation == ISOLATED_HERE[0]


@pytest.fixture
def nothing_isolated(fresh_levels, monkeypatch):
    monkeypatch.setattr(sandbox_module, "_bwrap_problem", lambda: "simulated: no bwrap")
    monkeypatch.setattr(sandbox_module, "_namespace_problem", lambda: "simulated: no unshare")


def test_required_isolation_refuses_to_run_below_it(nothing_isolated, tmp_path):
    marker = tmp_path / "ran"
    box = PythonSandbox(require_isolation="namespaces")
    result = box.run(f"open({str(marker)!r}, 'w')")
    assert not marker.exists()
    assert (result.ok, result.isolation) == (False, "")
    assert result.error.startswith("RuntimeError: sandbox refused to run the code: "
                                   "require_isolation='namespaces': no allowed level works here")
    with pytest.raises(RuntimeError, match="refused"):
        make_python_tool(box)


def test_required_isolation_is_checked_against_a_fixed_mode():
    with pytest.raises(ValueError, match="below require_isolation"):
        PythonSandbox(mode="rlimits-only", require_isolation="namespaces")


def test_every_tool_call_records_its_level(level):
    tool = make_python_tool(PythonSandbox(mode=level))
    tool("print(1)")
    tool("1/0")
    assert tool.runs_by_isolation == {level: 2}
    assert sandbox_module.tool_isolation({"python": tool}) == {"python": {level: 2}}


def test_require_isolation_setting_reaches_every_new_sandbox(monkeypatch):
    monkeypatch.setenv("PARETOPO_REQUIRE_ISOLATION", "")  # as it was, after the test
    sandbox_module.require_isolation_for_process("bwrap")
    assert PythonSandbox().require_isolation == "bwrap"
    with pytest.raises(ValueError, match="require_isolation='docker'"):
        sandbox_module.require_isolation_for_process("docker")


def test_eval_records_the_level_of_each_tool_call(level, monkeypatch):
    from scripted import ScriptedPolicy

    from paretopo.agent.models import build_tiny_tokenizer
    from paretopo.evaluation.evaluate import evaluate_policy
    from paretopo.tasks import get_task
    from paretopo.tasks.base import Example

    task = get_task("arithmetic")
    monkeypatch.setattr(task, "tools", lambda: [make_python_tool(PythonSandbox(mode=level))])
    call = '<tool_call>\n{"name": "python", "arguments": {"code": "print(393*56)"}}\n</tool_call>'
    tokenizer = build_tiny_tokenizer()
    policy = ScriptedPolicy(tokenizer, {"393*56": [call, "\\boxed{22008}"]})
    result = evaluate_policy(policy, tokenizer, task, [Example("q", "What is 393*56?", "22008", {})],
                             max_new_tokens=200, tools_in_prompt=False, progress=False)
    assert result.mean_tool_calls == 1.0
    assert result.tool_isolation == {"python": {level: 1}}


def test_memory_cgroup_folders_are_found_for_v1_and_v2():
    from paretopo.tools.sandbox_cgroup import memory_cgroup_folders as folders

    v1 = "4:memory:/process_api/job\n3:cpuset:/\n0::/\n"
    v1_mounts = (
        "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /sys/fs/cgroup/cpuset rw,relatime shared:10 - cgroup cgroup rw,cpuset\n"
    )
    assert folders(v1, v1_mounts) == [("/sys/fs/cgroup/memory/process_api/job", 1)]
    v2 = "0::/user.slice/user-1000.slice/session-2.scope\n"
    v2_mounts = "35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    assert folders(v2, v2_mounts) == [("/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope", 2)]
    # a container that sees only its own subtree, mounted at /sys/fs/cgroup
    inside = "0::/docker/abc\n"
    inside_mounts = "40 30 0:31 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
    assert folders(inside, inside_mounts) == [("/sys/fs/cgroup", 2)]
    assert folders("5:cpu:/\n", v1_mounts) == []  # no memory controller: nothing


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does rlimits-only run the code as a fresh uid")
def test_rlimits_only_leaves_no_shared_memory_on_the_host():
    name = f"paretopo-shm-{uuid.uuid4().hex}"
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None)\n"
        "print(libc.shmget(0, 1 << 20, 0o1600))\n"  # a SysV segment, never removed
        f"open('/dev/shm/{name}', 'wb').write(b'x' * 1000)\n"
    )
    result = PythonSandbox(mode="rlimits-only").run(code)
    shmid = int(result.output)
    with open("/proc/sysvipc/shm") as f:
        assert shmid not in [int(line.split()[1]) for line in list(f)[1:]]
    assert not os.path.exists(f"/dev/shm/{name}")


def test_a_child_reaped_by_someone_else_is_a_failed_run_not_a_crash(monkeypatch):
    real_wait4 = os.wait4

    def reaped_elsewhere(pid, options):  # e.g. another thread's os.waitpid(-1, ...)
        real_wait4(pid, options)
        raise ChildProcessError(10, "No child processes")

    monkeypatch.setattr(os, "wait4", reaped_elsewhere)
    result = PythonSandbox(mode="rlimits-only").run("print('hi')")
    assert (result.ok, result.error) == (False, "RuntimeError: sandbox failed: no exit status")
