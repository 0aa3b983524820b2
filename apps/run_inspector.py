import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="ParetoPO run inspector")

with app.setup:
    import json
    from pathlib import Path

    import altair as alt
    import marimo as mo
    import numpy as np
    import polars as pl

    from paretopo import plots
    from paretopo.advantages import compute_advantages
    from paretopo.config import ParetoPOConfig
    from paretopo.runlog import read_run

    CURVES = {
        "objectives (batch means)": ["objectives/task", "objectives/tool_efficiency"],
        "hypervolume of the stage-1 archive": ["pareto/hypervolume"],
        "stage-1 weighting": ["weights/meta_reward", "pareto/hv_gain", "pareto/ema_gain"],
        "tool calls and fronts": ["objectives/mean_tool_calls", "pareto/mean_fronts", "pareto/frac_nondominated"],
    }


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # ParetoPO run inspector

    Reads a run folder written by `paretopo train` / `paretopo demo` (`runs/<name>/`), also
    while the run is still writing. Start it with
    `marimo run apps/run_inspector.py -- --run runs/<name>`.
    """)
    return


@app.cell
def _():
    cli_run = mo.cli_args().get("run")
    runs_root = Path(mo.cli_args().get("runs-dir") or "runs")
    return cli_run, runs_root


@app.cell
def _(cli_run, runs_root):
    _found = sorted(p for p in runs_root.glob("*") if (p / "steps.parquet").exists() or (p / "config.json").exists())
    run_options = {str(p): str(p) for p in _found}
    if cli_run:
        run_options = {str(cli_run): str(cli_run), **run_options}
    run_choice = mo.ui.dropdown(options=run_options, value=next(iter(run_options), None),
                                label=f"run (folders under {runs_root}/)")
    run_typed = mo.ui.text(placeholder="or type a run folder path", label="", full_width=True)
    return run_choice, run_typed


@app.cell
def _(run_choice, run_typed):
    run_dir = run_typed.value.strip() or run_choice.value
    # A finished run has its final test evaluation logged; only a run still writing is re-read by default.
    _evals = Path(run_dir or "") / "eval.parquet"
    run_finished = _evals.exists() and pl.read_parquet(_evals, columns=["final"])["final"].any()
    refresh = mo.ui.refresh(options=["2s", "5s", "10s", "30s"], default_interval=None if run_finished else "5s",
                            label="re-read the run" + (" (finished)" if run_finished else " (still writing)"))
    mo.hstack([run_choice, run_typed, refresh], justify="start", align="end")
    return refresh, run_dir


@app.cell
def _(refresh, run_dir):
    refresh  # re-read the folder on every tick
    mo.stop(not run_dir, mo.callout(mo.md(
        "No run folder yet: train one (`paretopo demo`) or pass `-- --run runs/<name>`."), kind="info"))
    mo.stop(not Path(run_dir).is_dir(), mo.callout(mo.md(f"`{run_dir}` is not a folder."), kind="warn"))
    run = read_run(run_dir)
    mo.stop(run.steps.height == 0, mo.callout(mo.md(f"`{run_dir}` has no logged steps yet."), kind="info"))
    method = ParetoPOConfig.from_dict(run.config["method"]) if "method" in run.config else ParetoPOConfig()
    switch = plots.stage_switch_step(run.steps)
    return method, run, switch


@app.cell(hide_code=True)
def _(method, run, switch):
    _settings = run.config.get("settings", {})
    _stages = (f"stage 1 ({method.stage1_estimator}) until step {switch - 1}, then stage 2 "
               f"({method.stage2_estimator})" if switch else f"{method.estimator_for_stage(1)} throughout so far")
    mo.md(f"""
    **{run.name}** · method `{method.method}` · task `{run.config.get("task", "?")}` · model
    `{run.config.get("model", "?")}`  \n
    {run.last_step} steps logged (of {_settings.get("max_steps", "?")}), {_settings.get("prompts_per_step", "?")}
    prompts × G = {_settings.get("num_generations", "?")} per step; {_stages}; weights w = {method.weights}.
    """)
    return


@app.cell
def _(run, switch):
    mo.hstack([plots.metric_lines(run.steps, columns, title=title, switch=switch, width=380, height=170)
               for title, columns in CURVES.items()], wrap=True, justify="start", gap=1.5)
    return


@app.cell
def _():
    # The step and group the user picked survive re-reads of a growing run (None: the newest step, and
    # the group with the most distinct objective vectors).
    get_picked_step, set_picked_step = mo.state(None)
    get_picked_group, set_picked_group = mo.state(None)
    return get_picked_group, get_picked_step, set_picked_group, set_picked_step


@app.cell
def _(get_picked_step, run, set_picked_step):
    mo.stop(run.groups.height == 0, mo.callout(mo.md("No per-completion rows (groups/) logged yet."), kind="info"))
    _logged = sorted(run.groups["step"].unique().to_list())
    _picked = get_picked_step()
    step_picker = mo.ui.slider(steps=_logged, value=_picked if _picked in _logged else _logged[-1],
                               label="step", show_value=True, on_change=set_picked_step)
    return (step_picker,)


@app.cell
def _(get_picked_group, method, run, set_picked_group, step_picker):
    step_rows = run.groups.filter(pl.col("step") == step_picker.value).sort("group", "completion")
    _variety = (step_rows.group_by("group").agg(pl.struct([f"obj_{n}" for n in method.objectives]).n_unique().alias("n"))
                .sort(["n", "group"], descending=[True, False]))
    _groups = [str(g) for g in sorted(_variety["group"].to_list())]
    _picked = get_picked_group()
    group_picker = mo.ui.dropdown(options=_groups, value=_picked if _picked in _groups else str(_variety["group"][0]),
                                  label="group", on_change=set_picked_group)
    mo.hstack([step_picker, group_picker], justify="start", gap=2)
    return group_picker, step_rows


@app.cell
def _(method, run, step_picker, step_rows):
    # Recompute the step's advantages from its logged objective vectors with paretopo.advantages:
    # a mismatch would mean the run log and the estimator disagree.
    objective_columns = [f"obj_{name}" for name in method.objectives]
    group_size = int(step_rows.group_by("group").len()["len"].max())
    step_stage = int(step_rows["stage"][0])
    step_estimator = method.estimator_for_stage(step_stage)
    _meta = run.steps.filter(pl.col("step") == step_picker.value)["weights/meta_reward"]
    recomputed = compute_advantages(step_estimator, step_rows.select(objective_columns).to_numpy(), group_size,
                                    **method.estimator_options(step_stage, meta_reward=float(_meta[0])))
    consistent = bool(np.allclose(recomputed.advantages, step_rows["advantage"].to_numpy(), atol=1e-6)
                      and np.array_equal(recomputed.ranks, step_rows["rank"].to_numpy()))
    return consistent, objective_columns, step_estimator, step_stage


@app.cell
def _(group_picker, objective_columns, step_rows):
    group_rows = step_rows.filter(pl.col("group") == int(group_picker.value))
    group_chart = mo.ui.altair_chart(
        plots.objective_scatter(group_rows, x=objective_columns[0], y=objective_columns[1],
                                selection=alt.selection_point(fields=[objective_columns[0], objective_columns[1]]),
                                title="the group's objective vectors (click a point to filter the completions)",
                                width=320, height=260),
        chart_selection=False, legend_selection=False)
    return group_chart, group_rows


@app.cell
def _(consistent, group_chart, group_rows, step_estimator, step_stage):
    _bars = plots.advantage_bars(group_rows.with_columns(pl.lit(f"{step_estimator} (stage {step_stage})").alias("estimator")),
                                 facet=None, title="advantages used in training", width=260, height=260)
    _check = (mo.callout(mo.md(f"Logged ranks and advantages of this step match `paretopo.advantages` "
                               f"(`{step_estimator}`)."), kind="success") if consistent else
              mo.callout(mo.md(f"Logged ranks or advantages differ from `paretopo.advantages` (`{step_estimator}`) "
                               "recomputed on the logged objective vectors."), kind="danger"))
    mo.vstack([mo.hstack([group_chart, _bars], justify="start"), _check])
    return


@app.cell
def _(group_chart, group_rows, run, step_picker):
    _selected = group_chart.value
    _picked = (set(_selected["completions"].explode().to_list())
               if _selected is not None and len(_selected) else set(group_rows["completion"].to_list()))
    _group_size = int(group_rows.height)
    _samples = (run.samples.filter(pl.col("step") == step_picker.value)
                .with_columns((pl.col("row") % _group_size).alias("completion"))
                if run.samples.height else pl.DataFrame(schema={"group": pl.Int64, "completion": pl.Int64,
                                                                 "segments": pl.String}))
    shown_completions = (group_rows.filter(pl.col("completion").is_in(sorted(_picked)))
                         .join(_samples.select("group", "completion", "segments"), on=["group", "completion"], how="left"))
    return (shown_completions,)


@app.cell
def _(objective_columns, shown_completions):
    def _card(row):
        head = (f"**#{row['completion']}** · rank {row['rank']} · advantage {row['advantage']:+.3f} · "
                f"{row['tool_calls']} tool call(s) · {'correct' if row['correct'] else 'wrong'} · "
                + " · ".join(f"{c.removeprefix('obj_')} {row[c]:.3f}" for c in objective_columns))
        body = (mo.Html(plots.transcript_html(row["segments"])) if row["segments"] else
                mo.md("*text not kept: the run log stores the text of the first completions of each step only*"))
        return mo.vstack([mo.md(head), body])

    _legend = mo.Html(
        f'<div>Marked: <span style="{plots.TOOL_CALL_STYLE};padding:0 4px;display:inline-block">tool call</span> '
        f'<span style="{plots.TOOL_OUTPUT_STYLE};padding:0 4px;display:inline-block">tool output (written by the '
        "environment, masked from the loss)</span></div>")
    mo.vstack([mo.md("### Completions"), _legend, *[_card(r) for r in shown_completions.iter_rows(named=True)]])
    return


@app.cell(hide_code=True)
def _(run):
    mo.accordion({
        "run configuration (config.json)": mo.md(f"```json\n{json.dumps(run.config, indent=2)}\n```"),
        "stage-1 archive (archive.parquet)": mo.ui.table(run.archive, selection=None) if run.archive.height
        else mo.md("*empty*"),
        "evaluations (eval.parquet)": mo.ui.table(run.evals, selection=None) if run.evals.height else mo.md("*none yet*"),
    })
    return


if __name__ == "__main__":
    app.run()
