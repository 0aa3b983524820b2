"""The exact commands that open the four apps on a folder of runs (``paretopo demo`` prints them).

Example:
    >>> for line in app_commands("runs/demo-1", apps_dir="apps"):
    ...     print(line)
    marimo run apps/pareto_playground.py
    marimo run apps/run_inspector.py -- --runs-dir runs/demo-1
    marimo run apps/live_rollouts.py -- --runs-dir runs/demo-1
    marimo run apps/frontier_compare.py -- --runs-dir runs/demo-1
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

__all__ = ["APPS", "app_commands", "apps_folder"]

# app file -> what it needs from the runs folder (None: nothing)
APPS = {
    "pareto_playground": None,
    "run_inspector": "--runs-dir",
    "live_rollouts": "--runs-dir",
    "frontier_compare": "--runs-dir",
}


def apps_folder() -> Path:
    """``apps/`` of the checkout this package was imported from (the apps are not part of the wheel)."""
    return Path(__file__).resolve().parents[2] / "apps"


def app_commands(root: str | os.PathLike[str], apps_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """``marimo run ...`` for each app, pointed at the runs under ``root`` (found at any depth).

    Args:
        root: a folder of runs (e.g. ``runs/demo-<ts>``) or one run folder.
        apps_dir: where the app files are; default ``apps`` when the current folder has them,
            else this checkout's ``apps/`` as an absolute path.
    """
    if apps_dir is None:
        here = Path("apps")
        apps_dir = here if (here / "run_inspector.py").exists() else apps_folder()
    commands = []
    for app, flag in APPS.items():
        command = f"marimo run {shlex.quote(str(Path(apps_dir) / f'{app}.py'))}"
        if flag:
            command += f" -- {flag} {shlex.quote(str(root))}"
        commands.append(command)
    return commands
