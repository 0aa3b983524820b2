"""Is a model, adapter or checkpoint folder readable? One line naming the damaged file if not.

A weights file cut short (a full disk, a copy interrupted) or overwritten makes transformers,
PEFT or torch fail deep inside their loaders with a long traceback. :func:`check_model_files`
reads what can be checked cheaply before loading, and raises :class:`DamagedFile` (a
ValueError: the commands print it as one line and exit 2):

- ``*.safetensors``: the header parses and its tensors exactly cover the file (safetensors
  checks this when it opens a file); tensor bytes changed in place at the same length cannot be
  seen (the format has no checksum);
- ``*.bin`` / ``*.pt`` / ``*.pth`` (torch's zip format): every member's CRC;
- ``*.json``: it parses.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

__all__ = ["DamagedFile", "check_model_files"]

_TORCH_SUFFIXES = (".bin", ".pt", ".pth")


class DamagedFile(ValueError):
    """A weights, state or config file that cannot be read."""


def _problem(file: Path) -> str | None:
    """What is wrong with one file (None when it reads)."""
    try:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                list(handle.keys())
        elif file.suffix in _TORCH_SUFFIXES:
            if not zipfile.is_zipfile(file):
                return "not a torch file (no zip archive)"
            with zipfile.ZipFile(file) as archive:
                broken = archive.testzip()
            if broken is not None:
                return f"member {broken} fails its CRC check"
        elif file.suffix == ".json":
            json.loads(file.read_bytes())
    except Exception as error:  # noqa: BLE001 - OSError, JSON, zip, and safetensors' own SafetensorError
        return " ".join(str(error).split()) or type(error).__name__
    return None


def check_model_files(folder: str | os.PathLike[str], what: str = "model folder",
                      advice: str = "restore it or use another one") -> None:
    """Raise :class:`DamagedFile` naming the first unreadable weights, state or JSON file of ``folder``.

    Args:
        folder: a model, adapter or checkpoint folder (files directly inside it are checked).
        what: how the message names the folder (e.g. ``"checkpoint"``).
        advice: what the message tells the user to do.
    """
    root = Path(folder)
    if not root.is_dir():
        return
    for file in sorted(root.iterdir()):
        if not file.is_file() or file.name.startswith("."):
            continue
        problem = _problem(file)
        if problem:
            raise DamagedFile(f"{file} is damaged ({problem}), so the {what} {root} cannot be loaded; {advice}")
