import shlex

import pytest
from rich.console import Console

from paretopo.commands import showcase
from paretopo.commands.cli import build_parser, main


def test_showcase_prints_ranks_advantages_and_meta_reward(capsys):
    console = Console(width=100, record=True)
    showcase.run(console)
    text = console.export_text()
    assert "Pareto rank" in text and "pareto_rank" in text and "next r_pareto" in text


def test_cli_commands_and_help(capsys):
    assert main(["showcase"]) == 0
    assert "Pareto rank" in capsys.readouterr().out
    help_text = build_parser().format_help()
    assert "demo" in help_text and "showcase" in help_text


def test_expected_failures_print_a_message_not_a_traceback(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no LoRA adapter" in capsys.readouterr().err


def test_eval_breaks_accuracy_down_by_tier_and_tool_use(capsys, tmp_path):
    import json

    from trainer_fixtures import tiny_random_policy

    policy = tiny_random_policy(tmp_path / "policy")
    out = tmp_path / "eval.json"
    assert main(["eval", policy, "--limit", "6", "--max-new-tokens", "8", "--by", "tier", "--out", str(out)]) == 0
    breakdown = json.loads(out.read_text())["breakdown"]
    assert sum(row["completions"] for row in breakdown) == 6 and {row["tier"] for row in breakdown} <= {1, 2, 3}
    assert main(["eval", policy, "--limit", "2", "--max-new-tokens", "4", "--by", "colour"]) == 2
    assert "cannot break down by 'colour'" in capsys.readouterr().err


# Bad input, every verb: one line saying what to change, exit status 2, nothing written.


def _bad_input_folders(root):
    """Run and model folders that are wrong in one way each, under `root`."""
    import json

    import polars as pl

    def run_folder(name, method="paretopo", config=True, truncate_steps=False, checkpoint=False):
        folder = root / name
        folder.mkdir()
        if config:
            (folder / "config.json").write_text(json.dumps({"method": {"method": method}, "task": "arithmetic"}))
        pl.DataFrame({"step": [1, 2], "loss": [0.5, 0.4]}).write_parquet(folder / "steps.parquet")
        if truncate_steps:  # as if cut short outside paretopo's atomic writes
            data = (folder / "steps.parquet").read_bytes()
            (folder / "steps.parquet").write_bytes(data[: len(data) // 2])
        if checkpoint:
            (folder / "checkpoints" / "checkpoint-2").mkdir(parents=True)
            (folder / "checkpoints" / "checkpoint-2" / "paretopo_state.json").write_text("{}")

    run_folder("run_truncated", truncate_steps=True)
    run_folder("run_without_config", config=False)
    run_folder("run_of_torl", method="torl_grpo", checkpoint=True)
    run_folder("run_damaged", checkpoint=True)  # its last complete checkpoint has a cut-short weights file
    (root / "run_damaged" / "checkpoints" / "checkpoint-2" / "model.safetensors").write_bytes(b"\x08\x00")
    (root / "model_without_weights").mkdir()
    (root / "model_without_weights" / "config.json").write_text("{}")
    (root / "model_damaged").mkdir()
    (root / "model_damaged" / "config.json").write_text("{}")
    (root / "model_damaged" / "model.safetensors").write_bytes(b"garbage, not a safetensors header")
    (root / "a_file.txt").write_text("not a folder")


BAD_INPUT = [  # (argv with {tmp} for the fixture folder, what the error line must say)
    ("demo --steps 0", "--steps must be at least 1"),
    ("demo --steps -3", "--steps must be at least 1"),
    ("demo --stage1-steps -1", "--stage1-steps must be at least 0"),
    ("demo --test-examples 0", "--test-examples must be at least 1"),
    ("demo --steps many", "argument --steps: invalid int value: 'many'"),
    ("demo --runs {tmp}/a_file.txt", "is a file; pass a folder"),
    ("demo --runs {tmp} --name run_truncated", "already exists; choose another --name"),
    ("demo --task chess", "--task chess: the demo runs arithmetic or lookup"),
    ("demo --test-samples -1", "--test-samples must be at least 0"),
    ("train --run-dir {tmp}/new --steps 0", "--steps must be at least 1"),
    ("train --run-dir {tmp}/new --steps -5", "--steps must be at least 1"),
    ("train --run-dir {tmp}/new --prompts 0", "--prompts must be at least 1"),
    ("train --run-dir {tmp}/new --generations 1", "--generations must be at least 2"),
    ("train --run-dir {tmp}/new --save-steps 0", "--save-steps must be at least 1"),
    ("train --run-dir {tmp}/new --max-completion-length 0", "--max-completion-length must be at least 1"),
    ("train --run-dir {tmp}/new --max-tool-calls -1", "--max-tool-calls must be at least 0"),
    ("train --run-dir {tmp}/new --lr 0", "--lr must be greater than 0"),
    # issue 24: every number finite and in range, names usable, damaged files named
    ("train --run-dir {tmp}/new --lr 1e309", "--lr must be a finite number, got inf"),
    ("train --run-dir {tmp}/new --lr 5", "--lr must be at most 1.0, got 5.0"),
    ("train --run-dir {tmp}/new --kl-beta nan", "--kl-beta must be a finite number, got nan"),
    ("train --run-dir {tmp}/new --epsilon-high inf", "--epsilon-high must be a finite number, got inf"),
    ("train --run-dir {tmp}/new --temperature 0", "--temperature must be greater than 0"),
    ("train --run-dir {tmp}/new --prompts 1000000000", "--prompts must be at most 4096, got 1000000000"),
    ("train --run-dir {tmp}/new --generations 1000000000", "--generations must be at most 1024"),
    ("train --run-dir {tmp}/new --threads 1000000", "--threads must be at most 1024, got 1000000"),
    ("train --run-dir {tmp}/new --steps 1000000000000", "--steps must be at most 10000000"),
    ("train --run-dir {tmp}/new --seed -1", "--seed must be at least 0"),
    ("train --run-dir {tmp}/new --alpha inf", "alpha must be a finite number, got inf"),
    ("train --run-dir {tmp}/new --set otc_alpha=1e999", "otc_alpha must be a finite number, got inf"),
    ("train --run-dir ''", "--run-dir must be a non-empty folder name"),
    ("train --run-dir {tmp}/run_damaged --resume", "model.safetensors is damaged"),
    ("demo --runs {tmp} --name ../escaped", "--name '../escaped' must be a folder name inside --runs"),
    ("demo --runs {tmp} --name /tmp/escaped", "--name '/tmp/escaped' must be a folder name inside --runs"),
    ("demo --runs {tmp} --name ''", "--name must be a non-empty folder name"),
    ("demo --runs ''", "--runs must be a non-empty folder name"),
    ("demo --prompts 100000", "--prompts must be at most 4096"),
    ("study --learning-rate nan", "--learning-rate must be a finite number, got nan"),
    ("study --processes 100000", "--processes must be at most 1024"),
    ("study --seeds 0 -1", "--seeds must be at least 0, got -1"),
    ("eval {tmp}/model_without_weights --samples 100000", "--samples must be at most 1024"),
    ("eval {tmp}/model_damaged --limit 1", "model.safetensors is damaged (Error while deserializing header"),
    ("export {tmp}/run_of_torl {tmp}", "holds the source"),
    ("export {tmp}/run_of_torl/checkpoints {tmp}/run_of_torl", "holds the source"),
    ("export {tmp}/run_of_torl {tmp}/run_of_torl", "is inside the source"),
    ("export {tmp}/run_of_torl {tmp}/run_truncated", "already exists and is not empty"),
    ("export {tmp}/run_of_torl {tmp}/run_truncated --overwrite", "is not an earlier paretopo export"),
    ("train --run-dir {tmp}/new --task chess", "--task 'chess' is unknown; choose one of"),
    ("train --run-dir {tmp}/new --method chess", "argument --method: invalid choice: 'chess'"),
    ("train --run-dir {tmp}/new --model {tmp}/no_such_model", "no such folder; pass an existing model folder"),
    ("train --run-dir {tmp}/new --model ./no_such_model", "no such folder; pass an existing model folder"),
    ("train --run-dir {tmp}/new --model {tmp}/model_without_weights", "holds no model weights"),
    ("train --run-dir {tmp}/new --model {tmp}/a_file.txt", "is a file; pass a model folder"),
    ("train --run-dir {tmp}/new --set colour=1", "--set colour: unknown ParetoPOConfig field"),
    ("train --run-dir {tmp}/new --set beta=high", "--set beta=high: beta takes float, e.g. --set beta=0.5"),
    ("train --run-dir {tmp}/new --set stage1_steps=true", "stage1_steps takes int | None"),
    ("train --run-dir {tmp}/new --set weights=[1,\"a\"]", "weights takes tuple[float, ...]"),
    ("train --run-dir {tmp}/new --set beta=2.0", "beta must be in (0, 1]"),
    ("train --run-dir {tmp}/new --set beta", "--set expects FIELD=VALUE"),
    ("train --run-dir {tmp}/a_file.txt", "is a file; pass a folder"),
    ("train --run-dir {tmp}/new --set max_tool_calls=5",
     "max_tool_calls=5 (method config) conflicts with the arithmetic task's tool budget 2; set the budget with "
     "--max-tool-calls 5"),
    ("train --run-dir {tmp}/new --max-tool-calls 3 --set max_tool_calls=5",
     "max_tool_calls=5 (method config) conflicts with the arithmetic task's tool budget 3"),
    ("train --run-dir {tmp}/run_of_torl --resume", "holds a 'torl_grpo' run, not 'paretopo'"),
    ("train --run-dir {tmp}/run_without_config --resume", "config.json is missing, so"),
    ("train --run-dir {tmp}/run_truncated --resume", "holds no complete checkpoint to resume"),
    ("train --run-dir {tmp}/never_ran --resume", "no run folder at"),
    ("eval {tmp}/no_such_model", "no such folder"),
    ("eval {tmp}/model_without_weights", "holds no model weights"),
    ("eval {tmp}/run_truncated", "has no final/ model"),
    ("eval {tmp}/model_without_weights --limit 0", "--limit must be at least 1"),
    ("eval {tmp}/model_without_weights --samples 0", "--samples must be at least 1"),
    ("eval {tmp}/model_without_weights --max-new-tokens -1", "--max-new-tokens must be at least 1"),
    ("eval {tmp}/model_without_weights --task chess", "--task 'chess' is unknown"),
    ("eval {tmp}/model_without_weights --split nope", "--split 'nope' is not a split of task 'arithmetic'"),
    ("eval {tmp}/model_without_weights --data {tmp}/no.jsonl", "--data {tmp}/no.jsonl: no such file"),
    ("eval {tmp}/model_without_weights --out {tmp}", "is a folder; pass a file name"),
    ("eval {tmp}/model_without_weights --out {tmp}/no_dir/x.json", "folder {tmp}/no_dir does not exist"),
    ("compare {tmp}/no_such_run", "no such run folder"),
    ("compare {tmp}/run_truncated", "steps.parquet is not a readable parquet table"),
    ("compare {tmp}/run_without_config", "has no config.json"),
    ("compare {tmp}/run_of_torl --out {tmp}/no_dir/x.json", "folder {tmp}/no_dir does not exist"),
    ("compare {tmp}/run_of_torl --scoring chess", "scoring 'chess': not a method preset"),
    ("export {tmp}/no_such_run {tmp}/export", "no such folder"),
    ("export {tmp}/model_without_weights {tmp}/export", "no LoRA adapter"),
    ("export {tmp}/run_of_torl {tmp}/a_file.txt", "is a file; pass a folder to export into"),
    ("export {tmp}/run_of_torl {tmp}/run_of_torl/export", "is inside the source"),
    ("warmstart --out {tmp}/a_file.txt", "is a file; pass a folder for the policy"),
    ("warmstart --out {tmp}/run_truncated", "holds other files"),
    ("warmstart --task chess", "argument --task: invalid choice: 'chess'"),
    ("showcase --steps 3", "unrecognized arguments: --steps 3"),
    ("fly", "argument command: invalid choice: 'fly'"),
]


def _tree(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("command", "message"), BAD_INPUT, ids=[c for c, _ in BAD_INPUT])
def test_bad_input_gives_one_line_and_writes_nothing(command, message, tmp_path, monkeypatch, capsys):
    fixtures, cwd = tmp_path / "fixtures", tmp_path / "cwd"
    fixtures.mkdir()
    cwd.mkdir()
    _bad_input_folders(fixtures)
    monkeypatch.chdir(cwd)  # default outputs (runs/...) would land here
    before = _tree(tmp_path)
    try:
        status = main(shlex.split(command.format(tmp=fixtures)))
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert message.format(tmp=fixtures) in err, err
    assert _tree(tmp_path) == before  # nothing written, nothing overwritten


def test_train_options_are_generated_from_the_dataclasses():
    """Every RunSettings field with a flag and every ParetoPOConfig field is a `train` option with its help."""
    from dataclasses import fields

    from paretopo.core.config import ParetoPOConfig
    from paretopo.training.train import RunSettings

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    options = {action.dest: action for action in train._actions}
    for item in fields(RunSettings):
        if item.metadata.get("flag") == "":
            continue
        assert item.name in options, item.name
        assert options[item.name].default == item.default and item.metadata["help"] in options[item.name].help
    for item in fields(ParetoPOConfig):
        if item.name in {"method", "objectives", "weights", "max_tool_calls"}:
            continue
        action = options["method__" + item.name]
        assert action.help.startswith(item.metadata["help"].replace("%", "%%")), item.name


def test_method_options_reach_the_config_and_none_is_a_value():
    from paretopo.commands.cli import _method_options

    args = build_parser().parse_args(shlex.split(
        "train --beta 0.3 --stage2-center group_mean --no-dynamic-weighting --stage1-steps none --steps 5"))
    assert _method_options(args) == {"beta": 0.3, "stage2_center": "group_mean", "dynamic_weighting": False,
                                     "stage1_steps": None}
    assert args.max_steps == 5 and args.prompts_per_step == 8  # RunSettings defaults
    assert _method_options(build_parser().parse_args(["train"])) == {}


def test_a_method_option_and_the_same_set_field_is_one_line_error(capsys):
    assert main(["train", "--beta", "0.3", "--set", "beta=0.2"]) == 2
    assert "--beta and --set beta=... both given" in capsys.readouterr().err


@pytest.mark.parametrize("command, settings_path", [
    ("demo", "paretopo.commands.demo:DemoSettings"),
    ("study", "paretopo.commands.study:StudySettings"),
    ("eval", "paretopo.evaluation.evaluate:EvalSettings"),
])
def test_demo_study_and_eval_options_are_generated_from_their_settings(command, settings_path):
    """Each command offers every field of its settings dataclass, with the field's help text."""
    import importlib
    from dataclasses import fields

    module, name = settings_path.split(":")
    settings_class = getattr(importlib.import_module(module), name)
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    options = {action.dest: action for action in parser._actions}
    for item in fields(settings_class):
        if item.metadata.get("flag") == "":
            continue
        assert item.name in options, item.name
        assert options[item.name].help.startswith(item.metadata["help"].replace("%", "%%")), item.name


def test_typed_values_reach_the_settings():
    from paretopo.commands.cli import _given_settings, _settings_from_args
    from paretopo.commands.demo import DemoSettings
    from paretopo.commands.study import StudySettings
    from paretopo.evaluation.evaluate import EvalSettings

    demo = _settings_from_args(DemoSettings, build_parser().parse_args(
        shlex.split("demo --steps 12 --no-parallel --seed 3 --generations 4")))
    assert (demo.max_steps, demo.parallel, demo.seed, demo.num_generations, demo.stage1_steps) == (12, False, 3, 4, 30)
    evaluation = _settings_from_args(EvalSettings, build_parser().parse_args(
        shlex.split("eval runs/x --split validation --samples 4 --by tier")))
    assert (evaluation.policy, evaluation.split, evaluation.samples, evaluation.by, evaluation.limit) == (
        "runs/x", "validation", 4, "tier", None)
    # the study keeps only what was typed, so --quick's own defaults are not overwritten
    given = _given_settings(StudySettings, build_parser().parse_args(shlex.split("study --quick --seeds 4 5")))
    assert given == {"quick": True, "seeds": (4, 5)}


def test_study_quick_takes_its_own_defaults_and_typed_values(tmp_path, monkeypatch):
    import paretopo.commands.study as study

    seen = {}
    monkeypatch.setattr(study, "run_study", lambda settings: seen.setdefault("settings", settings))
    assert main(["study", "--quick", "--out", str(tmp_path / "s"), "--steps", "3", "--seeds", "7"]) == 0
    settings = seen["settings"]
    assert (settings.quick, settings.seeds, settings.max_steps, settings.save_steps, settings.num_generations) == (
        True, (7,), 3, 3, 4)
    assert settings.out == str(tmp_path / "s")


def test_demo_verdict_and_its_reason():
    """The demo's claim (<= 0.7x the calls, accuracy within 2 points) and the measured reason it
    prints only when the claim fails by saving calls but not accuracy."""
    from paretopo.commands.demo import WHY_NOT, verdict, why_not

    baseline = {"accuracy": 0.98, "mean_tool_calls": 1.0}
    frugal_but_wrong = {"accuracy": 0.85, "mean_tool_calls": 0.33}
    assert verdict({"accuracy": 0.97, "mean_tool_calls": 0.6}, baseline)[0]
    assert why_not({"accuracy": 0.97, "mean_tool_calls": 0.6}, baseline) is None
    holds, text = verdict(frugal_but_wrong, baseline)
    assert not holds and text == "NOT the expected outcome: accuracy more than 2 points lower"
    assert why_not(frugal_but_wrong, baseline) == WHY_NOT["arithmetic"]
    assert why_not({"accuracy": 0.98, "mean_tool_calls": 1.2}, baseline) is None  # more calls: another failure
    assert why_not(frugal_but_wrong, baseline, task="lookup") == WHY_NOT["lookup"]  # each testbed's own reason
    assert "unknown entities" in WHY_NOT["lookup"] and why_not(frugal_but_wrong, baseline, task="math") is None
    just_over = verdict({"accuracy": 0.98, "mean_tool_calls": 0.702}, baseline)
    assert just_over == (False, "NOT the expected outcome: calls 0.702x the baseline's (claim: <= 0.7x)")


# Help before any heavy import (issue 26): the parser is built from light settings modules.


def test_building_the_parser_imports_no_torch_transformers_trl_peft_or_datasets():
    import subprocess
    import sys

    code = ("import sys; from paretopo.commands.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"]])
def test_help_is_fast(argv):
    """`paretopo --help` took 6-9 s (~6 s of CPU) when torch was imported first. The bound is on the
    child's CPU time, which other processes on a busy 2-core machine do not inflate as they do wall
    time; importing torch alone costs more than it."""
    import resource
    import subprocess
    import sys
    import time

    command = [sys.executable, "-c", "import sys; from paretopo.commands.cli import main; sys.exit(main(sys.argv[1:]))",
               *argv]
    subprocess.run(command, capture_output=True, timeout=120)  # warm the file cache once
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert result.returncode == 0 and "usage: paretopo" in result.stdout
    assert cpu < 1.5, f"paretopo {' '.join(argv)} took {cpu:.2f} s of CPU ({wall:.2f} s wall)"


# The max_tool_calls refusal and scoring with a run's own config, end to end.


def test_eval_of_a_run_scores_with_its_config_and_agrees_with_its_eval_parquet(tmp_path, capsys, monkeypatch):
    """`paretopo eval runs/X` and runs/X/eval.parquet (the final test evaluation) give the same
    obj_tool_efficiency: both score with the run's config, gated by correctness."""
    import json

    import numpy as np
    import polars as pl

    from paretopo.core.config import ParetoPOConfig
    from paretopo.core.objectives import OptimalCallTracker, score_completions
    from paretopo.evaluation.runlog import read_run

    run = tmp_path / "run"
    limit, tokens = "24", "96"
    built = []  # the method config is built once per run (it was built four times: cli, train twice, trainer)
    original = ParetoPOConfig.__post_init__
    monkeypatch.setattr(ParetoPOConfig, "__post_init__", lambda self: (built.append(self), original(self)))
    assert main(["train", "--run-dir", str(run), "--method", "torl_grpo", "--steps", "1", "--prompts", "2",
                 "--generations", "2", "--max-completion-length", tokens, "--validation-examples", "2",
                 "--test-examples", limit, "--train-examples", "8", "--no-checkpoint-eval", "--no-progress"]) == 0
    monkeypatch.undo()
    assert len(built) == 1 and built[0].method == "torl_grpo" and built[0].max_tool_calls == 2
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--limit", limit, "--max-new-tokens", tokens, "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    data = read_run(run)
    logged = data.evals.filter(pl.col("final") & (pl.col("split") == "test")).row(0, named=True)
    assert summary["n_completions"] == logged["n_completions"] == int(limit)
    assert summary["accuracy"] == pytest.approx(logged["accuracy"])
    assert summary["obj_tool_efficiency"] == pytest.approx(logged["obj_tool_efficiency"])
    assert summary["scoring"].startswith(f"{run}: ") and "gated by correctness" in summary["scoring"]
    # the agreement is not luck: ungated scoring (objective_matrix's old defaults) differs on these rows
    rows = data.eval_rows.filter(pl.col("split") == "test")
    assert 0 < rows["correct"].sum() < rows.height, "the check needs right and wrong answers"
    ungated = score_completions(rows["id"].to_list(), rows["correct"].cast(pl.Float64).to_numpy(),
                                rows["tool_calls"].to_numpy(), OptimalCallTracker(),
                                ParetoPOConfig(gate_tool_by_correctness=False, max_tool_calls=2))
    assert float(np.mean(ungated[:, 1])) != pytest.approx(summary["obj_tool_efficiency"])


def test_demo_table_says_its_frontier_hv_is_measured_on_validation():
    """The demo's table is titled "Test split", but its frontier HV is the validation checkpoints' one:
    the column and title say so (it used to read as a test number)."""
    from pathlib import Path

    from rich.console import Console

    from paretopo.commands.demo import results_table
    from paretopo.evaluation.evaluate import compare_runs

    fixtures = Path(__file__).resolve().parent / "fixtures" / "runs"
    summary, _ = compare_runs([str(fixtures / "paretopo"), str(fixtures / "torl_grpo")])
    results = {m: {"accuracy": 0.5, "mean_tool_calls": 1.0, "tool_productivity": 0.5} for m in summary["method"]}
    console = Console(width=200, record=True)
    console.print(results_table(summary, results))
    text = console.export_text()
    assert "frontier HV (validation)" in text and "frontier HV over the validation checkpoints" in text
    validation, _ = compare_runs([str(fixtures / "paretopo"), str(fixtures / "torl_grpo")], split="validation")
    assert all(f"{hv:.3f}" in text for hv in validation["frontier_hv"])


def test_demo_tier_prediction_comes_from_the_gamble_map():
    """The demo's per-tier prediction: the warm start's p against the exact break-even p* of
    ParetoPO's stage-2 estimator (paretopo.core.gamble)."""
    from paretopo.commands.demo import tier_prediction, warm_start_tiers

    tiers = warm_start_tiers("arithmetic")  # the shipped policy's record: p, c and q per tier
    assert sorted(tiers) == [1, 2, 3] and 0.3 <= tiers[2]["direct_accuracy"] <= 0.8
    prediction = tier_prediction(tiers[2]["direct_accuracy"], tiers[2]["tool_accuracy"], tiers[2]["calls_0"])
    assert "pushed up" in prediction and "p*=0.5" in prediction  # ranks: p* = 0.50 (docs/method.md, section 8)
    assert tier_prediction(0.9, 0.99, 0.5).endswith("direct answers pushed up")
    assert tier_prediction(0.2, 0.99, 0.5).endswith("calls pushed up")


def test_demo_predicts_each_tier_at_the_p_paretopo_met_in_stage_2():
    """The prediction is made at the p of ParetoPO's own sampled direct answers in stage 2 (the warm
    start's p is stale after practice): checked against a plain loop over the logged groups."""
    from pathlib import Path

    from paretopo.commands.demo import training_tiers
    from paretopo.evaluation.runlog import read_run
    from paretopo.tasks import get_task

    run = Path(__file__).resolve().parent / "fixtures" / "runs" / "paretopo"
    found = training_tiers(run, "arithmetic")
    tier_of = {example.id: example.metadata["tier"] for example in get_task("arithmetic").load("train")}
    rows = [r for r in read_run(run).groups.iter_rows(named=True) if r["stage"] == 2]
    assert found and set(found) <= {1, 2, 3}
    for tier, numbers in found.items():
        mine = [r for r in rows if tier_of.get(r["prompt_id"]) == tier]
        direct = [float(r["correct"]) for r in mine if r["tool_calls"] == 0]
        called = [float(r["correct"]) for r in mine if r["tool_calls"] > 0]
        assert numbers["calls_0"] == pytest.approx(len(direct) / len(mine))
        assert numbers["direct_accuracy"] == (pytest.approx(sum(direct) / len(direct)) if direct else None)
        assert numbers["tool_accuracy"] == (pytest.approx(sum(called) / len(called)) if called else None)
