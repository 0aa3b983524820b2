import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="ParetoPO frontier comparison")

with app.setup:
    import html
    from pathlib import Path

    import altair as alt
    import marimo as mo
    import polars as pl

    from paretopo.core.objectives import describe_scoring
    from paretopo.evaluation import display, plots
    from paretopo.evaluation.evaluate import checkpoint_points, checkpoint_scoring, compare_runs
    from paretopo.evaluation.runlog import OBJECTIVE_PREFIX, list_runs, read_run

    SCORING = "paretopo"  # every run is re-scored as this method scores (paretopo.evaluation.runlog.scoring_for)


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # Comparing runs: checkpoint frontiers

    Every evaluated checkpoint of a run is a point (mean task correctness, mean tool efficiency).
    Tool efficiency depends on n\*, the fewest tool calls of a correct answer to each question, and
    each run tracks its own; here n\* is shared: the fewest calls of a correct answer in *any*
    evaluation of *any* selected run, and every checkpoint is re-scored with it
    (`paretopo.evaluation.evaluate.checkpoint_points`). A run's frontier is its non-dominated checkpoints;
    its hypervolume (from the origin), cardinality and spread summarise it. Start with
    `marimo run apps/frontier_compare.py -- --runs-dir runs`.
    """)
    return


@app.cell
def _():
    runs_root = Path(mo.cli_args().get("runs-dir") or "runs")
    return (runs_root,)


@app.cell
def _(runs_root):
    # runs at any depth (a demo writes runs/demo-<ts>/<method>/), labelled by their path below the root
    _found = list_runs(runs_root, evaluated=True)
    _evaluated = {(p.relative_to(runs_root).as_posix() if p != runs_root and p.is_relative_to(runs_root)
                   else p.name): str(p) for p in _found}
    run_picker = mo.ui.multiselect(options=_evaluated, value=default_runs(list(_evaluated), runs_root), label="runs")
    split_picker = mo.ui.dropdown(options=["validation", "test"], value="validation", label="frontier split")
    mo.vstack([mo.hstack([run_picker, split_picker], justify="start", gap=2),
               mo.md(f"*{len(_evaluated)} evaluated run(s) found under `{runs_root}/` (at any depth).*")])
    return run_picker, split_picker


@app.function
def run_label(run, runs_root):
    """A run's name as the picker shows it: its path below --runs-dir."""
    return run.relative_to(runs_root).as_posix() if run != runs_root and run.is_relative_to(runs_root) else run.name


@app.function
def default_runs(labels, runs_root):
    """What is selected at first: a study's main methods (first seed), else the first six runs."""
    import json

    record = runs_root.parent / "study.json"  # paretopo study writes <out>/study.json beside <out>/runs/
    if runs_root.name == "runs" and record.is_file():
        try:
            study = json.loads(record.read_text())
            seed = min(study["settings"]["seeds"])
            wanted = [f"{c['name']}/seed{seed}" for c in study["configurations"] if c["table"] == "methods"]
            chosen = [label for label in wanted if label in labels]
            if chosen:
                return chosen
        except (ValueError, KeyError, TypeError):
            pass  # not a study record after all: fall back
    return labels[:6]


@app.cell
def _(run_picker, runs_root, split_picker):
    _offered = len(run_picker.options)  # what the picker lists, so this sentence agrees with the count above it
    mo.stop(not run_picker.value, mo.callout(mo.md(
        f"No run selected: pick one or more of the {_offered} evaluated run(s) in the list above." if _offered else
        f"No evaluated runs selected (looked under `{runs_root}/`, which "
        + ("holds none" if runs_root.is_dir() else "does not exist")
        + "): train some (`paretopo demo` trains two) or pass `-- --runs-dir <folder>`."), kind="info"))
    try:
        points = checkpoint_points(run_picker.value, scoring=SCORING)
        summary, dominance = compare_runs(run_picker.value, split=split_picker.value, scoring=SCORING)
    except Exception as error:  # a run whose evaluation tables are incomplete or of another version
        mo.stop(True, mo.callout(mo.md(f"The selected runs could not be compared ({type(error).__name__}: {error}); "
                                       "deselect the run that was last written, or re-run `paretopo eval` on it."),
                                 kind="danger"))
    mo.stop(points.height == 0, mo.callout(mo.md(
        "The selected runs have no evaluated checkpoints yet (`eval_rows/` is empty): evaluate them with "
        "`paretopo eval <run>`."), kind="info"))
    mo.md(f"Scored as the `{SCORING}` method scores: "
          f"{describe_scoring(checkpoint_scoring(run_picker.value, scoring=SCORING))}.")
    return dominance, points, summary


@app.cell
def _(points):
    # with M > 2 objectives the chart is one pairwise projection at a time, picked here
    _columns = [c for c in points.columns if c.startswith(OBJECTIVE_PREFIX)]
    _pairs = {f"{a.removeprefix(OBJECTIVE_PREFIX)} × {b.removeprefix(OBJECTIVE_PREFIX)}": (a, b)
              for i, a in enumerate(_columns) for b in _columns[i + 1:]}
    pair_picker = mo.ui.dropdown(options=_pairs, value=next(iter(_pairs)), label="objectives drawn")
    pair_picker if len(_pairs) > 1 else None
    return (pair_picker,)


@app.cell
def _(pair_picker, points, split_picker):
    _x, _y = pair_picker.value
    frontier_plot = mo.ui.altair_chart(
        plots.frontier_chart(points, split=split_picker.value, x=_x, y=_y,
                             selection=alt.selection_point(fields=["run", "step", "split"])),
        chart_selection=False, legend_selection=False)
    frontier_plot
    return (frontier_plot,)


@app.cell
def _(dominance, split_picker, summary):
    _names = plots.run_labels(summary["run"].to_list())

    def _short(run):
        return _names.get(run, Path(run).name)

    _table = display.rounded_for_display(summary.select(
        "method", pl.col("frontier_hv").alias(f"frontier HV ({split_picker.value})"),
        pl.col("frontier_size").alias("cardinality"), pl.col("frontier_spread").alias("spread"),
        "checkpoints", "test_accuracy", "test_mean_tool_calls",
        *(c for c in summary.columns if c.startswith("test_obj_")),
        pl.col("run").map_elements(_short, return_dtype=pl.String)), 4)
    _dominance = dominance.select(
        pl.col("run").map_elements(_short, return_dtype=pl.String).alias("final test point of ↓ dominates →"),
        *[pl.col(run).alias(_short(run)) for run in dominance.columns[1:]])
    mo.vstack([
        mo.md("### Per run"), mo.ui.table(_table, selection=None, show_column_summaries=False),
        mo.md("### Dominance between the runs' final test points"),
        mo.ui.table(_dominance, selection=None, show_column_summaries=False),
    ])
    return


@app.cell
def _(frontier_plot, points):
    # The clicked checkpoint, or the first run's final test point before any click.
    # the chart layers several datasets, so marimo cannot hand back its rows: filter the points by the click
    _clicked = frontier_plot.apply_selection(points) if frontier_plot.selections else None
    _finals = points.filter(pl.col("final"))
    _source = _clicked if _clicked is not None and len(_clicked) else (_finals if _finals.height else points)
    chosen_point = _source.row(0, named=True)
    _rows = read_run(chosen_point["run"]).eval_rows
    chosen_rows = _rows.filter((pl.col("step") == chosen_point["step"]) & (pl.col("split") == chosen_point["split"]))
    return chosen_point, chosen_rows


@app.cell
def _(chosen_point, chosen_rows, runs_root):
    _columns = [c for c in ("correct", "tool_calls", "question", "answer", "final_answer",
                            *(c for c in chosen_rows.columns if c.startswith(OBJECTIVE_PREFIX)), "tool_errors",
                            "finish_reason") if c in chosen_rows.columns]
    _samples = [mo.vstack([mo.Html(f"<div><b>{html.escape(str(row['question']))}</b> (answer "
                                   f"{html.escape(str(row['answer']))}) · {'correct' if row['correct'] else 'wrong'} · "
                                   f"{row['tool_calls']} tool call(s)</div>"),
                           mo.Html(display.transcript_html([{"text": row["text"] or "", "tool_output": False}]))])
                for row in chosen_rows.head(8).iter_rows(named=True)]
    mo.vstack([
        mo.md(f"### Samples of {run_label(Path(chosen_point['run']), runs_root)}, step {chosen_point['step']}, "
              f"{chosen_point['split']} (click a checkpoint above to change)"),
        mo.ui.table(display.display_table(chosen_rows.select(_columns)), selection=None, show_column_summaries=False),
        mo.Html(display.transcript_legend_html()),
        *(_samples or [mo.md("*No evaluated completions were logged for this checkpoint.*")]),
    ])
    return


if __name__ == "__main__":
    app.run()
