"""Issue 24's hostile programs against the python sandbox: what each achieved, per level.

Run against any checkout of the package (the fixed one, or an older one, to compare):
    PYTHONPATH=<checkout> .venv/bin/python benchmarks/sandbox_escapes.py
Prints a markdown table: one row per hostile program, one column per isolation level, each
cell what the run returned (ok, error line, output), or what the host raised. Run as root to
see the trainer's processes as issue 24 did (a root trainer). The tests that hold the fix are
in tests/test_sandbox_escapes.py; this only shows the outcomes side by side.
"""

import ctypes
import os
import subprocess
import sys
import uuid

from paretopo.tools import sandbox as sandbox_module
from paretopo.tools.sandbox import ISOLATED_LEVELS, PythonSandbox, _level_problem

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
THREE_HOLDERS = (
    "import subprocess, sys\n"
    f"code = {HOLD_MEMFD.replace('range(96)', 'range(25)') + 'import time; time.sleep(1)'!r}\n"
    "children = [subprocess.Popen([sys.executable, '-c', code]) for _ in range(3)]\n"
    "print('children exit', [child.wait() for child in children])\n"
)
HOLD_SYSV = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
held, ids = 0, []
for i in range(12):  # 768 MB in 64 MB segments, each detached (out of RLIMIT_AS) once filled
    shmid = libc.shmget(0, 64 << 20, 0o1600)
    assert shmid >= 0, ctypes.get_errno()
    ids.append(shmid)
    address = libc.shmat(shmid, None, 0)
    ctypes.memset(address, 1, 64 << 20)
    libc.shmdt(ctypes.c_void_p(address))
    held += 64
print("held", held, "MB", "ids", *ids)
"""
KEYCTL, ADD_KEY = {"x86_64": (250, 248), "aarch64": (219, 217)}[os.uname().machine]
KEY_TOOLS = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def read_key(key_id):
    buf = ctypes.create_string_buffer(64)
    n = libc.syscall({KEYCTL}, 11, key_id, buf, 64)
    return buf.raw[:n] if n >= 0 else 'errno %d' % ctypes.get_errno()
def search(description):
    return libc.syscall({KEYCTL}, 10, -3, b'user', description, 0)
def add(description, payload):
    return libc.syscall({ADD_KEY}, b'user', description, payload, len(payload), -3)
"""
FORGE = """
import os
payload = {payload!r}.encode() + b'x' * 70000
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


def describe(run) -> str:
    try:
        result = run()
    except Exception as e:  # what issue 24 reports: the host itself raised
        return f"host raised {type(e).__name__}"
    if isinstance(result, str):
        return result
    output = " ".join(result.output.split())
    output = output if len(output) <= 60 else output[:25] + " ... " + output[-30:]
    text = f"ok={result.ok}"
    text += f", error={result.error[:60]!r}" if result.error else ""
    return text + (f", output={output!r}" if output else "")


def host_key() -> tuple[int, bytes]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall(KEYCTL, 1, b"paretopo-escapes")  # our own new session keyring
    description = f"secret-{uuid.uuid4().hex}".encode()
    return libc.syscall(ADD_KEY, b"user", description, b"hf_SECRET", 9, -3), description


def cases(level: str, key: tuple[int, bytes], trainer_pid: int) -> dict:
    box = PythonSandbox(mode=level, wall_time_s=20)
    cpu_box = PythonSandbox(mode=level, wall_time_s=20, cpu_time_s=1)
    planted = f"planted-{uuid.uuid4().hex}".encode()

    def sysv():
        result = box.run(HOLD_SYSV)
        libc = ctypes.CDLL(None)
        for word in result.output.split("ids")[-1].split():  # leave nothing on the host
            libc.shmctl(int(word), 0, None)
        return result

    def plant():
        box.run(KEY_TOOLS + f"add({planted!r}, b'x')")
        return box.run(KEY_TOOLS + f"print('next run finds it:', search({planted!r}) > 0)")

    def fork_bomb():
        if os.geteuid() == 0 and level == "rlimits-only" and not hasattr(sandbox_module, "kill_processes"):
            return "not run: as root, RLIMIT_NPROC is not enforced"
        bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
        return PythonSandbox(mode=level, wall_time_s=2.0, max_processes=4).run(bomb)

    def escaped_session():
        marker = f"paretopo-escape-{uuid.uuid4().hex}"
        box.run(
            "import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}],"
            " start_new_session=True)\ntime.sleep(0.3)\n"
        )
        left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
        for pid in left:
            os.kill(int(pid), 9)
        return f"{len(left)} process(es) left running"

    trainer_code = (
        "import os\n"
        f"for pid in ({trainer_pid}, os.getppid()):\n"
        "    try:\n        print('HF_TOKEN' in open(f'/proc/{pid}/environ').read(), end=' ')\n"
        "    except OSError as e:\n        print(type(e).__name__, end=' ')\n"
        "    try:\n        os.kill(pid, 0); print('may-signal', end=' ')\n"
        "    except OSError as e:\n        print(type(e).__name__, end=' ')\n"
    )
    return {
        "768 MB in memfd files (default limits)": lambda: box.run(HOLD_MEMFD),
        "3 processes x 200 MB memfd": lambda: box.run(THREE_HOLDERS),
        "768 MB SysV shm, detached": sysv,
        "read the caller's session key": lambda: box.run(
            KEY_TOOLS + f"print(read_key({key[0]}), search({key[1]!r}))"
        ),
        "plant a key for the next run": plant,
        "forge ok after exit(7)": lambda: box.run(
            FORGE.format(payload='{"wait": 0, "ready": "R"}\n', then="import sys; sys.exit(7)")
        ),
        "forge a CPU timeout, exit 0": lambda: box.run(
            FORGE.format(payload='{"wait": 24, "ready": "R", "cpu_s": 99}\n', then="print('done')")
        ),
        "forge 'setup failed', exit 0": lambda: box.run(
            FORGE.format(payload='{"setup_error": "forged", "ready": "Eforged"}\n', then="print('done')")
        ),
        "SIGXCPU ignored, busy loop (cpu 1 s)": lambda: cpu_box.run(
            "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass"
        ),
        "lone surrogate in the code": lambda: box.run("x = '\ud800'\nprint(len(x))"),
        "code is not a str (None)": lambda: box.run(None),
        "trainer: environ, signal; parent: same": lambda: box.run(trainer_code),
        "escaped session (setsid sleeper)": escaped_session,
        "fork bomb (max_processes=4)": fork_bomb,
    }


def level_selection() -> dict:
    """One failed probe of every isolated level, then three runs in auto mode."""
    real = sandbox_module._probe

    def reset() -> None:  # forget every probe, in this version of the module or an older one
        if hasattr(sandbox_module, "_reset_level_state"):
            sandbox_module._reset_level_state()
        for name in ("detect_isolation", "_bwrap_problem", "_namespace_problem"):
            getattr(getattr(sandbox_module, name), "cache_clear", lambda: None)()

    reset()
    sandbox_module._probe = lambda level: "simulated: EAGAIN"
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first = PythonSandbox().run("pass").isolation
    finally:
        sandbox_module._probe = real
    if hasattr(sandbox_module, "LEVEL_RETRY_AFTER_S"):
        sandbox_module.LEVEL_RETRY_AFTER_S = 0.0  # stands for "30 s later"
    later = [PythonSandbox().run("pass").isolation for _ in range(3)]
    reset()
    try:
        PythonSandbox(require_isolation="namespaces")
        required = "accepted (tests: refuses to run below it)"
    except TypeError:
        required = "no such option"
    return {"after one failed probe: levels of the next 3 runs": f"{first} then {later}",
            "require_isolation='namespaces'": required}


def main() -> None:
    levels = [level for level in ISOLATED_LEVELS if _level_problem(level) is None] + ["rlimits-only"]
    key = host_key()
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                               env={**os.environ, "HF_TOKEN": "hf_x"})  # fmt: skip
    try:
        table = {level: {name: describe(run) for name, run in cases(level, key, trainer.pid).items()}
                 for level in levels}  # fmt: skip
    finally:
        trainer.kill()
    print("| hostile program | " + " | ".join(levels) + " |")
    print("|---|" + "---|" * len(levels))
    for name in table[levels[0]]:
        print(f"| {name} | " + " | ".join(table[level][name] for level in levels) + " |")
    for name, outcome in level_selection().items():
        print(f"| {name} | {outcome} |")


if __name__ == "__main__":
    main()
