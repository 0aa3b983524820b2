"""Command line: ``paretopo demo | train | eval | compare | export | warmstart | showcase | gamble-map``.

Every sub-command has ``--help``. Long work shows progress bars (TRL's for training, tqdm for
evaluation); results print as tables and are written as JSON where a script would want them.

Bad input (a missing path, a count out of range, an unknown name or field) is checked before
any work starts: the command prints one line saying what to change, writes nothing and exits
with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from paretopo.commands.demo import DemoSettings
from paretopo.core.config import PRESETS
from paretopo.core.objectives import DEFAULT_OBJECTIVES


def _showcase(_: argparse.Namespace) -> int:
    from paretopo.commands import showcase

    showcase.run()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from paretopo.commands.demo import DEMO_TASKS, DemoSettings, run_demo

    settings = _settings_from_args(DemoSettings, args)
    if settings.task is not None and settings.task not in DEMO_TASKS:
        raise BadInput(f"--task {settings.task}: the demo runs {' or '.join(DEMO_TASKS)}")
    if Path(settings.runs_root).exists() and not Path(settings.runs_root).is_dir():
        raise BadInput(f"--runs {settings.runs_root} is a file; pass a folder for the run logs")
    if settings.name is not None and (Path(settings.runs_root) / settings.name).exists():
        raise BadInput(f"{Path(settings.runs_root) / settings.name} already exists; choose another --name")
    run_demo(settings)
    return 0


def _study(args: argparse.Namespace) -> int:
    from paretopo.commands.study import StudySettings, configurations, run_study

    given = _given_settings(StudySettings, args)  # the study's options leave out what was not typed
    base = StudySettings.quick_settings(given.get("out", StudySettings.out)) if given.get("quick") else StudySettings()
    settings = replace(base, **given)
    if "max_steps" in given and "save_steps" not in given:
        settings.save_steps = max(1, min(settings.save_steps, settings.max_steps))
    if len(set(settings.seeds)) != len(settings.seeds):
        raise BadInput(f"--seeds {' '.join(map(str, settings.seeds))} repeats a seed; give each seed once")
    if Path(settings.out).exists() and not Path(settings.out).is_dir():
        raise BadInput(f"--out {settings.out} is a file; pass a folder for the study's results")
    if settings.docs is not None and not Path(settings.docs).is_file():
        raise BadInput(f"--docs {settings.docs} is not a file; pass the markdown file whose study section to replace")
    names = [c.name for c in configurations(settings.quick)]
    unknown = sorted(set(settings.only or ()) - set(names))
    if unknown:
        raise BadInput(f"--only {' '.join(unknown)}: not a study configuration; choose from {', '.join(names)}")
    run_study(settings)
    return 0


def _gamble_map(args: argparse.Namespace) -> int:
    from paretopo.commands.gamble_map import GambleMapSettings, run_gamble_map
    from paretopo.core.config import ParetoPOConfig

    settings = _settings_from_args(GambleMapSettings, args)
    overrides = _parse_overrides(args.set)
    for name, value in _method_options(args).items():
        if name in overrides:
            raise BadInput(f"{_option_name(name)} and --set {name}=... both given; give one of them")
        overrides[name] = value
    if args.weights is not None:
        try:
            overrides["weights"] = tuple(float(w) for w in args.weights.split(","))
        except ValueError:
            raise BadInput(f"--weights {args.weights}: give two numbers separated by a comma, e.g. 0.6,0.4") from None
    run_gamble_map(settings, ParetoPOConfig(**overrides))  # a ValueError names every bad field
    return 0


class BadInput(ValueError):
    """A command-line value the user has to change; printed as one line, exit status 2."""


# Model weights a local model or adapter folder may hold (transformers / PEFT file names).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")


def _looks_local(name: str) -> bool:
    """Whether a --model / policy value is a local path rather than a hub id ("org/name")."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _check_model_source(flag: str, name: str) -> None:
    """A local model folder must exist and hold weights; it is never retried as a hub id."""
    path = Path(name).expanduser()
    if not path.exists():
        if _looks_local(name):
            raise BadInput(f"{flag} {name}: no such folder; pass an existing model folder or a hub id (org/name)")
        return  # a hub id
    if not path.is_dir():
        raise BadInput(f"{flag} {name} is a file; pass a model folder (config.json and weights) or a hub id")
    if not any((path / weights).exists() for weights in WEIGHT_FILES):
        raise BadInput(f"{flag} {name} holds no model weights ({' or '.join(WEIGHT_FILES[::2])}); "
                       "pass a folder written by save_pretrained")


def _check_output_file(flag: str, name: str | None) -> None:
    if name is None:
        return
    path = Path(name)
    if path.is_dir():
        raise BadInput(f"{flag} {name} is a folder; pass a file name such as {path / 'summary.json'}")
    if not path.parent.is_dir():
        raise BadInput(f"{flag} {name}: folder {path.parent} does not exist; create it or choose another path")


def _check_task(name: str, *splits: str | None) -> None:
    from paretopo.tasks import available_tasks, get_task

    if name not in available_tasks():
        raise BadInput(f"--task {name!r} is unknown; choose one of {', '.join(available_tasks())}")
    known = get_task(name).splits
    for split in splits:
        if split is not None and split not in known:
            raise BadInput(f"--split {split!r} is not a split of task {name!r}; choose one of {', '.join(known)}")


def _check_run_folder(name: str) -> None:
    """A run folder written by `paretopo train`, with a readable config and tables."""
    from paretopo.evaluation.runlog import read_run

    path = Path(name)
    if not path.is_dir():
        raise BadInput(f"{name}: no such run folder; pass runs/<name> as written by paretopo train")
    from paretopo.evaluation.runlog import run_paths

    if not run_paths(path).config.exists():
        raise BadInput(f"{name} has no config.json, so it is not a complete run folder; pass one written by "
                       "paretopo train")
    read_run(path)  # raises a one-line ValueError naming an unreadable (e.g. truncated) file


def _config_field_types() -> dict[str, typing.Any]:
    from paretopo.core.config import ParetoPOConfig

    return typing.get_type_hints(ParetoPOConfig)


def _fits(value: typing.Any, hint: typing.Any) -> bool:
    """Whether a JSON-decoded --set value fits a ParetoPOConfig field type."""
    args = typing.get_args(hint)
    if type(None) in args:  # "X | None"
        return value is None or any(_fits(value, a) for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _parse_overrides(pairs: list[str]) -> dict:
    """FIELD=VALUE pairs as ParetoPOConfig overrides (JSON values, else strings), type-checked."""
    types = _config_field_types()
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise BadInput(f"--set expects FIELD=VALUE (a ParetoPOConfig field), got {pair!r}")
        key, text = pair.split("=", 1)
        if key not in types:
            raise BadInput(f"--set {key}: unknown ParetoPOConfig field; known fields: {', '.join(sorted(types))}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if not _fits(value, types[key]):
            from paretopo.core.config import ParetoPOConfig

            hint = types[key]
            kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            example = json.dumps(ParetoPOConfig.__dataclass_fields__[key].default, separators=(",", ":"))
            raise BadInput(f"--set {key}={text}: {key} takes {kind}, e.g. --set {key}={example}")
        overrides[key] = tuple(value) if isinstance(value, list) else value
    return overrides


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).replace("\n  - ", "; ").split())


def _check_train(args: argparse.Namespace) -> dict:
    """The `train` options a plan does not check (counts, paths, the form of --set); returns the
    ParetoPOConfig overrides, which `paretopo.training.plan.plan_run` checks against the task."""
    from paretopo.training.plan import RunSettings

    _settings_from_args(RunSettings, args)  # every setting in its range (RunSettings.__post_init__)
    _check_task(args.task)
    if args.model is not None:
        _check_model_source("--model", args.model)
    overrides = _parse_overrides(args.set)
    for name, value in _method_options(args).items():
        if name in overrides:
            raise BadInput(f"{_option_name(name)} and --set {name}=... both given; give one of them")
        overrides[name] = value
    if args.objectives is not None:
        from paretopo.core.objectives import require_known_objectives

        overrides["objectives"] = require_known_objectives([n.strip() for n in args.objectives.split(",") if n.strip()])
    if args.weights is not None:
        try:
            overrides["weights"] = tuple(float(w) for w in args.weights.split(","))
        except ValueError:
            raise BadInput(f"--weights {args.weights}: give numbers separated by commas, e.g. 0.5,0.3,0.2") from None
    run_dir = Path(args.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInput(f"--run-dir {args.run_dir} is a file; pass a folder")
    return overrides


def _train(args: argparse.Namespace) -> int:
    from paretopo.training.plan import RunSettings, plan_run

    overrides = _check_train(args)
    # the run resolved once, before any model is loaded: a bad field or a conflict is one line here
    plan = plan_run(_settings_from_args(RunSettings, args), args.method, overrides=overrides, resume=args.resume)
    from paretopo.training.train import train_run

    result = train_run(plan)
    Console().print_json(json.dumps({"run_dir": str(result.run_dir), "method": result.method, "steps": result.steps,
                                     "test": result.test}, default=str))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from paretopo.evaluation.eval_settings import EvalSettings

    settings = _settings_from_args(EvalSettings, args)
    _check_task(settings.task, None if settings.data else settings.split)
    if settings.data and not Path(settings.data).is_file():
        raise BadInput(f"--data {settings.data}: no such file; pass a JSONL file with id, question, answer")
    _check_output_file("--out", settings.out)
    from paretopo.evaluation.runlog import run_paths

    source = Path(settings.policy)
    paths = run_paths(source)
    if source.is_dir() and paths.config.exists() and paths.steps.exists() and not paths.final.is_dir():
        raise BadInput(f"run folder {source} has no final/ model (did it finish?); pass one of its checkpoints, "
                       f"e.g. {paths.checkpoints / 'checkpoint-N'}")
    _check_model_source("policy", str(paths.final if paths.final.is_dir() else source))
    from paretopo.evaluation.evaluate import evaluate_saved_policy

    summary, _ = evaluate_saved_policy(settings)
    console = Console()
    console.print_json(json.dumps({key: value for key, value in summary.items() if key != "breakdown"}))
    if settings.by:
        _print_breakdown(console, summary["breakdown"], settings.by)
    if settings.out:
        Path(settings.out).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _print_breakdown(console: Console, rows: list[dict], column: str) -> None:
    table = Table(title=f"By {column}: accuracy without / with a tool call, and how many calls", title_justify="left")
    headers = {column: column, "accuracy": "accuracy", "direct_accuracy": "direct acc.", "tool_accuracy": "tool acc.",
               "mean_tool_calls": "mean calls", "calls_0": "0 calls", "calls_1": "1 call", "calls_2plus": ">=2 calls",
               "completions": "completions"}
    if rows and "greedy_accuracy" in rows[0]:  # --samples k: greedy decoding beside the sampled numbers
        headers |= {"greedy_accuracy": "greedy acc.", "greedy_mean_tool_calls": "greedy calls"}
    for header in headers.values():
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*(("-" if row[key] is None else f"{row[key]:.3f}") if isinstance(row[key], float) or row[key] is None
                        else str(row[key]) for key in headers))
    console.print(table)


def _compare(args: argparse.Namespace) -> int:
    from paretopo.evaluation.runlog import is_run_folder, list_runs

    # a folder of runs (e.g. a demo's runs/demo-<ts>) stands for every evaluated run under it
    runs = []
    for given in args.runs:
        found = [given] if is_run_folder(given) or not Path(given).is_dir() else list_runs(given, evaluated=True)
        if not found:
            raise BadInput(f"{given} holds no evaluated run; pass a run folder or a folder of runs written by "
                           "paretopo train or paretopo demo")
        runs += [str(p) for p in found]
    for run in runs:
        _check_run_folder(run)
    _check_output_file("--out", args.out)
    from paretopo.core.objectives import describe_scoring
    from paretopo.evaluation.evaluate import checkpoint_scoring, compare_runs
    from paretopo.evaluation.runlog import scoring_for

    scoring_for(args.scoring)  # a one-line error for an unknown name, before any table is read
    summary, dominance = compare_runs(runs, split=args.split, scoring=args.scoring)
    console = Console()
    console.print(f"Scored as {args.scoring} scores: {describe_scoring(checkpoint_scoring(runs, args.scoring))}",
                  markup=False, highlight=False)
    table = Table(title="Runs (efficiency on one shared n*)", title_justify="left")
    columns = ("method", "test_accuracy", "test_mean_tool_calls", "frontier_hv", "frontier_size", "checkpoints", "run")
    for column in columns:
        table.add_column(column, justify="right")
    for row in summary.iter_rows(named=True):
        table.add_row(*(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    console.print(table)
    console.print("Final test point of row dominates column:")
    console.print(dominance)
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary.to_dicts(), "dominance": dominance.to_dicts()},
                                             indent=2, default=str) + "\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    if not Path(args.source).exists():
        raise BadInput(f"{args.source}: no such folder; pass a run folder, its final/ folder or a checkpoint")
    from paretopo.evaluation.export import check_export_target, export_adapter

    check_export_target(args.source, args.out, overwrite=args.overwrite)  # before loading anything
    report = export_adapter(args.source, args.out, merged=args.merged, gguf=args.gguf, overwrite=args.overwrite)
    Console().print_json(json.dumps({"path": str(report.path), "verify": asdict(report.verify),
                                     "merged": str(report.merged_path) if report.merged_path else None,
                                     "gguf": str(report.gguf_path) if report.gguf_path else None}))
    return 0


def _warmstart(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise BadInput(f"--out {args.out} is a file; pass a folder for the policy")
    holds_a_policy = out is not None and any((out / weights).exists() for weights in WEIGHT_FILES)
    if out is not None and out.is_dir() and any(out.iterdir()) and not holds_a_policy:
        raise BadInput(f"--out {args.out} holds other files; pass a new folder or one holding a tiny policy")
    from paretopo.training.warmstart import main

    main(["--task", args.task] + (["--out", args.out] if args.out else []))
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what to change) instead of usage + error."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------------------
# `paretopo train` options, generated from RunSettings and ParetoPOConfig (one owner each)
# ------------------------------------------------------------------------------------------

# ParetoPOConfig fields with their own train option (or set by the task) rather than a generated one
_METHOD_FIELDS_NOT_GENERATED = frozenset({"method", "objectives", "weights", "max_tool_calls"})
_METHOD_DEST = "method__"


def _option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _value_parser(kind: Any) -> Callable[[str], Any]:
    """argparse type for ``int``, ``float``, ``str`` and ``X | None`` (the word ``none`` gives None)."""
    arguments = [a for a in typing.get_args(kind) if a is not type(None)]
    if arguments:  # X | None
        inner = arguments[0]

        def parse(text: str) -> Any:
            return None if text.lower() == "none" else inner(text)

        parse.__name__ = inner.__name__  # argparse names the type in its error
        return parse
    return kind


def _default_text(value: Any) -> str:
    return "none" if value is None else str(value)


def add_settings_options(parser: argparse.ArgumentParser, settings_class: type, *, given_only: bool = False) -> None:
    """One option per field of a settings dataclass declared with ``paretopo.core.settings.setting``.

    The help text, flag, type, choices and default all come from the field. ``given_only``: an
    option not typed leaves no attribute (the command starts from other settings, e.g. --quick).
    """
    for item in fields(settings_class):
        meta = item.metadata
        if "help" not in meta or meta.get("flag") == "":
            continue
        default = item.default if item.default is not MISSING else item.default_factory()
        kind, text = meta["kind"], meta["help"]
        said = default is None and "default:" in text  # the help already says what None means
        if meta.get("positional"):
            parser.add_argument(item.name, help=text)
            continue
        name = meta.get("flag") or _option_name(item.name)
        options: dict[str, Any] = {"dest": item.name, "default": argparse.SUPPRESS if given_only else default}
        if kind is bool:
            shown = "" if default is None else f" (default: {str(default).lower()})"
            parser.add_argument(name, action=argparse.BooleanOptionalAction, help=text + shown, **options)
            continue
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else _default_text(default)
        parser.add_argument(name, type=kind, nargs="+" if meta.get("many") else None, choices=meta.get("choices"),
                            metavar=None if meta.get("choices") else item.name.upper(),
                            help=(text if said else f"{text} (default: {shown})").replace("%", "%%"), **options)


def _given_settings(settings_class: type, args: argparse.Namespace) -> dict[str, Any]:
    """The settings fields present in ``args`` (checked when the settings are made: their
    ``__post_init__`` calls ``paretopo.core.settings.check_settings``)."""
    given = {}
    for item in fields(settings_class):
        if hasattr(args, item.name):
            value = getattr(args, item.name)
            given[item.name] = tuple(value) if item.metadata.get("many") and value is not None else value  # nargs="+"
    return given


def _settings_from_args(settings_class: type, args: argparse.Namespace) -> Any:
    return settings_class(**_given_settings(settings_class, args))


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """One option per ParetoPOConfig field (default: the preset's value), in their own help group."""
    from paretopo.core.config import OPTION_CHOICES, ParetoPOConfig

    group = parser.add_argument_group("method options (ParetoPOConfig; default: the --method preset's value, "
                                      "shown for paretopo)")
    hints = typing.get_type_hints(ParetoPOConfig)
    for item in fields(ParetoPOConfig):
        if item.name in _METHOD_FIELDS_NOT_GENERATED:
            continue
        text = f"{item.metadata['help']} (paretopo: {_default_text(item.default)})".replace("%", "%%")
        dest = _METHOD_DEST + item.name
        if hints[item.name] is bool:
            group.add_argument(_option_name(item.name), dest=dest, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=text)
        else:
            # SUPPRESS: an option not given leaves no attribute, so `--stage1-steps none` (None) is seen
            group.add_argument(_option_name(item.name), dest=dest, type=_value_parser(hints[item.name]),
                               default=argparse.SUPPRESS,
                               choices=OPTION_CHOICES.get(item.name), metavar=None if item.name in OPTION_CHOICES else
                               item.name.upper(), help=text)


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given on the command line (field -> value)."""
    return {dest.removeprefix(_METHOD_DEST): value for dest, value in vars(args).items()
            if dest.startswith(_METHOD_DEST)}


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="paretopo", description="ParetoPO: accurate and tool-frugal LLM agents.")
    commands = parser.add_subparsers(dest="command", required=True)

    # settings live in light modules: building the parser (and --help) imports no torch
    from paretopo.agent import TINY_POLICY_FOLDERS
    from paretopo.commands.study import StudySettings
    from paretopo.evaluation.eval_settings import EvalSettings
    from paretopo.training.plan import RunSettings

    demo = commands.add_parser("demo", help="the CPU demo: ParetoPO vs accuracy-only GRPO on the tiny policy")
    add_settings_options(demo, DemoSettings)
    demo.set_defaults(handler=_demo)

    study = commands.add_parser("study", help="every method and ablation, several seeds: the results folder")
    add_settings_options(study, StudySettings, given_only=True)
    study.set_defaults(handler=_study)

    train = commands.add_parser("train", help="train one method on one task")
    train.add_argument("--method", default="paretopo", choices=sorted(PRESETS),
                       help="method preset: a baseline, ParetoPO or an ablation (default: paretopo)")
    add_settings_options(train, RunSettings)
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    train.add_argument("--objectives", default=None, metavar="NAMES",
                       help="objectives, comma-separated, all maximised, e.g. task,tool_efficiency,brevity "
                            f"(default: {','.join(DEFAULT_OBJECTIVES)})")
    train.add_argument("--weights", default=None, metavar="W",
                       help="preference weights, one per objective, comma-separated (default: 0.6,0.4)")
    train.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                       help="ParetoPOConfig overrides, e.g. --set beta=0.3 stage2_center=group_mean "
                            "(the same as the method options below)")
    add_method_options(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("eval", help="evaluate a run, checkpoint, adapter or model")
    add_settings_options(evaluate, EvalSettings)
    evaluate.set_defaults(handler=_eval)

    compare = commands.add_parser("compare", help="several runs side by side: test numbers, frontiers, dominance")
    compare.add_argument("runs", nargs="+")
    compare.add_argument("--split", default="validation", help="split of the checkpoint evaluations")
    compare.add_argument("--scoring", default="paretopo", metavar="NAME",
                         help="how every run is re-scored: a method preset or a run folder (its config); "
                              "default: paretopo (tool efficiency gated by correctness)")
    compare.add_argument("--out", default=None, help="also write JSON here")
    compare.set_defaults(handler=_compare)

    export = commands.add_parser("export", help="export and verify a LoRA adapter (optionally merged / GGUF)")
    export.add_argument("source", help="a run folder, its final/ folder or a checkpoint")
    export.add_argument("out", help="export folder")
    export.add_argument("--merged", action="store_true", help="also write merged 16-bit weights")
    export.add_argument("--gguf", action="store_true", help="also write GGUF (Unsloth on CUDA; best-effort)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace the export folder if it holds an earlier export (and nothing else)")
    export.set_defaults(handler=_export)

    warm = commands.add_parser("warmstart", help="(re)build a warm-started tiny CPU policy")
    warm.add_argument("--task", default="arithmetic", choices=list(TINY_POLICY_FOLDERS),
                      help="its task (default: arithmetic)")
    warm.add_argument("--out", default=None, help="output folder (default: data/tiny_policy, "
                                                  "data/tiny_policy_lookup for --task lookup)")
    warm.set_defaults(handler=_warmstart)

    commands.add_parser("showcase", help="a tour of Pareto ranks, advantages and the stage-1 meta reward").set_defaults(
        handler=_showcase)

    from paretopo.commands.gamble_map import GambleMapSettings  # light: dataclass and settings only

    gamble = commands.add_parser("gamble-map", help="where each estimator pushes 'answer directly or call the "
                                                    "tool': the exact break-even p*, and the curves")
    add_settings_options(gamble, GambleMapSettings)
    gamble.add_argument("--weights", default=None, metavar="W",
                        help="preference weights (task, tool efficiency), comma-separated (default: 0.6,0.4)")
    gamble.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="ParetoPOConfig overrides, e.g. --set beta=0.3 (the same as the method options below)")
    add_method_options(gamble)
    gamble.set_defaults(handler=_gamble_map)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, OSError, RuntimeError) as error:
        # expected failures (bad input, missing files, failed verification): say what to change
        Console(stderr=True, soft_wrap=True).print(f"paretopo {args.command}: {_one_line(error)}", style="red",
                                                   markup=False, highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())

