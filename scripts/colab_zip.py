#!/usr/bin/env python3
"""Build the file to upload to Colab next to a notebook: ``dist/paretopo.zip``.

    make colab-zip                      # or: python scripts/colab_zip.py [--out dist/paretopo.zip]

Colab uploads files, not folders, and a zip of the whole checkout after ``make demo`` holds
``.venv/`` (thousands of packages, some with their own ``pyproject.toml``, which the notebooks'
install cell could pick instead of this project's) and ``runs/``. This zip holds a clean source
tree under one top folder ``paretopo/``: what ``pip install`` builds the package from
(``pyproject.toml``, ``README.md``, ``paretopo/``), the shipped ``data/`` (tiny policy, datasets)
and the ``notebooks/`` and ``apps/``. Files are those git tracks or would track (untracked files
git does not ignore), read from the working tree, so local edits are in it; outside a git
checkout, every file of those folders except caches. The notebooks' install cell unzips it,
installs ``paretopo/`` and points ``PARETOPO_DATA_DIR`` at its ``data/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDED = ("pyproject.toml", "README.md", "paretopo", "data", "notebooks", "apps")
SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
TOP_FOLDER = "paretopo"


def source_files(root: Path = ROOT) -> list[Path]:
    """The files of :data:`INCLUDED` to ship, relative to ``root``, sorted."""
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard",
                                 "-z", "--", *INCLUDED], capture_output=True, check=True).stdout.decode()
        files = [Path(name) for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. GitHub's "Download ZIP")
        files = [path.relative_to(root) for name in INCLUDED for path in
                 ([root / name] if (root / name).is_file() else sorted((root / name).rglob("*")))]
    return sorted(f for f in files if (root / f).is_file() and not SKIPPED_PARTS & set(f.parts))


def build(out: Path, root: Path = ROOT) -> tuple[int, int]:
    """Write the zip; returns (files, bytes of the zip)."""
    files = source_files(root)
    missing = [name for name in ("pyproject.toml", "paretopo/__init__.py", "data/tiny_policy/model.safetensors")
               if Path(name) not in files]
    if missing:
        raise SystemExit(f"error: {root} is missing {', '.join(missing)}: not a complete paretopo checkout")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            archive.write(root / name, f"{TOP_FOLDER}/{name.as_posix()}")
    return len(files), out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "paretopo.zip", help="the zip to write")
    args = parser.parse_args(argv)
    count, size = build(args.out)
    print(f"wrote {args.out} ({count} files, {size / 1e6:.1f} MB): upload it next to a notebook in Colab's Files "
          "pane; the notebook's install cell installs it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
