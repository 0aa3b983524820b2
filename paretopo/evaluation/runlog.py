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

This module owns every path and column name of a run folder: :class:`RunPaths` (from
:func:`run_paths`) names the files and folders, :func:`objective_column` the ``obj_<name>``
columns; training, export, the CLI, the apps and the notebooks go through them.
``config.json`` records :data:`SCHEMA_VERSION`; folders written before it was recorded have no
``schema_version`` and read as version 1 (same layout); a folder from a newer paretopo is
refused with a message naming both versions.

Every write is atomic: a file is written next to its target and renamed over it, so a run
killed at any moment leaves only complete files. Per-step part files keep writing O(batch)
per step instead of rewriting a growing table. A resumed run first calls :meth:`RunLog.truncate_after`
with the checkpoint's step, which drops rows written after that checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from paretopo.core.objectives import DEFAULT_OBJECTIVES
from paretopo.evaluation.integrity import check_model_files

__all__ = ["CHECKPOINT_PREFIX", "CHECKPOINT_STATE_FILE", "OBJECTIVE_PREFIX", "SCHEMA_VERSION", "RunData", "RunLog",
           "RunPaths", "atomic_write_bytes", "atomic_write_json", "current_umask", "follow_umask", "is_run_folder", "last_complete_checkpoint",
           "list_runs", "objective_column", "objective_columns", "read_run", "run_paths", "schema_version",
           "checkpoint_step"]

SCHEMA_VERSION = 2
"""Version of the run-folder layout written to config.json (1: folders from before it was recorded)."""
CONFIG_FILE = "config.json"
STEPS_FILE = "steps.parquet"
ARCHIVE_FILE = "archive.parquet"
EVAL_FILE = "eval.parquet"
GROUPS_DIR, SAMPLES_DIR, EVAL_ROWS_DIR = "groups", "samples", "eval_rows"
CHECKPOINTS_DIR, FINAL_DIR, EXPORT_DIR = "checkpoints", "final", "export"
CHECKPOINT_PREFIX = "checkpoint-"
OBJECTIVE_PREFIX = "obj_"
# Written last (and atomically) into a checkpoint by paretopo.training.trainer (its STATE_FILE): a
# checkpoint folder without it was cut short.
CHECKPOINT_STATE_FILE = "paretopo_state.json"

_PART = re.compile(r"step-(\d+)(?:-[\w.]+)?\.parquet$")
_CHECKPOINT = re.compile(re.escape(CHECKPOINT_PREFIX) + r"(\d+)")
_TABLES_BY_STEP = (GROUPS_DIR, SAMPLES_DIR, EVAL_ROWS_DIR)
_RUN_MARKERS = (CONFIG_FILE, STEPS_FILE)
# folders a run writes inside itself: never searched for further runs
_RUN_SUBFOLDERS = frozenset({*_TABLES_BY_STEP, CHECKPOINTS_DIR, FINAL_DIR, EXPORT_DIR})


def objective_column(name: str) -> str:
    """Column of objective ``name`` in groups/, eval.parquet and eval_rows/: ``obj_<name>``."""
    return f"{OBJECTIVE_PREFIX}{name}"


def objective_columns(frame: pl.DataFrame) -> list[str]:
    """The ``obj_<name>`` columns of a run table, in order."""
    return [c for c in frame.columns if c.startswith(OBJECTIVE_PREFIX)]


@dataclass(frozen=True)
class RunPaths:
    """Every file and folder of one run folder (nothing is created)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def steps(self) -> Path:
        return self.root / STEPS_FILE

    @property
    def archive(self) -> Path:
        return self.root / ARCHIVE_FILE

    @property
    def evals(self) -> Path:
        return self.root / EVAL_FILE

    @property
    def groups(self) -> Path:
        return self.root / GROUPS_DIR

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES_DIR

    @property
    def eval_rows(self) -> Path:
        return self.root / EVAL_ROWS_DIR

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def final(self) -> Path:
        """The final model or adapter (``final/``)."""
        return self.root / FINAL_DIR

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"{CHECKPOINT_PREFIX}{int(step)}"

    def checkpoint_folders(self, *, complete: bool = False) -> list[Path]:
        """``checkpoints/checkpoint-<step>`` folders by step; ``complete``: only those whose
        trainer state was written (the last file of a checkpoint)."""
        found = [c for c in self.checkpoints.glob(f"{CHECKPOINT_PREFIX}*") if _CHECKPOINT.fullmatch(c.name)
                 and (not complete or (c / CHECKPOINT_STATE_FILE).exists())]
        return sorted(found, key=checkpoint_step)


def checkpoint_step(folder: str | os.PathLike[str]) -> int:
    """Step of a ``checkpoint-<step>`` folder."""
    match = _CHECKPOINT.fullmatch(Path(folder).name)
    if match is None:
        raise ValueError(f"{folder} is not a {CHECKPOINT_PREFIX}<step> folder")
    return int(match.group(1))


def run_paths(run_dir: str | os.PathLike[str]) -> RunPaths:
    """The paths of the run folder ``run_dir``."""
    return RunPaths(Path(run_dir))


def schema_version(config: Mapping[str, Any]) -> int:
    """Layout version of a run's config.json: 1 without ``schema_version`` (written before it was
    recorded, same layout); a ValueError for a version newer than this paretopo reads."""
    version = int(config.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise ValueError(f"this run folder has schema version {version}, newer than the {SCHEMA_VERSION} this paretopo "
                         "reads; upgrade paretopo to open it")
    return version


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, so no other thread sees it change)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(folder: str | os.PathLike[str]) -> None:
    """Give the files directly in ``folder`` the mode a plain ``open`` gives (``0o666 & ~umask``).

    For folders written by libraries that create files 0600: safetensors >= 0.8 writes through
    a temporary file and renames it (safetensors/safetensors#782), so a model's weights would be
    private to the trainer while its config is readable.
    """
    mode = 0o666 & ~current_umask()
    for file in Path(folder).iterdir():
        if file.is_file() and not file.is_symlink():
            file.chmod(mode)


def _temporary_file(target: Path) -> tuple[int, str]:
    """A new file next to ``target`` (for an atomic rename) with the permissions ``open`` would
    give it: mkstemp makes files 0600, which would leave every run-log file private to its writer."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.fchmod(handle, 0o666 & ~current_umask())
    return handle, temporary


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never half."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _temporary_file(target)
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


# eval_rows parts are small (a few hundred rows), written once per evaluation and committed with a
# study: strong zstd and no column statistics (footer bytes that pay off only for predicate pushdown
# on large files) make them ~25 % smaller, which the repository's size budget needs
_COMPACT = {"compression": "zstd", "compression_level": 19, "statistics": False}


def _atomic_write_parquet(frame: pl.DataFrame, path: Path, compact: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _temporary_file(path)
    os.close(handle)
    try:
        frame.write_parquet(temporary, **(_COMPACT if compact else {}))
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
        self.paths = run_paths(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._steps: list[dict[str, Any]] = []
        steps_file = self.paths.steps
        if steps_file.exists():
            self._steps = _read_parquet(steps_file).to_dicts()

    # --- one-off files ---------------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write config.json, stamped with :data:`SCHEMA_VERSION`."""
        atomic_write_json(self.paths.config, {**dict(config), "schema_version": SCHEMA_VERSION})

    def write_archive(self, points: Iterable[Iterable[float]], inserted_at: Iterable[int],
                      objective_names: Iterable[str]) -> None:
        names = list(objective_names)
        rows = [dict(zip(names, map(float, p), strict=True)) | {"inserted_at": int(s)}
                for p, s in zip(points, inserted_at, strict=True)]
        schema = {name: pl.Float64 for name in names} | {"inserted_at": pl.Int64}
        _atomic_write_parquet(pl.DataFrame(rows, schema=schema), self.paths.archive)

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
        _atomic_write_parquet(pl.DataFrame(self._steps, infer_schema_length=None), self.paths.steps)

    def log_groups(self, step: int, rows: list[dict[str, Any]] | pl.DataFrame) -> None:
        self._write_part(GROUPS_DIR, step, rows)

    def log_samples(self, step: int, rows: list[dict[str, Any]] | pl.DataFrame) -> None:
        self._write_part(SAMPLES_DIR, step, rows)

    def log_eval(self, rows: list[dict[str, Any]]) -> None:
        """Append evaluation rows (replacing earlier rows of the same checkpoint step and split)."""
        path = self.paths.evals
        new = pl.DataFrame(rows, infer_schema_length=None)
        if path.exists():
            old = pl.read_parquet(path).join(new.select("step", "split"), on=["step", "split"], how="anti")
            new = pl.concat([old, new], how="diagonal_relaxed")
        _atomic_write_parquet(new.sort("step", "split"), path)

    def log_eval_rows(self, step: int, split: str, rows: pl.DataFrame) -> None:
        """Per-completion evaluation rows (question, correct, tool calls, text) of one checkpoint and split."""
        frame = rows.with_columns(pl.lit(int(step), dtype=pl.Int64).alias("step"), pl.lit(split).alias("split"))
        _atomic_write_parquet(frame, self.paths.eval_rows / f"step-{int(step):08d}-{split}.parquet", compact=True)

    def _write_part(self, table: str, step: int, rows: list[dict[str, Any]] | pl.DataFrame) -> None:
        frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows, infer_schema_length=None)
        frame = frame.with_columns(pl.lit(int(step), dtype=pl.Int64).alias("step"))
        _atomic_write_parquet(frame, self.path / table / f"step-{int(step):08d}.parquet")

    # --- resume ----------------------------------------------------------------------------
    def start_over(self) -> None:
        """Clear what a run cut short before its first complete checkpoint left (its steps, tables
        and partial checkpoint folders, e.g. after a full disk), so a new run here starts clean.

        Raises:
            FileExistsError: if the folder holds a complete checkpoint (that run can be resumed).
        """
        if self.paths.checkpoint_folders(complete=True):
            raise FileExistsError(f"{self.path} holds a complete checkpoint; resume it or choose another run folder")
        for partial in self.paths.checkpoint_folders():
            shutil.rmtree(partial)
        self.truncate_after(0)

    def truncate_after(self, step: int) -> None:
        """Forget everything logged for steps after ``step`` (used when resuming a checkpoint)."""
        self._steps = [r for r in self._steps if r["step"] <= step]
        if self.paths.steps.exists():
            frame = pl.DataFrame(self._steps, infer_schema_length=None) if self._steps else pl.DataFrame()
            _atomic_write_parquet(frame, self.paths.steps)
        for table in _TABLES_BY_STEP:
            for part in (self.path / table).glob("step-*.parquet"):
                match = _PART.search(part.name)
                if match and int(match.group(1)) > step:
                    part.unlink()
        eval_path = self.paths.evals
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
    def paths(self) -> RunPaths:
        return run_paths(self.path)

    @property
    def schema_version(self) -> int:
        return schema_version(self.config)

    @property
    def objectives(self) -> tuple[str, ...]:
        """The run's objective names (config.json; ``(task, tool_efficiency)`` if it names none)."""
        method = self.config.get("method")
        names = method.get("objectives") if isinstance(method, Mapping) else None
        return tuple(names) if names else DEFAULT_OBJECTIVES

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


def read_eval_rows(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Only the evaluated completions of a run (``eval_rows/``), without reading its other tables."""
    return _read_parts(run_paths(path).eval_rows)


def read_run(path: str | os.PathLike[str]) -> RunData:
    """Read a run folder written by :class:`RunLog` (also while the run is still writing).

    Raises:
        FileNotFoundError: if ``path`` is not a folder.
        ValueError: if config.json or a table is damaged (e.g. cut short outside paretopo).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no run folder at {folder}; pass runs/<name> as written by paretopo train")
    paths = run_paths(folder)
    config_path = paths.config
    try:
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
    except ValueError as error:
        raise ValueError(f"{config_path} is not valid JSON ({error}); the run folder is damaged: "
                         "start a new run in another folder") from None
    schema_version(config)  # refuses a folder from a newer paretopo

    def table(file: Path) -> pl.DataFrame:
        return _read_parquet(file) if file.exists() else pl.DataFrame()

    return RunData(
        path=folder,
        config=config,
        steps=table(paths.steps),
        groups=_read_parts(paths.groups),
        samples=_read_parts(paths.samples),
        archive=table(paths.archive),
        evals=table(paths.evals),
        eval_rows=_read_parts(paths.eval_rows),
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
        found = [p for p in found if run_paths(p).eval_rows.is_dir() or run_paths(p).evals.is_file()]
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
    paths = run_paths(run_dir)
    config_path = paths.config
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
    complete = paths.checkpoint_folders(complete=True)
    if not complete:
        raise FileNotFoundError(f"{paths.checkpoints} holds no complete checkpoint to resume; drop resume "
                                "(--resume) to start the run again in this folder")
    earlier = f"resume from {complete[-2].name}" if len(complete) > 1 else "start the run again"
    check_model_files(complete[-1], "checkpoint", f"restore it, or move it out of the run folder to {earlier}")
    return complete[-1]


def run_folder_of(path: str | os.PathLike[str]) -> Path | None:
    """The run folder holding ``path`` (the folder itself, its ``final/`` or a checkpoint), or None.

    A model folder has a ``config.json`` too (the model's); a run's records the method config."""
    path = Path(path)
    for candidate in (path, path.parent, path.parent.parent):
        if _run_method_config(candidate) is not None:
            return candidate
    return None


def _run_method_config(folder: Path) -> Mapping[str, Any] | None:
    try:
        method = json.loads((folder / CONFIG_FILE).read_text()).get("method")
    except (OSError, ValueError, AttributeError):
        return None
    return method if isinstance(method, Mapping) else None


def scoring_for(source: Any) -> dict[str, Any]:
    """The scoring options of a method preset name, a ``ParetoPOConfig`` or a run folder.

    The one place a command, the study or an app gets its scoring from
    (``paretopo.core.objectives.scoring_options``; print it with ``describe_scoring``):
    ``"paretopo"`` is the method's defaults, any preset name that preset's; a run folder (or its
    ``final/`` or a checkpoint in it) gives the config the run trained and was evaluated with.
    """
    from paretopo.core.config import PRESETS, ParetoPOConfig
    from paretopo.core.objectives import scoring_options

    if isinstance(source, ParetoPOConfig):
        return scoring_options(source)
    if isinstance(source, str) and source in PRESETS:
        return scoring_options(ParetoPOConfig.from_preset(source))
    run = run_folder_of(source) if isinstance(source, (str, os.PathLike)) else None
    if run is None:
        raise ValueError(f"scoring {source!r}: not a method preset ({', '.join(sorted(PRESETS))}) nor a run folder "
                         f"whose {CONFIG_FILE} records a method")
    return scoring_options(ParetoPOConfig.from_dict(dict(_run_method_config(run))))
