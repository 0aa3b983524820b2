"""The run folder is one contract: paretopo.evaluation.runlog names every path and column, with a schema version."""

import json
import re
from pathlib import Path

import polars as pl
import pytest

from paretopo.evaluation.runlog import (
    CHECKPOINT_STATE_FILE,
    SCHEMA_VERSION,
    RunLog,
    objective_column,
    read_run,
    run_paths,
    schema_version,
)

ROOT = Path(__file__).resolve().parents[1]
# a run folder written by paretopo before config.json recorded a schema version (kept as it was)
FIXTURE_RUN = ROOT / "tests" / "fixtures" / "runs_schema_v1" / "paretopo"


def test_a_new_run_folder_records_the_schema_version(tmp_path):
    RunLog(tmp_path / "run").write_config({"task": "arithmetic", "method": {"objectives": ["task", "brevity"]}})
    assert json.loads(run_paths(tmp_path / "run").config.read_text())["schema_version"] == SCHEMA_VERSION
    run = read_run(tmp_path / "run")
    assert run.schema_version == SCHEMA_VERSION and run.objectives == ("task", "brevity")


def test_a_folder_written_before_the_version_still_opens():
    assert "schema_version" not in json.loads((FIXTURE_RUN / "config.json").read_text())
    run = read_run(FIXTURE_RUN)
    assert run.schema_version == 1 and run.objectives == ("task", "tool_efficiency")
    assert run.groups.height and {objective_column(n) for n in run.objectives} <= set(run.groups.columns)


def test_a_folder_from_a_newer_paretopo_names_both_versions(tmp_path):
    folder = tmp_path / "future"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ValueError, match=f"schema version {SCHEMA_VERSION + 1}, newer than the {SCHEMA_VERSION}"):
        read_run(folder)
    assert schema_version({}) == 1


def test_checkpoints_are_listed_by_step_and_completeness(tmp_path):
    paths = run_paths(tmp_path)
    for step in (9, 10, 2):
        paths.checkpoint(step).mkdir(parents=True)
    (paths.checkpoints / "checkpoint-x").mkdir()
    (paths.checkpoint(9) / CHECKPOINT_STATE_FILE).write_text("{}")
    assert [p.name for p in paths.checkpoint_folders()] == ["checkpoint-2", "checkpoint-9", "checkpoint-10"]
    assert paths.checkpoint_folders(complete=True) == [paths.checkpoint(9)]


# names of a run folder's parts, as code would hard-code them
_LAYOUT = re.compile(r'"(eval|steps|archive)\.parquet"|/ "(checkpoints|final|groups|samples|eval_rows)"'
                     r'|glob\("checkpoint-|"checkpoints/')


@pytest.mark.parametrize("path", ["paretopo/training/train.py", "paretopo/evaluation/export.py", "paretopo/commands/cli.py", "paretopo/evaluation/evaluate.py",
                                  "paretopo/training/trainer.py", "apps/run_inspector.py", "apps/live_rollouts.py",
                                  "apps/frontier_compare.py", "notebooks/04_frontiers_and_baselines.py"])
def test_callers_go_through_runlog_for_the_layout(path):
    hits = [line.strip() for line in (ROOT / path).read_text().splitlines() if _LAYOUT.search(line)]
    assert not hits, f"{path} hard-codes run-folder names; use paretopo.evaluation.runlog.run_paths: {hits}"


def test_eval_rows_parts_are_written_compact_and_read_back_unchanged(tmp_path):
    """Committed studies carry ~600 of these parts: strong zstd, no column statistics (~25 % smaller)."""
    import pyarrow.parquet as pq

    from paretopo.evaluation.runlog import RunLog, read_eval_rows

    rows = pl.DataFrame({"id": [f"q{i}" for i in range(50)], "correct": [i % 3 == 0 for i in range(50)],
                         "tool_calls": [i % 2 for i in range(50)], "text": ["answer " * 20] * 50})
    log = RunLog(tmp_path / "run")
    log.log_eval_rows(30, "validation", rows)
    (part,) = (tmp_path / "run" / "eval_rows").glob("step-*.parquet")
    column = pq.ParquetFile(part).metadata.row_group(0).column(0)
    assert column.compression == "ZSTD" and not column.is_stats_set
    assert read_eval_rows(tmp_path / "run").select(rows.columns).equals(rows)
