import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="ParetoPO playground")

with app.setup:
    import marimo as mo
    import numpy as np
    import polars as pl

    from paretopo.core.advantages import degenerate_groups
    from paretopo.evaluation import display, plots, replay

    DEFAULT_WEIGHTS = {"task": 0.6, "tool_efficiency": 0.4}


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # ParetoPO playground

    A group of **G** completions of one prompt, each scored on **M** objectives (all maximised:
    task correctness, tool efficiency, ...). Pick or edit the group below and see how every
    advantage estimator of `paretopo.core.advantages` turns the group's objective vectors into
    per-completion advantages — the only thing the methods of the comparison change.

    *Pareto rank* 1 is the set of completions no other completion of the group dominates (at least
    as good everywhere, better somewhere); rank 2 is the front once rank 1 is removed, and so on.
    ParetoPO's stage 2 (`pareto_rank`, Eqs. 7-9) gives `N_rank - rank + 1 + β (r̂ - 0.5)`, where
    `r̂` is the weighted sum `w·r` min-max normalised among completions of the same rank.
    """)
    return


@app.cell
def _():
    group_size = mo.ui.slider(2, 16, value=8, label="completions per group G", show_value=True)
    n_objectives = mo.ui.slider(2, 4, value=2, label="objectives M", show_value=True)
    n_groups = mo.ui.slider(1, 4, value=2, label="groups (random samples)", show_value=True)
    beta = mo.ui.slider(0.05, 1.0, step=0.05, value=0.5, label="β (within-rank refinement)", show_value=True)
    return beta, group_size, n_groups, n_objectives


@app.cell
def _(n_objectives):
    objective_names = replay.objective_names(n_objectives.value)
    weights = mo.ui.array(
        [mo.ui.slider(0.0, 1.0, step=0.05, value=DEFAULT_WEIGHTS.get(name, 0.2), label=f"w · {name}",
                      show_value=True) for name in objective_names],
        label="preference weights w",
    )
    return objective_names, weights


@app.cell
def _():
    # What the editor shows: a recipe, not the numbers, so resizing (G, M) re-draws the same kind of group
    # and moving a weight slider does not throw away edits.
    get_source, set_source = mo.state({"kind": "llm", "seed": 0, "weights": (0.6, 0.4)})
    return get_source, set_source


@app.cell
def _(set_source, weights):
    def _new_seed():
        return int(np.random.default_rng().integers(2**31))

    _weights_now = tuple(weights.value)
    sample_llm = mo.ui.button(label="🎲 LLM-like group",
                              on_click=lambda _: set_source({"kind": "llm", "seed": _new_seed()}))
    sample_uniform = mo.ui.button(label="🎲 uniform group",
                                  on_click=lambda _: set_source({"kind": "uniform", "seed": _new_seed()}))
    preset_one_front = mo.ui.button(label="preset: equal weighted sums",
                                    on_click=lambda _: set_source({"kind": "equal_sums", "weights": _weights_now}))
    preset_same_sums = mo.ui.button(label="preset: same sums, different vectors",
                                    on_click=lambda _: set_source({"kind": "same_sums", "weights": _weights_now}))
    return preset_one_front, preset_same_sums, sample_llm, sample_uniform


@app.cell
def _(beta, group_size, n_groups, n_objectives, preset_one_front, preset_same_sums, sample_llm,
      sample_uniform, weights):
    mo.vstack([
        mo.hstack([group_size, n_objectives, n_groups], justify="start", gap=2),
        mo.hstack([mo.vstack([mo.md("preference weights **w**"), weights.vstack()]), beta],
                  justify="start", align="start", gap=2),
        mo.hstack([sample_llm, sample_uniform, preset_one_front, preset_same_sums], justify="start"),
    ])
    return


@app.cell
def _(get_source):
    source = get_source()
    return (source,)


@app.cell
def _(group_size, n_groups, objective_names, source):
    def _preset_weights(captured):
        # the weights when the preset was picked, resized if M changed since
        padded = list(captured)[: len(objective_names)]
        return padded + [0.0] * (len(objective_names) - len(padded))

    _m, _g = len(objective_names), group_size.value
    if source["kind"] == "llm":  # rounded for reading: exp(-0.5 k) to 4 decimals
        vectors = replay.llm_like_groups(n_groups.value, _g, _m, seed=source["seed"]).round(4)
        group_count = n_groups.value
    elif source["kind"] == "uniform":
        vectors, group_count = replay.random_groups(n_groups.value, _g, _m, seed=source["seed"]), n_groups.value
    elif source["kind"] == "equal_sums":
        vectors, group_count = replay.equal_sum_group(_preset_weights(source["weights"]), _g), 1
    else:
        vectors, group_count = replay.same_sums_two_groups(_preset_weights(source["weights"]), _g), 2
    _index = np.arange(len(vectors))
    group_editor = mo.ui.data_editor(
        pl.DataFrame({"group": _index // _g, "completion": _index % _g,
                      **{name: vectors[:, k] for k, name in enumerate(objective_names)}}),
        editable_columns=list(objective_names),
    )
    mo.vstack([mo.md(f"**The group**: {group_count} × {_g} completions (edit any objective value)"), group_editor])
    return (group_editor,)


@app.cell
def _(beta, group_editor, objective_names, weights):
    group_table = pl.DataFrame(group_editor.value).sort("group", "completion")
    rewards = group_table.select(objective_names).cast(pl.Float64).to_numpy()
    completions_per_group = int(group_table.group_by("group").len()["len"].max())
    mo.stop(not np.isfinite(rewards).all(), mo.callout(mo.md("Every objective value must be a number."), kind="warn"))
    mo.stop(not any(w > 0 for w in weights.value),
            mo.callout(mo.md("Set at least one weight above 0: the weighted estimators need a preference."), kind="warn"))
    ranked = replay.ranked_group_frame(rewards, completions_per_group, objective_names)
    advantages = replay.estimator_advantages(rewards, completions_per_group, weights=weights.value, beta=beta.value)
    return advantages, completions_per_group, ranked, rewards


@app.cell
def _(objective_names):
    # with M > 2 objectives the scatter is one pairwise projection at a time, picked here
    _pairs = {f"{a} × {b}": (a, b) for i, a in enumerate(objective_names) for b in objective_names[i + 1:]}
    pair_picker = mo.ui.dropdown(options=_pairs, value=next(iter(_pairs)), label="objectives drawn")
    return (pair_picker,)


@app.cell
def _(advantages, objective_names, pair_picker, ranked, weights):
    # panels wrap two to a row, so 4 groups fit the page's column with their legends
    _x, _y = pair_picker.value
    _scatter = plots.objective_scatter(ranked, x=_x, y=_y, facet="group",
                                       title="objective vectors, coloured by Pareto rank (dashed: each front)",
                                       width=260, height=220, columns=2)
    _bars = plots.advantage_bars(advantages, title="advantage of each completion, by estimator", width=320,
                                 height=200, columns=2)
    _projection = (mo.vstack([pair_picker, mo.md(f"*M = {len(objective_names)}: the scatter shows one pair of "
                                                 "objectives; ranks and fronts use all of them, so a front's "
                                                 "points need not look non-dominated in this projection.*")])
                   if len(objective_names) > 2 else mo.md(""))
    weighted_sums = ranked.with_columns(
        pl.sum_horizontal([pl.col(name) * w for name, w in zip(objective_names, weights.value, strict=True)])
        .alias("w·r"))
    mo.vstack([_projection, _scatter, _bars])
    return (weighted_sums,)


@app.cell
def _(advantages, objective_names, weighted_sums):
    advantage_table = weighted_sums.join(
        advantages.pivot(on="estimator", index=["group", "completion"], values="advantage"),
        on=["group", "completion"])
    mo.vstack([mo.md("**Pareto rank, ParetoPO's advantage, the objective vectors, weighted sum and every other "
                     "estimator's advantage**"),
               # w·r after every objective (with M > 2 it sat between them), then the other estimators
               mo.ui.table(display.display_table(advantage_table, first=(
                   "group", "completion", "rank", "pareto_rank", *objective_names, "w·r")), selection=None,
                           show_column_summaries=False, page_size=min(64, advantage_table.height)),
               mo.md(display.PARETO_RANK_NOTE)])
    return (advantage_table,)


@app.cell(hide_code=True)
def _(completions_per_group, rewards, weighted_sums):
    def _group_facts(group, frame):
        sums = frame["w·r"].to_numpy()
        facts = [f"**group {group}**: {frame['rank'].max()} front(s)"]
        if degenerate_flags[group]:
            facts.append("all vectors identical: every estimator gives 0 (degenerate group)")
        elif np.ptp(sums) < 1e-9:
            facts.append(f"every completion has w·r = {sums[0]:.3f}: the scalarising estimators see no "
                         "difference (≈ 0), and no completion dominates another (one front)")
        return ", ".join(facts)

    degenerate_flags = np.asarray(degenerate_groups(rewards, completions_per_group))
    mo.md("  \n".join(_group_facts(g, f) for (g,), f in weighted_sums.group_by("group", maintain_order=True)))
    return (degenerate_flags,)


@app.cell(hide_code=True)
def _():
    mo.accordion({"What the presets show (read me)": mo.md(r"""
    **Equal weighted sums** — one group whose completions all have the same `w·r` but different
    vectors. With positive weights, more of one objective must be paid for with less of the other,
    so *no completion dominates another*: all are rank 1, one front. Then:

    * `fixed_weight` and `hv_scalarized` z-score `w·r`, which is constant: every advantage is ≈ 0;
    * `mo_grpo` sums per-objective z-scores; on a straight line the two objectives' z-scores are
      opposite, so it too gives ≈ 0 (up to the `eps` in the denominators);
    * `gdpo` weights the per-objective z-scores *before* summing (`0.6 z₁ + 0.4 z₂ = 0.2 z₁`) and
      then re-standardises over the batch, which blows that residue up: it prefers the
      completions with more of the heavier-weighted objective;
    * `torl_grpo` and `otc_grpo` look at the task column (and the product task × tool): they rank
      along the line;
    * `pareto_rank` gives **0 to every completion** with its default centring
      (`stage2_center="group_zscore"`): one front, all tied in `r̂`, no preference inside the
      group; the raw Eq. 9 (`stage2_center="none"`) gives 1 to everyone, a uniform push.

    **Same sums, different vectors** — two groups whose completions have the same weighted sums
    one by one. Group 0 is a chain (each completion dominates the next: ranks 1, 2, 3, ...);
    group 1 moves each vector along its line `w·r = const`, so they trade off and share fewer
    fronts. `fixed_weight` and `hv_scalarized` give both groups *identical* advantages; Pareto
    ranking (and `mo_grpo`, `gdpo`) see the difference.

    The presets are built for the weights at the moment you press them; move the weights
    afterwards and the `w·r` column shows the sums are no longer equal.
    """)})
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Stage 1: the hypervolume-guided meta reward

    Each stage-1 step measures an *outcome vector* (the policy's mean objectives). Its hypervolume
    gain over the archive of earlier outcomes (Pareto-optimal ones only) is smoothed,
    `ema = γ·ema + (1-γ)·gain` (Eq. 5), and becomes the next step's meta reward
    `0.5 + 1.5 tanh(ema)` (Eq. 6), which scales `w·r`. Edit the outcomes: an outcome the archive
    already dominates adds no hypervolume. (With the default `stage1_adv_norm="group_std"` the
    factor cancels inside each group's z-score; `"mean_only"` keeps it.)
    """)
    return


@app.cell
def _():
    outcome_editor = mo.ui.data_editor(
        pl.DataFrame({"task": [0.30, 0.42, 0.42, 0.55, 0.50, 0.61],
                      "tool_efficiency": [0.60, 0.55, 0.55, 0.62, 0.50, 0.70]}),
    )
    gamma = mo.ui.slider(0.0, 0.99, step=0.01, value=0.9, label="γ (EMA smoothing)", show_value=True)
    dynamic = mo.ui.checkbox(value=True, label="dynamic weighting (off: meta reward stays 1)")
    mo.hstack([mo.vstack([mo.md("**Outcome vectors**, one per step (as in `paretopo showcase`)"), outcome_editor]),
               mo.vstack([gamma, dynamic])], justify="start", gap=2)
    return dynamic, gamma, outcome_editor


@app.cell
def _(dynamic, gamma, outcome_editor):
    _outcomes = pl.DataFrame(outcome_editor.value).select("task", "tool_efficiency").cast(pl.Float64).to_numpy()
    mo.stop(len(_outcomes) == 0 or not np.isfinite(_outcomes).all(),
            mo.callout(mo.md("Give at least one outcome vector of two numbers."), kind="warn"))
    stage1 = replay.stage1_history(_outcomes, gamma=gamma.value, dynamic=dynamic.value)
    mo.vstack([plots.stage1_chart(stage1),
               mo.ui.table(display.rounded_for_display(stage1, 4), selection=None,
                           show_column_summaries=False, page_size=min(64, stage1.height))])
    return (stage1,)


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Gamble map: answer directly or call the tool?

    A question gets G completions; each answers directly (no call) with probability **q**, right
    with probability **p**, or calls the tool once, right with probability **c**. With gating a
    right direct answer scores (1, 1), a right call (1, e^-α), a wrong answer (0, 0). The curves
    are each estimator's expected advantage of a direct answer minus that of a call, computed
    exactly from every composition of the group (`paretopo.core.gamble`, the estimators' own
    code): above the dashed rule **p\*** the estimator pushes toward answering directly. Each
    curve is divided by its largest absolute value, so the sign is what to read; the weighted
    sum, the reference, is dotted.
    """)
    return


@app.cell
def _():
    from paretopo.core.gamble import estimators_to_map as _estimators_to_map

    gamble_estimators = mo.ui.multiselect(options=_estimators_to_map(),
                                          value=["pareto_rank", "fixed_weight", "calibrated_rank", "weighted_sum"],
                                          label="estimators")
    gamble_w_task = mo.ui.slider(0.05, 0.95, step=0.05, value=0.6, label="w · task (w · tool = 1 − it)",
                                 show_value=True)
    gamble_c = mo.ui.slider(0.5, 1.0, step=0.01, value=0.99, label="c: a call is right", show_value=True)
    gamble_q = mo.ui.slider(0.05, 0.95, step=0.05, value=0.5, label="q: share of direct answers", show_value=True)
    gamble_g = mo.ui.slider(2, 16, value=8, label="G", show_value=True)
    gamble_beta = mo.ui.slider(0.05, 1.0, step=0.05, value=0.5, label="β", show_value=True)
    gamble_gated = mo.ui.checkbox(value=True, label="gate efficiency by correctness")
    mo.vstack([gamble_estimators,
               mo.hstack([gamble_w_task, gamble_c, gamble_q], justify="start", gap=2),
               mo.hstack([gamble_g, gamble_beta, gamble_gated], justify="start", gap=2)])
    return gamble_beta, gamble_c, gamble_estimators, gamble_g, gamble_gated, gamble_q, gamble_w_task


@app.cell
def _(gamble_beta, gamble_c, gamble_estimators, gamble_g, gamble_gated, gamble_q, gamble_w_task):
    from paretopo.core.config import ParetoPOConfig as _Config
    from paretopo.evaluation import gamble_chart as _gamble_chart

    mo.stop(not gamble_estimators.value, mo.callout(mo.md("Pick at least one estimator."), kind="warn"))
    _config = _Config(weights=(gamble_w_task.value, round(1 - gamble_w_task.value, 10)), beta=gamble_beta.value,
                      gate_tool_by_correctness=gamble_gated.value)
    _names = list(dict.fromkeys([*gamble_estimators.value, "weighted_sum"]))  # the sentence compares to it
    gamble_curves, gamble_breaks = _gamble_chart.gap_curves(_config, _names, c=gamble_c.value,
                                                            shares=(gamble_q.value,), group_size=gamble_g.value,
                                                            points=51)
    _shown = gamble_curves.filter(pl.col("estimator").is_in(gamble_estimators.value))
    _rules = gamble_breaks.filter(pl.col("estimator").is_in(gamble_estimators.value))
    mo.vstack([mo.hstack([_gamble_chart.gap_chart(_shown, _rules, width=520, height=260),
                          mo.md(_gamble_chart.break_even_markdown(_rules))], justify="start", align="center", gap=2),
               mo.md(_gamble_chart.implication(gamble_breaks, q=gamble_q.value))])
    return gamble_breaks, gamble_curves


if __name__ == "__main__":
    app.run()
