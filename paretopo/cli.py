"""Command line: ``paretopo demo | train | eval | compare | export | warmstart | showcase``.

Every sub-command has ``--help``. Long work shows progress bars (TRL's for training, tqdm for
evaluation); results print as tables and are written as JSON where a script would want them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from paretopo.config import PRESETS
from paretopo.demo import DemoSettings


def _showcase(_: argparse.Namespace) -> int:
    from paretopo import showcase

    showcase.run()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from paretopo.demo import DemoSettings, run_demo

    run_demo(DemoSettings(runs_root=args.runs, name=args.name, max_steps=args.steps, stage1_steps=args.stage1_steps,
                          seed=args.seed, test_examples=args.test_examples, parallel=not args.sequential))
    return 0


def _parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects FIELD=VALUE (a ParetoPOConfig field), got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
        if isinstance(overrides[key], list):
            overrides[key] = tuple(overrides[key])
    return overrides


def _train(args: argparse.Namespace) -> int:
    from paretopo.train import RunSettings, train_run

    settings = RunSettings(run_dir=args.run_dir, task=args.task, model=args.model, seed=args.seed,
                           max_steps=args.steps, prompts_per_step=args.prompts, num_generations=args.generations,
                           learning_rate=args.lr, max_completion_length=args.max_completion_length,
                           save_steps=args.save_steps, lora=False if args.no_lora else (True if args.lora else None), max_tool_calls=args.max_tool_calls)
    result = train_run(args.method, settings, method_overrides=_parse_overrides(args.set), resume=args.resume)
    Console().print_json(json.dumps({"run_dir": str(result.run_dir), "method": result.method, "steps": result.steps,
                                     "test": result.test}, default=str))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from paretopo.evaluate import evaluate_policy
    from paretopo.models import load_adapter, load_policy
    from paretopo.tasks import get_task
    from paretopo.tasks.base import read_jsonl_examples

    source = Path(args.policy)
    if (source / "final").is_dir():
        source = source / "final"
    if (source / "adapter_config.json").exists():
        model, tokenizer = load_adapter(source)
    else:
        model, tokenizer = load_policy(str(source), lora=False)
    task = get_task(args.task)
    examples = read_jsonl_examples(args.data) if args.data else task.load(args.split)
    result = evaluate_policy(model, tokenizer, task, examples[: args.limit], num_samples=args.samples,
                             greedy=args.samples == 1, max_new_tokens=args.max_new_tokens,
                             tools_in_prompt=args.tools_in_prompt)
    summary = {"policy": str(source), "task": task.name, "split": args.data or args.split, **result.as_dict()}
    console = Console()
    console.print_json(json.dumps(summary))
    if args.by:
        summary["breakdown"] = _breakdown(result.rows, args.by)
        _print_breakdown(console, summary["breakdown"], args.by)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _breakdown(rows, column: str) -> list[dict]:
    """Accuracy (direct and with a tool) and the call distribution per value of ``column``."""
    from paretopo.evaluate import behaviour_table

    return behaviour_table(rows, column).to_dicts()


def _print_breakdown(console: Console, rows: list[dict], column: str) -> None:
    table = Table(title=f"By {column}: accuracy without / with a tool call, and how many calls", title_justify="left")
    headers = {column: column, "accuracy": "accuracy", "direct_accuracy": "direct acc.", "tool_accuracy": "tool acc.",
               "mean_tool_calls": "mean calls", "calls_0": "0 calls", "calls_1": "1 call", "calls_2plus": ">=2 calls",
               "completions": "completions"}
    for header in headers.values():
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*(("-" if row[key] is None else f"{row[key]:.3f}") if isinstance(row[key], float) or row[key] is None
                        else str(row[key]) for key in headers))
    console.print(table)


def _compare(args: argparse.Namespace) -> int:
    from paretopo.evaluate import compare_runs
    from paretopo.runlog import is_run_folder, list_runs

    # a folder of runs (e.g. a demo's runs/demo-<ts>) stands for every evaluated run under it
    runs = [str(p) for given in args.runs for p in ([given] if is_run_folder(given) else list_runs(given, evaluated=True))]
    if not runs:
        print(f"no evaluated runs in {' '.join(args.runs)}", file=sys.stderr)
        return 1
    summary, dominance = compare_runs(runs, split=args.split)
    console = Console()
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

    from paretopo.export import export_adapter

    report = export_adapter(args.source, args.out, merged=args.merged, gguf=args.gguf)
    Console().print_json(json.dumps({"path": str(report.path), "verify": asdict(report.verify),
                                     "merged": str(report.merged_path) if report.merged_path else None,
                                     "gguf": str(report.gguf_path) if report.gguf_path else None}))
    return 0


def _warmstart(args: argparse.Namespace) -> int:
    from paretopo.warmstart import main

    main(["--out", args.out] if args.out else [])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paretopo", description="ParetoPO: accurate and tool-frugal LLM agents.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="the CPU demo: ParetoPO vs accuracy-only GRPO on the tiny policy")
    demo.add_argument("--runs", default="runs", help="folder for run logs (default: runs)")
    demo.add_argument("--name", default=None, help="demo folder name (default: demo-<timestamp>)")
    demo.add_argument("--steps", type=int, default=DemoSettings.max_steps,
                      help=f"optimiser steps per method (default {DemoSettings.max_steps})")
    demo.add_argument("--stage1-steps", type=int, default=DemoSettings.stage1_steps,
                      help=f"ParetoPO stage-1 steps (default {DemoSettings.stage1_steps})")
    demo.add_argument("--seed", type=int, default=0, help="seed of both runs (default 0)")
    demo.add_argument("--sequential", action="store_true", help="train the two methods one after the other")
    demo.add_argument("--test-examples", type=int, default=None, help="evaluate on the first N test questions")
    demo.set_defaults(handler=_demo)

    train = commands.add_parser("train", help="train one method on one task")
    train.add_argument("--method", default="paretopo", choices=sorted(PRESETS))
    train.add_argument("--task", default="arithmetic")
    train.add_argument("--model", default=None, help="hub id or local path (default: the shipped tiny policy)")
    train.add_argument("--run-dir", default="runs/paretopo")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--steps", type=int, default=40)
    train.add_argument("--prompts", type=int, default=8, help="prompts per step")
    train.add_argument("--generations", type=int, default=8, help="completions per prompt (G)")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default: 3e-4 for full fine-tuning of the tiny policy, 2e-3 for LoRA)")
    train.add_argument("--max-completion-length", type=int, default=160)
    train.add_argument("--max-tool-calls", type=int, default=None, help="tool budget (default: the task's)")
    train.add_argument("--save-steps", type=int, default=10)
    lora = train.add_mutually_exclusive_group()
    lora.add_argument("--lora", action="store_true", help="train LoRA adapters (default for any --model)")
    lora.add_argument("--no-lora", action="store_true",
                      help="train all weights (default for the shipped tiny policy)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    train.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                       help="ParetoPOConfig overrides, e.g. --set beta=0.3 stage2_center=group_mean")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("eval", help="evaluate a run, checkpoint, adapter or model")
    evaluate.add_argument("policy", help="a run folder, checkpoint, exported adapter or model folder")
    evaluate.add_argument("--task", default="arithmetic")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--data", default=None, help="a JSONL file with id, question, answer (instead of --split)")
    evaluate.add_argument("--limit", type=int, default=None)
    evaluate.add_argument("--samples", type=int, default=1, help="completions per question (1 = greedy)")
    evaluate.add_argument("--max-new-tokens", type=int, default=160)
    evaluate.add_argument("--tools-in-prompt", action="store_true", help="render the tools block (real chat models)")
    evaluate.add_argument("--by", default=None, metavar="COLUMN",
                          help="also break accuracy down by an example field (e.g. tier) and tool use")
    evaluate.add_argument("--out", default=None, help="also write the JSON summary here")
    evaluate.set_defaults(handler=_eval)

    compare = commands.add_parser("compare", help="several runs side by side: test numbers, frontiers, dominance")
    compare.add_argument("runs", nargs="+")
    compare.add_argument("--split", default="validation", help="split of the checkpoint evaluations")
    compare.add_argument("--out", default=None, help="also write JSON here")
    compare.set_defaults(handler=_compare)

    export = commands.add_parser("export", help="export and verify a LoRA adapter (optionally merged / GGUF)")
    export.add_argument("source", help="a run folder, its final/ folder or a checkpoint")
    export.add_argument("out", help="export folder")
    export.add_argument("--merged", action="store_true", help="also write merged 16-bit weights")
    export.add_argument("--gguf", action="store_true", help="also write GGUF (Unsloth on CUDA; best-effort)")
    export.set_defaults(handler=_export)

    warm = commands.add_parser("warmstart", help="(re)build the warm-started tiny CPU policy")
    warm.add_argument("--out", default=None, help="output folder (default: data/tiny_policy)")
    warm.set_defaults(handler=_warmstart)

    commands.add_parser("showcase", help="a tour of Pareto ranks, advantages and the stage-1 meta reward").set_defaults(
        handler=_showcase)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        # expected failures (bad input, missing files, failed verification): say what to change
        Console(stderr=True).print(f"[red]paretopo {args.command}: {error}[/red]")
        return 2


if __name__ == "__main__":
    sys.exit(main())

