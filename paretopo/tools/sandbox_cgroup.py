"""The memory cgroup of one sandbox run, and sweeping up what a run leaves behind.

Used by `paretopo.tools.sandbox`: every process of a run joins one `MemoryCgroup`, so that all
the memory they use counts against one limit and none of them outlives the run;
`kill_processes` and `remove_shared_memory_of` clean up after a run that has no cgroup.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable

__all__ = ["MemoryCgroup", "kill_processes", "memory_cgroup_folders", "memory_cgroup_problem",
           "pids_of_uid", "remove_shared_memory_of", "uid_of"]


def memory_cgroup_problem() -> str | None:
    """Why runs get no memory cgroup here (then only the per-process bound holds), or None."""
    return _cgroup_parent()[1]


class MemoryCgroup:
    """A memory cgroup (v1 or v2) holding one run's processes.

    Every page they use counts against its limit, wherever it lives: heap, memfd_create
    files, SysV and POSIX shared memory, tmpfs files, page cache. When the limit is reached the
    kernel's OOM killer ends a process of the run (the code's processes first: their
    oom_score_adj is 1000). It also lists every process of the run, so none outlives it.
    """

    def __init__(self, path: str, version: int) -> None:
        self.path, self.version = path, version
        self.procs_file = os.path.join(path, "cgroup.procs")

    @classmethod
    def create(cls, limit_mb: int) -> MemoryCgroup | None:
        parent, problem = _cgroup_parent()
        if parent is None:
            return None
        path = os.path.join(parent[0], f"paretopo-sandbox-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        try:
            os.mkdir(path)
        except OSError:
            return None
        cgroup = cls(path, parent[1])
        try:
            cgroup._limit(limit_mb << 20)
        except OSError:
            cgroup.remove()
            return None
        return cgroup

    def _limit(self, limit: int) -> None:
        if self.version == 1:
            _write(self.path, "memory.limit_in_bytes", limit)
            if os.path.exists(os.path.join(self.path, "memory.memsw.limit_in_bytes")):
                _write(self.path, "memory.memsw.limit_in_bytes", limit)  # no swapping around it
        else:
            _write(self.path, "memory.max", limit)
            for name, value in (("memory.swap.max", 0), ("memory.oom.group", 1)):
                if os.path.exists(os.path.join(self.path, name)):
                    _write(self.path, name, value)

    def pids(self) -> list[int]:
        try:
            with open(self.procs_file) as f:
                return [int(pid) for pid in f.read().split()]
        except OSError:
            return []

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup, and wait until it is empty (2 s at most)."""
        name = "/" + os.path.basename(self.path)
        kill_processes(self.pids, lambda pid: _cgroup_of(pid).endswith(name))

    def oom_kills(self) -> int:
        """Processes the OOM killer ended in this cgroup."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            with open(os.path.join(self.path, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            pass
        return 0

    def remove(self) -> None:
        for _ in range(100):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:  # a process of the run is still being torn down
                time.sleep(0.01)


@functools.cache
def _cgroup_parent() -> tuple[tuple[str, int] | None, str | None]:
    """((folder to make run cgroups in, cgroup version), None), or (None, why there is none).

    Our own memory cgroup: v1's memory hierarchy, or v2 where it delegates the memory
    controller to its children. Checked once per process by making and removing one.
    """
    if not sys.platform.startswith("linux"):
        return None, f"platform is {sys.platform}"
    try:
        with open("/proc/self/cgroup") as f:
            memberships = f.read()
        with open("/proc/self/mountinfo") as f:
            mounts = f.read()
    except OSError as e:
        return None, f"cannot read /proc/self/cgroup or mountinfo: {e}"
    candidates = memory_cgroup_folders(memberships, mounts)
    problems = []
    for folder, version in sorted(candidates, key=lambda c: c[1]):  # v1's memory first
        if version == 2 and not _v2_delegates_memory(folder):
            problems.append(f"{folder}: the memory controller is not delegated to children")
            continue
        probe = MemoryCgroup(os.path.join(folder, f"paretopo-probe-{uuid.uuid4().hex[:12]}"), version)
        try:
            os.mkdir(probe.path)
            probe._limit(64 << 20)
        except OSError as e:
            problems.append(f"{folder}: {e.strerror or e}")
            continue
        finally:
            probe.remove()
        return (folder, version), None
    return None, "; ".join(problems) or "no memory cgroup hierarchy is mounted"


def memory_cgroup_folders(memberships: str, mountinfo: str) -> list[tuple[str, int]]:
    """Where our own memory cgroups are mounted, as (folder, version): v1's hierarchy with the
    memory controller, and the v2 (unified) one.

    memberships: /proc/self/cgroup ("4:memory:/a/b", "0::/a/b"); mountinfo: /proc/self/mountinfo.
    """
    found = []
    for line in memberships.splitlines():
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        version = 2 if controllers == "" else 1
        if version == 1 and "memory" not in controllers.split(","):
            continue
        for fields in (line.split() for line in mountinfo.splitlines()):
            if "-" not in fields:
                continue
            rest = fields[fields.index("-") + 1 :]
            fstype, options = rest[0], rest[2] if len(rest) > 2 else ""
            if version == 2:
                wanted = fstype == "cgroup2"
            else:
                wanted = fstype == "cgroup" and "memory" in options.split(",")
            root = fields[3]  # the cgroup folder mounted there
            if wanted and (root == "/" or path == root or path.startswith(root + "/")):
                found.append((fields[4] + path[len(root.rstrip("/")) :], version))
    return found


def _v2_delegates_memory(folder: str) -> bool:
    try:
        with open(os.path.join(folder, "cgroup.subtree_control")) as f:
            if "memory" in f.read().split():
                return True
        _write(folder, "cgroup.subtree_control", "+memory")  # fails where we hold processes
        return True
    except OSError:
        return False


def _write(folder: str, name: str, value: object) -> None:
    with open(os.path.join(folder, name), "w") as f:
        f.write(str(value))


def _cgroup_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return "\n".join(line.rstrip("\n").split(":", 2)[-1] for line in f)
    except OSError:
        return ""


def uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def pids_of_uid(uid: int) -> list[int]:
    return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and uid_of(int(e.name)) == uid]


def kill_processes(list_pids: Callable[[], list[int]], belongs: Callable[[int], bool]) -> None:
    """SIGKILL every process `list_pids` lists and `belongs` confirms, until none is left.

    The check runs after pidfd_open, which pins the process: a pid reused meanwhile by
    someone else's process fails the check and is left alone.
    """
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        pids = [pid for pid in list_pids() if pid != os.getpid() and not _is_zombie(pid)]
        if not pids:
            return
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue  # gone already
            try:
                if belongs(pid):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(fd)
        time.sleep(0.005)


def _is_zombie(pid: int) -> bool:
    """Exited, not yet reaped (or gone): nothing left to kill."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def remove_shared_memory_of(uid: int) -> None:
    """rlimits-only: SysV segments and /dev/shm files the run's uid left on the host."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        with open("/proc/sysvipc/shm") as f:
            rows = [line.split() for line in f][1:]
    except OSError:
        rows = []
    for row in rows:  # key shmid perms size cpid lpid nattch uid gid cuid ...
        if len(row) > 9 and (int(row[7]) == uid or int(row[9]) == uid):
            libc.shmctl(int(row[1]), 0, None)  # IPC_RMID
    try:
        entries = list(os.scandir("/dev/shm"))
    except OSError:
        entries = []
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_uid == uid:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
        except OSError:
            pass
