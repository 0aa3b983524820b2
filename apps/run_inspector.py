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

    from paretopo.core.advantages import compute_advantages
    from paretopo.core.config import ParetoPOConfig
    from paretopo.evaluation import display, plots
    from paretopo.evaluation.runlog import (
        OBJECTIVE_PREFIX,
        is_run_folder,
        list_runs,
        read_run,
        run_paths,
    )
    from paretopo.tasks import get_task

    CURVES = {
        "objectives (batch means)": ["objectives/task", "objectives/tool_efficiency"],
        "hypervolume of the stage-1 archive": ["pareto/hypervolume"],
        "stage-1 weighting": ["weights/meta_reward", "pareto/hv_gain", "pareto/ema_gain"],
        "tool calls and fronts": ["objectives/mean_tool_calls", "pareto/mean_fronts", "pareto/frac_nondominated"],
    }
    STAGE1_CURVES = ("hypervolume of the stage-1 archive", "stage-1 weighting")
    _EXAMPLES = {}

    def find_example(prompt_id, task_name=None):
        """The question and gold answer of a logged prompt id (``arithmetic-train-00044``), or None: the run
        log stores ids only, so the question is looked up in the task's split (the id's prefix names both)."""
        parts = str(prompt_id).rsplit("-", 2)
        candidates = [(parts[0], parts[1])] if len(parts) == 3 else []
        candidates += [(task_name, None)] if task_name else []
        for name, split in candidates:
            key = (name, split)
            if key not in _EXAMPLES:
                try:
                    task = get_task(name)
                    splits = [split] if split else task.splits()
                    _EXAMPLES[key] = {e.id: e for part in splits for e in task.load(part)}
                except Exception:  # not a task of this install, or its data is missing: no lookup
                    _EXAMPLES[key] = {}
            if prompt_id in _EXAMPLES[key]:
                return _EXAMPLES[key][prompt_id]
        return None


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
    _found = list_runs(runs_root)  # at any depth: a demo writes runs/demo-<ts>/<method>/
    run_options = {str(p): str(p) for p in _found}
    if cli_run:
        run_options = {str(cli_run): str(cli_run), **run_options}
    run_choice = mo.ui.dropdown(options=run_options, value=next(iter(run_options), None),
                                label=f"run ({len(_found)} found under {runs_root}/)")
    run_typed = mo.ui.text(placeholder="or type a run folder path", label="", full_width=True)
    return run_choice, run_typed


@app.cell
def _(run_choice, run_typed):
    run_dir = run_typed.value.strip() or run_choice.value
    # A finished run has its final test evaluation logged; only an existing run still writing is re-read by
    # default (a missing or mistyped folder is not polled).
    _evals = run_paths(run_dir or "").evals
    try:
        run_finished = _evals.exists() and bool(pl.read_parquet(_evals, columns=["final"])["final"].any())
    except Exception:  # an eval table without the column (older runs): treat it as finished
        run_finished = _evals.exists()
    run_writing = bool(run_dir) and is_run_folder(run_dir) and not run_finished
    refresh = mo.ui.refresh(options=["2s", "5s", "10s", "30s"], default_interval="5s" if run_writing else None,
                            label="re-read the run" + (" (still writing)" if run_writing else
                                                       " (finished)" if run_finished else ""))
    # the typed path on a row of its own: squeezed beside the picker it was ~140 px wide, its hint cut off
    mo.vstack([mo.hstack([run_choice, refresh], justify="start", align="end"), run_typed])
    return refresh, run_dir


@app.cell
def _(refresh, run_dir):
    refresh  # re-read the folder on every tick
    mo.stop(not run_dir, mo.callout(mo.md(
        "No run folder yet: train one (`paretopo demo`) or pass `-- --run runs/<name>` "
        "(or `-- --runs-dir <folder>` to list every run under a folder)."), kind="info"))
    mo.stop(not Path(run_dir).is_dir(), mo.callout(mo.md(
        f"There is no folder `{run_dir}` (relative paths start at `{Path.cwd()}`): check the path, or pick a run "
        "from the list."), kind="warn"))
    mo.stop(not is_run_folder(run_dir), mo.callout(mo.md(
        f"`{run_dir}` is a folder but not a run log (no `config.json` or `steps.parquet`)"
        + (f"; it holds {len(list_runs(run_dir))} run(s): pick one from the list after restarting with "
           f"`-- --runs-dir {run_dir}`." if list_runs(run_dir) else ".")), kind="warn"))
    try:
        run = read_run(run_dir)
        method = ParetoPOConfig.from_dict(run.config["method"]) if "method" in run.config else ParetoPOConfig()
    except Exception as error:  # a table half-copied by hand, a config of another version: say so
        mo.stop(True, mo.callout(mo.md(f"`{run_dir}` could not be read ({type(error).__name__}: {error})."),
                                 kind="danger"))
    mo.stop(run.steps.height == 0, mo.callout(mo.md(f"`{run_dir}` has no logged steps yet."), kind="info"))
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
def _(method, run, switch):
    # a run without stage 1's archive (every baseline, no_stage1) has nothing to draw in its panels
    _curves = {title: columns for title, columns in CURVES.items()
               if method.uses_meta_reward or title not in STAGE1_CURVES}
    _curves["objectives (batch means)"] = [f"objectives/{name}" for name in run.objectives]  # M of them
    mo.hstack([plots.metric_lines(run.steps, columns, title=title, switch=switch, width=340, height=170)
               for title, columns in _curves.items()], wrap=True, justify="start", gap=1.5)
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
                               label="step", show_value=True, debounce=True, on_change=set_picked_step)
    return (step_picker,)


@app.cell
def _(get_picked_group, method, run, set_picked_group, step_picker):
    step_rows = run.groups.filter(pl.col("step") == step_picker.value).sort("group", "completion")
    # default group: the most distinct objective vectors (the most to learn from), then one whose text was logged
    _kept = (set(run.samples.filter(pl.col("step") == step_picker.value)["group"].to_list())
             if run.samples.height else set())
    _variety = (step_rows.group_by("group").agg(pl.struct([f"obj_{n}" for n in method.objectives]).n_unique().alias("n"))
                .with_columns(pl.col("group").is_in(sorted(_kept)).alias("kept"))
                .sort(["n", "kept", "group"], descending=[True, True, False]))
    distinct_vectors = dict(zip(_variety["group"].to_list(), _variety["n"].to_list(), strict=True))
    _groups = [str(g) for g in sorted(distinct_vectors)]
    _picked = get_picked_group()
    _labels = {g: f"{g} · " + ("degenerate: all vectors equal" if distinct_vectors[int(g)] == 1 else
                               f"{distinct_vectors[int(g)]} distinct vectors")
               + ("" if int(g) in _kept else " (text not logged)") for g in _groups}
    _default = _picked if _picked in _groups else str(_variety["group"][0])
    group_picker = mo.ui.dropdown(options={label: g for g, label in _labels.items()}, value=_labels[_default],
        label="group", on_change=set_picked_group)
    _degenerate = sum(n == 1 for n in distinct_vectors.values())
    mo.vstack([mo.hstack([step_picker, group_picker], justify="start", gap=2),
               mo.md(f"*{_degenerate} of {len(distinct_vectors)} groups at step {step_picker.value} are degenerate "
                     "(every completion the same objective vector: no learning signal).*")])
    return distinct_vectors, group_picker, step_rows


@app.cell
def _(method, run, step_picker, step_rows):
    # Recompute the step's advantages from its logged objective vectors with paretopo.core.advantages:
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
def _(group_picker, objective_columns, run, step_rows):
    group_rows = step_rows.filter(pl.col("group") == int(group_picker.value))
    _prompt = group_rows["prompt_id"][0] if "prompt_id" in group_rows.columns else None
    group_example = find_example(_prompt, run.config.get("task")) if _prompt is not None else None
    _nstar = group_rows["nstar"][0] if "nstar" in group_rows.columns else None
    _nstar_text = ("unknown (no correct completion yet)" if _nstar is None or _nstar != _nstar else f"{_nstar:g}")
    group_header = mo.md(
        (f"**Question** ({_prompt}): {group_example.question} · **gold answer** `{group_example.answer}`"
         if group_example is not None else
         f"**Question**: prompt `{_prompt}` (its text is not in the run log, and the task "
         f"`{run.config.get('task', '?')}` could not look it up)")
        + f" · n\\* = {_nstar_text}")
    group_chart = mo.ui.altair_chart(
        plots.objective_scatter(group_rows, x=objective_columns[0], y=objective_columns[1],
                                selection=alt.selection_point(fields=[objective_columns[0], objective_columns[1]]),
                                title="the group's objective vectors (click a point to filter the completions)",
                                width=320, height=260),
        chart_selection=False, legend_selection=False)
    return group_chart, group_header, group_rows


@app.cell
def _(consistent, distinct_vectors, group_chart, group_header, group_picker, group_rows, method, step_estimator,
      step_stage):
    _label = f"{step_estimator} (stage {step_stage})" if method.two_stage else step_estimator
    _bars = plots.advantage_bars(group_rows.with_columns(pl.lit(_label).alias("estimator")),
                                 facet=None, title="advantages used in training", width=240, height=260)
    _check = (mo.callout(mo.md(f"Logged ranks and advantages of this step match `paretopo.core.advantages` "
                               f"(`{step_estimator}`)."), kind="success") if consistent else
              mo.callout(mo.md(f"Logged ranks or advantages differ from `paretopo.core.advantages` (`{step_estimator}`) "
                               "recomputed on the logged objective vectors."), kind="danger"))
    _note = mo.md(display.PARETO_RANK_NOTE) if step_estimator == "pareto_rank" else mo.md("")
    _advantages = sorted(set(np.round(group_rows["advantage"].to_numpy(), 6).tolist()))
    _degenerate = (mo.callout(mo.md(
        f"Group {group_picker.value} is **degenerate**: its {group_rows.height} completions share one objective "
        f"vector, so the estimator cannot tell them apart (advantage {', '.join(f'{a:+.3f}' for a in _advantages)} "
        "for all): no learning signal. Groups marked *distinct vectors* in the picker have one."), kind="info")
        if distinct_vectors[int(group_picker.value)] == 1 else mo.md(""))
    _table = mo.ui.table(display.display_table(group_rows.drop("step", "stage", "group", strict=False)),
                         selection=None, show_column_summaries=False)
    mo.vstack([group_header, _degenerate, mo.hstack([group_chart, _bars], justify="start", wrap=True), _check, _note,
               _table])
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
                + " · ".join(f"{c.removeprefix(OBJECTIVE_PREFIX)} {row[c]:.3f}" for c in objective_columns))
        body = (mo.Html(display.transcript_html(row["segments"])) if row["segments"] else
                mo.md("*text not kept: the run log stores the text of the first completions of each step only*"))
        return mo.vstack([mo.md(head), body])

    _legend = mo.Html(display.transcript_legend_html())
    mo.vstack([mo.md("### Completions"), _legend, *[_card(r) for r in shown_completions.iter_rows(named=True)]])
    return


@app.cell(hide_code=True)
def _(run):
    mo.accordion({
        "run configuration (config.json)": mo.md(f"```json\n{json.dumps(run.config, indent=2)}\n```"),
        "stage-1 archive (archive.parquet)": mo.ui.table(display.display_table(run.archive, decimals=4), selection=None)
        if run.archive.height else mo.md("*empty*"),
        "evaluations (eval.parquet)": mo.ui.table(display.display_table(run.evals), selection=None)
        if run.evals.height else mo.md("*none yet*"),
    })
    return


if __name__ == "__main__":
    app.run()
