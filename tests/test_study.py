"""`paretopo study`: the quick study end to end, and its statistics on hand-made run folders."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import polars as pl
import pytest

from paretopo.commands import study, study_report
from paretopo.commands.cli import main
from paretopo.evaluation.runlog import RunLog

REQUIRED_EVAL_COLUMNS = {"method", "seed", "split", "step", "accuracy", "mean_tool_calls"}


def test_quick_study_writes_the_results_folder_and_continues_instead_of_retraining(tmp_path, capsys):
    docs = tmp_path / "results.md"
    begin, end = study_report.study_markers("arithmetic")
    docs.write_text(f"# Results\n\nkept above\n\n{begin}\nold tables\n{end}\n\nkept below\n")
    out = tmp_path / "study"
    started = time.perf_counter()
    assert main(["study", "--quick", "--out", str(out), "--docs", str(docs)]) == 0
    assert time.perf_counter() - started < 300  # the budget for --quick
    printed = capsys.readouterr().out
    assert "2 runs (0 already finished)" in printed

    for name in ("runs.parquet", "checkpoints.parquet", "tiers.parquet", "frontiers.png", "frontiers.svg",
                 "results.md", "study.json"):
        assert (out / name).stat().st_size > 0, name
    runs = pl.read_parquet(out / "runs.parquet")
    assert sorted(runs["configuration"]) == ["paretopo", "torl_grpo"] and runs["seed"].to_list() == [0, 0]
    for run in runs["run"]:
        evals = pl.read_parquet(f"{run}/eval.parquet")
        assert REQUIRED_EVAL_COLUMNS <= set(evals.columns)
        assert set(evals["split"]) == {"validation", "test"} and evals["seed"].unique().to_list() == [0]
        assert Path(run, "final", "model.safetensors").is_file()  # the exported final policy
    # every table a reader needs, and the claims as measured sentences
    report = (out / "results.md").read_text()
    for heading in ("Main comparison", "Where each method spends its calls", "Checkpoint frontiers",
                    "What the measurement says"):
        assert heading in report
    assert "McNemar" in report and "(reference)" in report
    assert "Holds:" in report or "Does not hold:" in report
    text = docs.read_text()
    assert "kept above" in text and "kept below" in text and "old tables" not in text and "Main comparison" in text

    # a second invocation trains nothing and rewrites the same tables
    assert main(["study", "--quick", "--out", str(out)]) == 0
    assert "2 runs (2 already finished)" in capsys.readouterr().out
    assert pl.read_parquet(out / "runs.parquet").equals(runs)
    # --only trains only those, and the report still covers every finished configuration
    manifest = (out / "final_weights.json").read_text()
    assert main(["study", "--quick", "--out", str(out), "--only", "torl_grpo"]) == 0
    assert "1 configurations x 1 seeds = 1 runs (1 already finished)" in capsys.readouterr().out
    assert pl.read_parquet(out / "runs.parquet").equals(runs) and (out / "final_weights.json").read_text() == manifest


@pytest.mark.parametrize("argv, message", [
    (["--only", "nonsense"], "not a study configuration"),
    (["--seeds", "0", "0"], "repeats a seed"),
    (["--processes", "0"], "--processes"),
    (["--docs", "missing.md"], "is not a file"),
])
def test_study_bad_input_is_one_line_and_trains_nothing(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["study", "--quick", "--out", "out", *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error and not (tmp_path / "out").exists()


def test_docs_without_a_study_section_fails_before_training(tmp_path, capsys):
    docs = tmp_path / "notes.md"
    docs.write_text("# no markers here\n")
    assert main(["study", "--quick", "--out", str(tmp_path / "out"), "--docs", str(docs)]) == 2
    assert "no arithmetic study section" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_full_study_covers_every_preset_ablation_and_table4_weight():
    from paretopo.core.config import PRESETS, ParetoPOConfig

    found = study.configurations()
    names = [c.name for c in found]
    assert len(names) == len(set(names))
    assert {c.preset for c in found} == set(PRESETS)  # every method preset and ablation is trained
    weights = {tuple(c.overrides.get("weights", ParetoPOConfig().weights)) for c in found if c.table == "weights"}
    assert weights | {tuple(ParetoPOConfig().weights)} == set(study.TABLE4_WEIGHTS)
    assert [c.table for c in found][: len(study.BASELINES) + 1] == ["methods"] * (len(study.BASELINES) + 1)


def _fake_run(root, name, seed, correct, calls, val_accuracy):
    """A finished run folder with a final test evaluation of len(correct) questions."""
    run_dir = root / "runs" / name / f"seed{seed}"
    log = RunLog(run_dir)
    log.write_config({"method": {"method": name}})
    rows = pl.DataFrame({"id": [f"q{i}" for i in range(len(correct))], "correct": correct, "tool_calls": calls})
    log.log_eval_rows(10, "test", rows)
    log.log_eval_rows(10, "validation", rows)
    log.log_eval([{"method": name, "seed": seed, "step": 10, "split": "test", "final": True, "accuracy": 0.0,
                   "mean_tool_calls": 0.0, "tool_productivity": 1.0}])
    return {"configuration": name, "table": "methods", "method": name, "seed": seed, "run": str(run_dir),
            "val_accuracy": val_accuracy, "val_mean_tool_calls": 1.0}


def test_paired_tests_count_questions_won_and_lost_per_seed(tmp_path):
    reference = [True] * 6 + [False] * 4
    ours = [True] * 4 + [False] * 2 + [True] * 4  # lost 2, won 4, on the same questions
    rows = [_fake_run(tmp_path, "torl_grpo", seed, reference, [1] * 10, 0.9) for seed in (0, 1)]
    rows += [_fake_run(tmp_path, "paretopo", seed, ours, [0] * 10, 0.8) for seed in (0, 1)]
    tests = study_report._paired_tests(pl.DataFrame(rows), "torl_grpo", ["paretopo"])["paretopo"]
    assert (tests["pairs"], tests["wins"], tests["losses"]) == (20, 8, 4)
    from scipy.stats import binomtest

    assert tests["p_accuracy"] == pytest.approx(binomtest(8, 12).pvalue)
    assert tests["p_calls"] < 0.001  # 20 pairs, every one a call fewer


def test_strongest_baseline_is_chosen_on_validation_not_test():
    runs = pl.DataFrame({
        "configuration": ["torl_grpo", "otc_grpo", "paretopo"], "table": ["methods"] * 3,
        "val_accuracy": [0.90, 0.95, 0.99], "val_mean_tool_calls": [1.0, 0.5, 0.3],
        "test_accuracy": [0.99, 0.80, 0.5], "test_mean_tool_calls": [1.0, 0.5, 0.3], "frontier_hv": [0.5] * 3,
    })
    assert study_report._strongest_baseline(runs) == "otc_grpo"  # ParetoPO is not a baseline; test accuracy is not used


def test_claims_say_plainly_when_paretopo_does_not_dominate():
    runs = pl.DataFrame({
        "configuration": ["torl_grpo", "paretopo"], "table": ["methods"] * 2,
        "val_accuracy": [0.9, 0.8], "val_mean_tool_calls": [1.0, 0.3],
        "test_accuracy": [0.95, 0.83], "test_mean_tool_calls": [1.0, 0.33], "frontier_hv": [0.80, 0.85],
    })
    lines = study_report._claims(runs, "torl_grpo")
    assert lines[0].startswith("- **Does not hold:**") and "`torl_grpo` 0.950 / 1.00" in lines[0]
    assert lines[1].startswith("- **Holds:** largest checkpoint-frontier hypervolume")
    dominant = runs.with_columns(pl.Series("test_accuracy", [0.95, 0.96]))
    assert study_report._claims(dominant, "torl_grpo")[0].startswith("- **Holds:**")


def test_weights_manifest_records_each_final_policy_and_survives_a_clone_without_weights(tmp_path):
    """The weights stay out of git: a finished run without final/ is still finished (nothing is
    re-trained), and the manifest keeps its sha256, size and the command that re-trains it."""
    import hashlib
    import json

    settings = study.StudySettings(out=str(tmp_path), seeds=(0,))
    chosen = [study.Configuration("torl_grpo", "methods", "torl_grpo")]
    run_dir = Path(_fake_run(tmp_path, "torl_grpo", 0, [True, False], [1, 0], 0.5)["run"])
    assert study._finished(run_dir) and not (run_dir / "final").exists()
    weights = run_dir / "final" / study.WEIGHTS_FILE
    weights.parent.mkdir()
    weights.write_bytes(b"not really a model")
    manifest_path = study.write_weights_manifest(tmp_path, chosen, settings, "abc1234")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["runs"] == {"torl_grpo/seed0": {"bytes": 18, "sha256": hashlib.sha256(b"not really a model")
                                                    .hexdigest()}}
    assert manifest["trained_at_commit"] == "abc1234"
    assert manifest["retrain"].format(configuration="torl_grpo", seed=0) == study.retrain_command(settings,
                                                                                               "torl_grpo", 0)
    assert "--only torl_grpo --seeds 0 --steps 150" in study.retrain_command(settings, "torl_grpo", 0)
    weights.unlink()  # a clone: the entry stays
    assert json.loads(study.write_weights_manifest(tmp_path, chosen, settings, "abc1234").read_text()) == manifest
    assert [job for job in study._jobs(settings, chosen)] == []  # and nothing is re-trained


def test_each_committed_study_has_a_manifest_entry_for_every_run_and_commits_no_weights():
    import subprocess

    root = Path(__file__).resolve().parents[1]
    studies = sorted(path.parent for path in (root / "results").glob("*/final_weights.json"))
    assert studies, "no committed study"
    for folder in studies:
        manifest = json.loads((folder / "final_weights.json").read_text())
        record = json.loads((folder / "study.json").read_text())
        runs = {p.parent.relative_to(folder / "runs").as_posix() for p in (folder / "runs").glob("*/*/eval.parquet")}
        assert set(manifest["runs"]) == runs, folder
        assert len(runs) == len(record["configurations"]) * len(record["settings"]["seeds"]), folder
        tracked = subprocess.run(["git", "-C", str(root), "ls-files", str(folder.relative_to(root) / "runs")],
                                 capture_output=True, text=True, check=True).stdout.split()
        assert tracked and not [path for path in tracked if "/final/" in path or path.endswith("steps.parquet")], folder


def test_a_study_is_not_continued_with_other_settings(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    # a record written before --task, --kl-beta and --test-samples existed
    earlier = dataclasses.asdict(study.StudySettings.quick_settings(str(out)))
    earlier = {k: v for k, v in earlier.items() if k not in ("task", "kl_beta", "test_samples")}
    (out / "study.json").write_text(json.dumps({"settings": {**earlier, "learning_rate": 1e-4}}))
    assert main(["study", "--quick", "--out", str(out), "--learning-rate", "3e-4"]) == 2
    err = capsys.readouterr().err
    assert "learning_rate=0.0001, not 0.0003" in err and err.count("\n") == 1 and not (out / "runs").exists()
    # a record older than the task setting was an arithmetic study
    assert main(["study", "--quick", "--out", str(out), "--learning-rate", "1e-4", "--task", "lookup"]) == 2
    assert "task='arithmetic', not 'lookup'" in capsys.readouterr().err
    # ... with no sampled test evaluation and no KL term
    assert main(["study", "--quick", "--out", str(out), "--learning-rate", "1e-4", "--kl-beta", "0.1"]) == 2
    assert "kl_beta=0.0, not 0.1" in capsys.readouterr().err
    assert main(["study", "--quick", "--out", str(out), "--learning-rate", "1e-4", "--test-samples", "2"]) == 2
    assert "test_samples=0, not 2" in capsys.readouterr().err


def test_a_lookup_study_fills_its_own_section_with_its_own_tiers(tmp_path):
    docs = tmp_path / "results.md"
    sections = [study_report.study_markers(task) for task in ("arithmetic", "lookup")]
    docs.write_text("\n".join(f"{begin}\nold {i}\n{end}" for i, (begin, end) in enumerate(sections)) + "\n")
    out = tmp_path / "lookup"
    assert main(["study", "--quick", "--task", "lookup", "--out", str(out), "--docs", str(docs)]) == 0
    text = docs.read_text()
    assert "old 0" in text and "old 1" not in text  # the arithmetic section is left alone
    assert "tier 2: unknown entity (tool only)" in text and "sum with carry" not in text
    # the gamble map's prediction per configuration and tier, from what each run's training met
    predictions = pl.read_parquet(out / "predictions.parquet")
    assert set(predictions["configuration"]) == {"paretopo", "torl_grpo"} and set(predictions["tier"]) <= {1, 2}
    assert predictions.filter(pl.col("configuration") == "torl_grpo")["estimator"].to_list()[0] == "torl_grpo"
    assert "Predicted vs measured, per tier" in text and "judged rows" in text
    config = json.loads(Path(pl.read_parquet(out / "runs.parquet")["run"][0], "config.json").read_text())
    assert config["settings"]["task"] == "lookup"
    manifest = json.loads((out / "final_weights.json").read_text())
    assert "--task lookup" in manifest["retrain"]
    assert json.loads((out / "study.json").read_text())["settings"]["task"] == "lookup"


def test_a_continued_study_says_which_commit_trained_how_many_runs(monkeypatch):
    monkeypatch.setattr(study, "_git_commit", lambda: "bbb")
    assert study._runs_by_commit({"commit": "aaa"}, 48, 3) == {"aaa": 48, "bbb": 3}  # a record from before
    assert study._runs_by_commit({"runs_trained_at_commit": {"aaa": 48, "bbb": 3}}, 51, 0) == {"aaa": 48, "bbb": 3}
    assert study._runs_by_commit({}, 0, 2) == {"bbb": 2}
    assert study_report._commits({"commit": "bbb", "runs_trained_at_commit": {"aaa": 48, "bbb": 3}}) == \
        "runs trained at aaa (48), bbb (3)"
    assert study_report._commits({"commit": "bbb", "runs_trained_at_commit": {"bbb": 2}}) == "commit bbb"
