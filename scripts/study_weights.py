#!/usr/bin/env python3
"""The study's final weights, which git does not carry: check, restore or re-train them.

``paretopo study`` writes ``<study>/final_weights.json`` (sha256 and bytes of every run's
``final/model.safetensors``, the commit that trained them, and the command that re-trains a
run); ``.gitignore`` keeps the weights out of the repository, which must stay small enough to
carry to a GPU machine (docs/gpu.md).

    python scripts/study_weights.py check                       # which weights are here, and intact
    python scripts/study_weights.py command paretopo/seed0      # the exact command that re-trains it
    python scripts/study_weights.py restore paretopo/seed0      # from git history (fast, exact)
    python scripts/study_weights.py retrain paretopo/seed0      # train it again, compare the sha256

``restore`` reads the run's ``final/`` folder from the last commit that tracked it: the exact
weights. ``retrain`` runs the manifest's command in a scratch folder with the code of
``trained_at_commit`` (``git archive``; ``--current-code`` uses this checkout instead) and
reports whether the new weights have the recorded sha256; ``--install`` then copies a matching
``final/`` folder into the study. Training is not bitwise reproducible here: on 2026-12-06
(2-core CPU VM) ``retrain torl_grpo/seed0`` at 2e05a2a took 15.5 min, matched the recorded
validation point at step 30 (0.95, 2.0 calls) and then drifted (test accuracy 0.985 against
the recorded 0.955), so its sha256 differed. A re-trained run is the same configuration, seed
and budget, not the same weights; only ``restore`` gives those back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_FILE = "model.safetensors"


class Problem(Exception):
    """Bad input or a failed step: printed as one line, exit status 2."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(study: Path) -> dict:
    path = study / "final_weights.json"
    if not path.exists():
        raise Problem(f"{path} does not exist; pass --study with the folder `paretopo study` wrote")
    return json.loads(path.read_text())


def run_entry(manifest: dict, run: str) -> dict:
    if run not in manifest["runs"]:
        raise Problem(f"{run!r} is not in the manifest; runs look like {next(iter(manifest['runs']), 'name/seed0')}")
    return manifest["runs"][run]


def command_for(manifest: dict, run: str, out: str = "OUT") -> list[str]:
    configuration, _, seed = run.rpartition("/seed")
    return manifest["retrain"].format(configuration=configuration, seed=seed).replace("--out OUT", f"--out {out}").split()


def check(study: Path, manifest: dict) -> int:
    counts = {"ok": 0, "missing": 0, "MISMATCH": 0}
    for run, entry in manifest["runs"].items():
        weights = study / "runs" / run / "final" / WEIGHTS_FILE
        state = "missing" if not weights.exists() else "ok" if sha256(weights) == entry["sha256"] else "MISMATCH"
        counts[state] += 1
        if state != "ok":
            print(f"{state:8} {run}")
    print(f"{len(manifest['runs'])} runs: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 1 if counts["MISMATCH"] else 0


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)


def restore(study: Path, manifest: dict, run: str) -> int:
    entry = run_entry(manifest, run)
    folder = (study / "runs" / run / "final").resolve()
    relative = folder.relative_to(ROOT).as_posix()
    history = git("log", "--format=%H", "--", f"{relative}/{WEIGHTS_FILE}").stdout.decode().split()
    commit = next((c for c in history if git("cat-file", "-e", f"{c}:{relative}/{WEIGHTS_FILE}").returncode == 0),
                  None)
    if commit is None:
        raise Problem(f"no commit in this clone's history holds {relative}/{WEIGHTS_FILE}; use retrain")
    names = git("ls-tree", "--name-only", commit, f"{relative}/").stdout.decode().split()
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / Path(name).name).write_bytes(git("show", f"{commit}:{name}").stdout)
    if sha256(folder / WEIGHTS_FILE) != entry["sha256"]:
        raise Problem(f"{run}: the weights in {commit[:10]} do not have the manifest's sha256")
    print(f"restored {run} from {commit[:10]} ({len(names)} files); sha256 matches")
    return 0


def retrain(study: Path, manifest: dict, run: str, *, current_code: bool, work: Path | None, install: bool) -> int:
    entry = run_entry(manifest, run)
    work = work or Path(tempfile.mkdtemp(prefix="paretopo-retrain-"))
    code = ROOT
    if not current_code:
        commit = manifest.get("trained_at_commit")
        if not commit or git("cat-file", "-e", f"{commit}^{{commit}}").returncode:
            raise Problem(f"the training commit {commit!r} is not in this clone; pass --current-code")
        code = work / f"code-{commit}"
        if not code.exists():
            code.mkdir(parents=True)
            archive = git("archive", commit).stdout
            subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    module, function = tomllib.loads((code / "pyproject.toml").read_text())["project"]["scripts"]["paretopo"].split(":")
    arguments = command_for(manifest, run, str(work / "study"))[2:]  # after "paretopo study"
    print(f"re-training {run} with the code of {code.name if code != ROOT else 'this checkout'}:\n  "
          + " ".join(command_for(manifest, run, str(work / "study"))), flush=True)
    launcher = f"import sys; from {module} import {function} as main; sys.exit(main())"
    completed = subprocess.run([sys.executable, "-c", launcher, "study", *arguments], cwd=code,
                               env={**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"})
    if completed.returncode:
        raise Problem(f"the study command exited with {completed.returncode}")
    new_final = work / "study" / "runs" / run / "final"
    matches = sha256(new_final / WEIGHTS_FILE) == entry["sha256"]
    print(f"{run}: re-trained weights {'match' if matches else 'DO NOT match'} the manifest's sha256 ({new_final})"
          + ("" if matches else "; training is not bitwise reproducible (see this script's docstring): "
                                "`restore` gives the recorded weights back"))
    if install and matches:
        target = study / "runs" / run / "final"
        shutil.copytree(new_final, target, dirs_exist_ok=True)
        print(f"installed into {target}")
    return 0 if matches else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["check", "command", "restore", "retrain"])
    parser.add_argument("run", nargs="?", help="a run of the manifest, <configuration>/seed<S>")
    parser.add_argument("--study", type=Path, default=ROOT / "results" / "study")
    parser.add_argument("--current-code", action="store_true", help="retrain with this checkout's code")
    parser.add_argument("--work", type=Path, help="retrain's scratch folder (default: a new temporary one)")
    parser.add_argument("--install", action="store_true", help="retrain: copy matching weights into the study")
    args = parser.parse_args(argv)
    try:
        manifest = read_manifest(args.study)
        if args.action == "check":
            return check(args.study, manifest)
        if not args.run:
            raise Problem(f"{args.action} needs a run, e.g. {next(iter(manifest['runs']), 'name/seed0')}")
        run_entry(manifest, args.run)
        if args.action == "command":
            print(" ".join(command_for(manifest, args.run)))
            return 0
        if args.action == "restore":
            return restore(args.study, manifest, args.run)
        return retrain(args.study, manifest, args.run, current_code=args.current_code, work=args.work,
                       install=args.install)
    except Problem as problem:
        print(f"study_weights: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
