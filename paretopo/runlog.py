"""The run log: the data contract between training, evaluation, the apps and the notebooks.

Layout of ``runs/<name>/`` (all tables are parquet written with polars)::

    config.json          method config, training arguments, task and model (written once)
    steps.parquet        one row per optimiser step: stage, losses, objective means, weights,
                         meta reward, hypervolume, timings
    groups/              one part file per step, one row per completion: step, group, prompt id,
                         objective vector, rank, advantage, tool calls, correct
    samples/             one part file per step: the text of a sample of completions with their
                         tool spans (character offsets of tool output, masked in the loss)
    archive.parquet      the stage-1 Pareto archive (points and the step each arrived)
    eval.parquet         one row per (checkpoint step, split): accuracy, mean tool calls, frontier
    eval_rows/           one part file per (checkpoint step, split), one row per evaluated completion
    checkpoints/         trainer checkpoints (TRL/transformers layout + paretopo_state.json)

Every write is atomic: a file is written next to its target and renamed over it, so a run
killed at any moment leaves only complete files. Per-step part files keep writing O(batch)
per step instead of rewriting a growing table. A resumed run first calls :meth:`RunLog.truncate_after`
with the checkpoint's step, which drops rows written after that checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["CHECKPOINT_STATE_FILE", "RunData", "RunLog", "atomic_write_bytes", "atomic_write_json", "is_run_folder",
           "last_complete_checkpoint", "list_runs", "read_run"]

_PART = re.compile(r"step-(\d+)(?:-[\w.]+)?\.parquet$")
_TABLES_BY_STEP = ("groups", "samples", "eval_rows")
_RUN_MARKERS = ("config.json", "steps.parquet")
# folders a run writes inside itself: never searched for further runs
_RUN_SUBFOLDERS = frozenset({"groups", "samples", "eval_rows", "checkpoints", "final", "export"})
# Written last (and atomically) into a checkpoint by paretopo.trainer (its STATE_FILE): a
# checkpoint folder without it was cut short.
CHECKPOINT_STATE_FILE = "paretopo_state.json"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never half."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _atomic_write_parquet(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        frame.write_parquet(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class RunLog:
    """Writer for one run folder. Cheap to create; safe to use from the main process only.

    Example:
        >>> import tempfile
        >>> log = RunLog(tempfile.mkdtemp())
        >>> log.log_step({"step": 1, "stage": 1, "loss": 0.5})
        >>> log.log_groups(1, [{"group": 0, "prompt_id": "q1", "obj_task": 1.0, "obj_tool_efficiency": 0.6,
        ...                     "rank": 1, "advantage": 1.0, "tool_calls": 1, "correct": True}])
        >>> read_run(log.path).steps["loss"].to_list()
        [0.5]
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._steps: list[dict[str, Any]] = []
        steps_file = self.path / "steps.parquet"
        if steps_file.exists():
            self._steps = _read_parquet(steps_file).to_dicts()

    # --- one-off files ---------------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / "config.json", dict(config))

    def write_archive(self, points: Iterable[Iterable[float]], inserted_at: Iterable[int],
                      objective_names: Iterable[str]) -> None:
        names = list(objective_names)
        rows = [dict(zip(names, map(float, p), strict=True)) | {"inserted_at": int(s)}
                for p, s in zip(points, inserted_at, strict=True)]
        schema = {name: pl.Float64 for name in names} | {"inserted_at": pl.Int64}
        _atomic_write_parquet(pl.DataFrame(rows, schema=schema), self.path / "archive.parquet")

    # --- per-step tables -------------------------------------------------------------------
    def log_step(self, row: Mapping[str, Any]) -> None:
        """Add or update the row of ``row["step"]`` in steps.parquet (merging keys)."""
        if "step" not in row:
            raise ValueError("a steps row needs a 'step' key")
        step = int(row["step"])
        for existing in self._steps:
            if existing["step"] == step:
                existing.update(row)
                break
        else:
            self._steps.append(dict(row))
        self._steps.sort(key=lambda r: r["step"])
        _atomic_write_parquet(pl.DataFrame(self._steps, infer_schema_length=None), self.path / "steps.parquet")

    def log_groups(self, step: int, rows: list[dict[str, Any]] | pl.DataFrame) -> None:
        self._write_part("groups", step, rows)

    def log_samples(self, step: int, rows: list[dict[str, Any]] | pl.DataFrame) -> None:
        self._write_part("samples", step, rows)

    def log_eval(self, rows: list[dict[str, Any]]) -> None:
        """Append evaluation rows (replacing earlier rows of the same checkpoint step and split)."""
        path = self.path / "eval.parquet"
        new = pl.DataFrame(rows, infer_schema_length=None)
        if path.exists():
            old = pl.read_parquet(path).join(new.select("step", "split"), on=["step", "split"], how="anti")
            new = pl.concat([old, new], how="diagonal_relaxed")
        _atomic_write_parquet(new.sort("step", "split"), path)

    def log_eval_rows(self, step: int, split: str, rows: pl.DataFrame) -> None:
        """Per-completion evaluation rows (question, correct, tool calls, text) of one checkpoint and split."""
        frame = rows.with_columns(pl.lit(int(step), dtype=pl.Int64).alias("step"), pl.lit(split).alias("split"))
        _atomic_write_parquet(frame, self.path / "eval_rows" / f"step-{int(step):08d}-{split}.parquet")

    def _write_part(self, table: str, step: int, rows: list[dict[str, Any]] | pl.DataFrame) -> None:
        frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows, infer_schema_length=None)
        frame = frame.with_columns(pl.lit(int(step), dtype=pl.Int64).alias("step"))
        _atomic_write_parquet(frame, self.path / table / f"step-{int(step):08d}.parquet")

    # --- resume ----------------------------------------------------------------------------
    def truncate_after(self, step: int) -> None:
        """Forget everything logged for steps after ``step`` (used when resuming a checkpoint)."""
        self._steps = [r for r in self._steps if r["step"] <= step]
        if (self.path / "steps.parquet").exists():
            frame = pl.DataFrame(self._steps, infer_schema_length=None) if self._steps else pl.DataFrame()
            _atomic_write_parquet(frame, self.path / "steps.parquet")
        for table in _TABLES_BY_STEP:
            for part in (self.path / table).glob("step-*.parquet"):
                match = _PART.search(part.name)
                if match and int(match.group(1)) > step:
                    part.unlink()
        eval_path = self.path / "eval.parquet"
        if eval_path.exists():
            _atomic_write_parquet(pl.read_parquet(eval_path).filter(pl.col("step") <= step), eval_path)


@dataclass
class RunData:
    """Everything a run folder holds, as polars frames (empty frames for missing tables)."""

    path: Path
    config: dict[str, Any]
    steps: pl.DataFrame
    groups: pl.DataFrame
    samples: pl.DataFrame
    archive: pl.DataFrame
    evals: pl.DataFrame
    eval_rows: pl.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def last_step(self) -> int:
        return int(self.steps["step"].max()) if self.steps.height else 0


def _read_parquet(file: Path) -> pl.DataFrame:
    """One table of a run folder; a damaged file is named in a one-line ValueError."""
    try:
        return pl.read_parquet(file)
    except (pl.exceptions.PolarsError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{file} is not a readable parquet table ({reason}); it was cut short or written by "
                         "something else: move it away (a resumed run rewrites it) or restore it") from None


def _read_parts(folder: Path) -> pl.DataFrame:
    parts = sorted(folder.glob("step-*.parquet"))
    if not parts:
        return pl.DataFrame()
    return pl.concat([_read_parquet(p) for p in parts], how="diagonal_relaxed")


def read_run(path: str | os.PathLike[str]) -> RunData:
    """Read a run folder written by :class:`RunLog` (also while the run is still writing).

    Raises:
        FileNotFoundError: if ``path`` is not a folder.
        ValueError: if config.json or a table is damaged (e.g. cut short outside paretopo).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no run folder at {folder}; pass runs/<name> as written by paretopo train")
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
    except ValueError as error:
        raise ValueError(f"{config_path} is not valid JSON ({error}); the run folder is damaged: "
                         "start a new run in another folder") from None

    def table(name: str) -> pl.DataFrame:
        file = folder / f"{name}.parquet"
        return _read_parquet(file) if file.exists() else pl.DataFrame()

    return RunData(
        path=folder,
        config=config,
        steps=table("steps"),
        groups=_read_parts(folder / "groups"),
        samples=_read_parts(folder / "samples"),
        archive=table("archive"),
        evals=table("eval"),
        eval_rows=_read_parts(folder / "eval_rows"),
    )


def is_run_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder holding a run log (``config.json`` or ``steps.parquet``)."""
    folder = Path(path)
    return folder.is_dir() and any((folder / marker).is_file() for marker in _RUN_MARKERS)


def list_runs(root: str | os.PathLike[str], *, evaluated: bool = False, max_depth: int = 6) -> list[Path]:
    """Every run folder at any depth under ``root`` (``root`` itself when it is a run), sorted.

    ``paretopo demo`` writes ``runs/demo-<ts>/<method>/`` and ``paretopo train`` ``runs/<name>/``:
    both are found from ``runs``. A run's own subfolders (checkpoints, exports, ...) and hidden
    folders are not searched. A missing ``root`` gives ``[]``.

    Args:
        root: the folder to search.
        evaluated: keep only runs with evaluated checkpoints (``eval_rows/`` or ``eval.parquet``).
        max_depth: how many folder levels below ``root`` to search.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> RunLog(root / "demo-1" / "paretopo").write_config({"task": "arithmetic"})
        >>> RunLog(root / "solo").write_config({})
        >>> [p.relative_to(root).as_posix() for p in list_runs(root)]
        ['demo-1/paretopo', 'solo']
    """
    start = Path(root)
    found: list[Path] = []

    def visit(folder: Path, depth: int) -> None:
        if is_run_folder(folder):
            found.append(folder)
            return
        if depth >= max_depth:
            return
        try:
            children = sorted(child for child in folder.iterdir() if child.is_dir())
        except OSError:  # vanished or unreadable while listing
            return
        for child in children:
            if not child.name.startswith(".") and child.name not in _RUN_SUBFOLDERS:
                visit(child, depth + 1)

    if start.is_dir():
        visit(start, 0)
    if evaluated:
        found = [p for p in found if (p / "eval_rows").is_dir() or (p / "eval.parquet").is_file()]
    return sorted(found)

def last_complete_checkpoint(run_dir: str | os.PathLike[str], method: str) -> Path:
    """The newest complete checkpoint of a run of ``method`` in ``run_dir``, to resume from.

    Raises:
        FileNotFoundError / ValueError saying what to change: no run folder, no or a damaged
        config.json, a run of another method, or no complete checkpoint.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run folder at {run_dir} to resume; pass the folder of an earlier run or drop "
                                "resume (--resume)")
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} is missing, so {run_dir} cannot be resumed; start a new run in "
                                "another run folder")
    try:
        trained = json.loads(config_path.read_text())["method"]["method"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{config_path} is unreadable ({error!r}); start a new run in another run folder") from None
    if trained != method:
        raise ValueError(f"{run_dir} holds a {trained!r} run, not {method!r}; resume it with method {trained!r} "
                         "(--method) or start a new run in another run folder")
    complete = [c for c in (run_dir / "checkpoints").glob("checkpoint-*")
                if re.fullmatch(r"checkpoint-\d+", c.name) and (c / CHECKPOINT_STATE_FILE).exists()]
    if not complete:
        raise FileNotFoundError(f"{run_dir / 'checkpoints'} holds no complete checkpoint to resume; drop resume "
                                "(--resume) to start again in another run folder")
    return max(complete, key=lambda c: int(c.name.rsplit("-", 1)[1]))
