"""paretopo.evaluation.plots, replay and display: the replayed frames hold the package's numbers, the tables and
transcripts show them, and the chart specs carry the encodings and data the apps rely on (checked on
``chart.to_dict()``, no rendering)."""

import json

import altair as alt
import numpy as np
import polars as pl
import pytest

from paretopo.agent.models import build_tiny_tokenizer
from paretopo.agent.rollout import mask_segments
from paretopo.core.advantages import ADVANTAGES
from paretopo.core.config import ParetoPOConfig
from paretopo.core.pareto import pareto_ranks
from paretopo.core.scalarize import HVScalarizer
from paretopo.evaluation import display, plots, replay

WEIGHTS = (0.6, 0.4)
# one group of five: two identical vectors, three fronts
GROUP = np.array([[1, 1.0], [1, 0.37], [0, 1.0], [0, 0.37], [1, 0.37]])


def _dataset(spec: dict) -> list[dict]:
    """The single inline dataset of a chart spec (altair moves data frames to ``datasets``)."""
    (rows,) = spec["datasets"].values()
    return rows


def _layers(spec: dict) -> list[dict]:
    return spec.get("spec", spec)["layer"]


def test_ranked_group_frame_numbers_groups_and_ranks_them():
    rewards = np.concatenate([GROUP, GROUP[::-1]])
    frame = replay.ranked_group_frame(rewards, group_size=5)
    assert frame.columns == ["group", "completion", "task", "tool_efficiency", "rank"]
    assert frame["group"].to_list() == [0] * 5 + [1] * 5
    assert frame["completion"].to_list() == list(range(5)) * 2
    assert frame["rank"].to_list() == np.asarray(pareto_ranks(rewards.reshape(2, 5, 2))).reshape(-1).tolist()
    with pytest.raises(ValueError, match="multiple of group_size"):
        replay.ranked_group_frame(GROUP, group_size=3)


def test_estimator_advantages_match_each_estimator_with_its_preset_options():
    advantages = replay.estimator_advantages(GROUP, 5, weights=WEIGHTS, beta=0.3)
    assert advantages["estimator"].unique(maintain_order=True).to_list() == list(ADVANTAGES)
    expected_options = {
        "torl_grpo": {"eps": 1e-4, "scale": "group"},
        "fixed_weight": {"eps": 1e-4, "scale": "group", "weights": WEIGHTS},
        "otc_grpo": {"eps": 1e-4, "scale": "group", "otc_alpha": 1.0},
        "mo_grpo": {"eps": 1e-4},
        "gdpo": {"eps": 1e-4, "weights": WEIGHTS},
        "hv_scalarized": {"eps": 1e-4, "weights": WEIGHTS, "meta_reward": 1.0, "normalization": "group_std"},
        "pareto_rank": {"eps": 1e-4, "weights": WEIGHTS, "beta": 0.3, "center": "group_zscore"},
    }
    for name, options in expected_options.items():
        got = advantages.filter(pl.col("estimator") == name)["advantage"].to_numpy()
        np.testing.assert_allclose(got, ADVANTAGES[name](GROUP, 5, **options), err_msg=name)


def test_equal_sum_group_is_one_front_that_scalar_estimators_cannot_rank():
    vectors = replay.equal_sum_group(WEIGHTS, group_size=6)
    np.testing.assert_allclose(vectors @ np.array(WEIGHTS), 0.5)
    assert len(np.unique(vectors, axis=0)) == 6 and ((vectors >= 0) & (vectors <= 1)).all()
    advantages = replay.estimator_advantages(vectors, 6, weights=WEIGHTS).pivot(
        on="estimator", index="completion", values="advantage")
    assert (np.asarray(pareto_ranks(vectors)) == 1).all()
    assert np.abs(advantages["fixed_weight"].to_numpy()).max() < 1e-6
    assert np.abs(advantages["hv_scalarized"].to_numpy()).max() < 1e-6
    assert np.abs(advantages["mo_grpo"].to_numpy()).max() < 1e-3  # opposite z-scores, up to eps
    assert np.abs(advantages["pareto_rank"].to_numpy()).max() < 1e-3  # one front, r_hat tied: 0 once centred
    assert np.abs(advantages["gdpo"].to_numpy()).max() > 0.5  # batch re-standardisation amplifies 0.2 z_task


def test_same_sums_two_groups_share_scalar_advantages_but_not_pareto_ones():
    vectors = replay.same_sums_two_groups(WEIGHTS, group_size=4)
    sums = vectors @ np.array(WEIGHTS)
    np.testing.assert_allclose(sums[:4], sums[4:])
    assert not np.allclose(vectors[:4], vectors[4:])
    advantages = replay.estimator_advantages(vectors, 4, weights=WEIGHTS)
    by_group = {g: f.sort("completion") for (g,), f in advantages.group_by("group")}
    for name in ("fixed_weight", "hv_scalarized"):
        first, second = (by_group[g].filter(pl.col("estimator") == name)["advantage"].to_numpy() for g in (0, 1))
        np.testing.assert_allclose(first, second, atol=1e-9)
    ranks = replay.ranked_group_frame(vectors, 4)
    assert ranks.filter(pl.col("group") == 0)["rank"].to_list() == [1, 2, 3, 4]
    assert ranks.filter(pl.col("group") == 1)["rank"].max() < 4


def test_example_groups_have_the_requested_shapes_and_llm_like_values():
    assert replay.random_groups(2, 5, 3, seed=1).shape == (10, 3)
    vectors = replay.llm_like_groups(3, 8, 3, seed=2)
    assert vectors.shape == (24, 3)
    assert set(np.unique(vectors[:, 0])) <= {0.0, 1.0}
    assert set(np.round(np.unique(vectors[:, 1]), 6)) <= {round(float(np.exp(-0.5 * k)), 6) for k in range(4)}
    assert replay.objective_names(4) == ("task", "tool_efficiency", "objective_3", "objective_4")


def test_stage1_history_replays_the_scalarizer():
    outcomes = [(0.3, 0.6), (0.42, 0.55), (0.42, 0.55), (0.55, 0.62)]
    history = replay.stage1_history(outcomes, gamma=0.8)
    scalarizer = HVScalarizer(gamma=0.8)
    updates = [scalarizer.update(o, step=i) for i, o in enumerate(outcomes, start=1)]
    np.testing.assert_allclose(history["hv_gain"].to_numpy(), [u.hv_gain for u in updates])
    np.testing.assert_allclose(history["meta_reward"].to_numpy(), [u.meta_reward for u in updates])
    assert history["inserted"].to_list() == [True, True, False, True]
    assert history["in_final_archive"].to_list() == [False, False, False, True]  # (0.55, 0.62) dominates all


def test_mask_segments_and_transcript_html_mark_tool_spans():
    tokenizer = build_tiny_tokenizer()
    model_part = tokenizer.encode('<tool_call>\n{"name": "calculator"}\n</tool_call>', add_special_tokens=False)
    tool_part = tokenizer.encode("<tool_response>\n42\n</tool_response>", add_special_tokens=False)
    answer = tokenizer.encode("\\boxed{42} <b>", add_special_tokens=False)
    segments = mask_segments(tokenizer, model_part + tool_part + answer,
                             [1] * len(model_part) + [0] * len(tool_part) + [1] * len(answer))
    assert [s["tool_output"] for s in segments] == [False, True, False]
    assert segments[1]["text"] == "<tool_response>\n42\n</tool_response>"
    page = display.transcript_html(json.dumps(segments))
    assert page.count(display.TOOL_OUTPUT_STYLE) == 1 and page.count(display.TOOL_CALL_STYLE) == 1
    assert "&lt;b&gt;" in page and "<b>" not in page  # model text is escaped
    # unmasked text (evaluation rows): tool responses are found by their tags
    unmasked = display.transcript_html([{"text": "".join(s["text"] for s in segments), "tool_output": False}])
    assert unmasked.count(display.TOOL_OUTPUT_STYLE) == 1 and unmasked.count(display.TOOL_CALL_STYLE) == 1
    assert "\u2401" in display.transcript_html([{"text": "\x01", "tool_output": False}])  # control picture


def test_rounded_for_display_rounds_floats_and_drops_negative_zero():
    frame = display.rounded_for_display(pl.DataFrame({"x": [-1e-13, 0.12345, -0.6666], "n": [1, 2, 3]}))
    assert frame["x"].to_list() == [0.0, 0.123, -0.667] and frame["n"].to_list() == [1, 2, 3]
    assert str(frame["x"][0]) == "0.0"  # not "-0.0"


def test_objective_scatter_merges_identical_vectors_and_draws_fronts():
    frame = replay.ranked_group_frame(GROUP, 5)
    spec = plots.objective_scatter(frame, x="task", y="tool_efficiency").to_dict()
    fronts, dots, labels = _layers(spec)
    assert fronts["mark"]["type"] == "line" and fronts["mark"]["interpolate"] == "step-before"
    assert dots["encoding"]["color"]["field"] == "rank"
    assert dots["encoding"]["size"]["field"] == "count"
    assert labels["encoding"]["text"]["field"] == "position_label"
    rows = _dataset(spec)
    assert len(rows) == 4  # completions 1 and 4 share (1, 0.37)
    merged = next(r for r in rows if r["count"] == 2)
    assert merged["label"] == "#1 #4" and merged["rank"] == 2
    selection = alt.selection_point(fields=["task", "tool_efficiency"], name="picked")
    selectable = plots.objective_scatter(frame, x="task", y="tool_efficiency", selection=selection).to_dict()
    assert [p["name"] for p in selectable["params"]] == ["picked"]


def test_objective_scatter_writes_one_label_per_position_when_a_projection_stacks_points():
    """M = 4 drawn as one pair: completions of different ranks on one spot get one combined label
    (they were three labels drawn over each other, read "#2#1#4")."""
    vectors = np.array([[1, 1, 0.2, 0.9], [1, 1, 0.9, 0.2], [0, 0.5, 0.1, 0.1], [1, 1, 0.1, 0.1], [0, 0.5, 0.1, 0.1]])
    frame = replay.ranked_group_frame(vectors, 5, replay.objective_names(4))
    assert frame.filter((pl.col("task") == 1) & (pl.col("tool_efficiency") == 1))["rank"].n_unique() == 2
    import re

    import vl_convert

    spec = plots.objective_scatter(frame, x="task", y="tool_efficiency", facet="group").to_dict()
    drawn = re.findall(r"<text[^>]*>(#[^<]*)</text>", vl_convert.vegalite_to_svg(spec))
    assert sorted(drawn) == ["#0 #1 #3", "#2 #4"]  # one label per spot, naming every completion there


def test_objective_scatter_and_advantage_bars_facet_by_group():
    vectors = replay.same_sums_two_groups(WEIGHTS, 4)
    scatter = plots.objective_scatter(replay.ranked_group_frame(vectors, 4), x="task", y="tool_efficiency",
                                      facet="group").to_dict()
    assert scatter["facet"]["field"] == "group" and scatter["columns"] == 2  # panels wrap, two to a row
    bars = plots.advantage_bars(replay.estimator_advantages(vectors, 4, weights=WEIGHTS)).to_dict()
    assert bars["facet"]["field"] == "group"
    bar_layer = bars["spec"]["layer"][0]
    assert bar_layer["mark"]["type"] == "bar"
    assert bar_layer["encoding"]["xOffset"]["field"] == "estimator"
    assert bar_layer["encoding"]["color"]["sort"] == list(ADVANTAGES)
    assert len(_dataset(bars)) == 8 * len(ADVANTAGES)
    single = plots.advantage_bars(replay.estimator_advantages(GROUP, 5, weights=WEIGHTS), facet="group").to_dict()
    assert "facet" not in single  # one group: no panels


def test_metric_lines_draw_present_columns_and_the_stage_switch():
    steps = pl.DataFrame({"step": [1, 2, 3, 4], "stage": [1, 1, 2, 2], "objectives/task": [0.1, 0.2, None, 0.4]})
    switch = plots.stage_switch_step(steps)
    assert switch == 3
    assert plots.stage_switch_step(steps.with_columns(pl.lit(1).alias("stage"))) is None
    spec = plots.metric_lines(steps, ["objectives/task", "not/logged"], title="t", switch=switch).to_dict()
    lines, rule, label = spec["layer"]
    assert lines["mark"]["type"] == "line" and lines["encoding"]["color"]["field"] == "metric"
    assert rule["mark"]["type"] == "rule"
    datasets = list(spec["datasets"].values())
    line_rows = next(rows for rows in datasets if rows and "metric" in rows[0])
    assert [(r["step"], r["value"]) for r in line_rows] == [(1, 0.1), (2, 0.2), (4, 0.4)]  # null skipped
    assert any(rows == [{"step": 2.5, "label": "stage 2 →"}] for rows in datasets)


def test_stage1_chart_has_outcomes_gains_and_meta_reward_panels():
    history = replay.stage1_history([(0.3, 0.6), (0.5, 0.4), (0.45, 0.75)])
    spec = plots.stage1_chart(history).to_dict()
    assert [panel["title"] for panel in spec["hconcat"]] == [
        "outcomes; shaded: the archive's HV", "HV gain and its EMA (Eq. 5)", "meta reward for the next step (Eq. 6)"]
    region = next(rows for rows in spec["datasets"].values() if rows and set(rows[0]) == {"task", "tool_efficiency"})
    # staircase of the final archive {(0.3, 0.6), (0.5, 0.4), (0.45, 0.75)} minus the dominated (0.3, 0.6)
    assert [(r["task"], r["tool_efficiency"]) for r in region] == [(0.0, 0.75), (0.45, 0.4), (0.5, 0.0)]


def test_frontier_chart_marks_each_runs_front_and_carries_the_selection():
    points = pl.DataFrame({
        "run": ["runs/a"] * 3 + ["runs/b"] * 2, "method": ["paretopo"] * 3 + ["torl_grpo"] * 2,
        "step": [2, 4, 4, 2, 4], "split": ["validation", "validation", "test", "validation", "validation"],
        "final": [False, False, True, False, False], "accuracy": [0.5, 0.6, 0.6, 0.4, 0.7],
        "mean_tool_calls": [1.0, 0.5, 0.5, 1.0, 2.0], "obj_task": [0.5, 0.6, 0.6, 0.4, 0.7],
        "obj_tool_efficiency": [0.9, 0.8, 0.8, 0.5, 0.4], "n": [8] * 5,
    })
    selection = alt.selection_point(fields=["run", "step", "split"], name="checkpoint")
    spec = plots.frontier_chart(points, split="validation", selection=selection).to_dict()
    (rows,) = [rows for rows in spec["datasets"].values() if rows and "on_front" in rows[0]]
    front = {(r["run"], r["step"], r["split"]) for r in rows if r["on_front"]}
    assert front == {("runs/a", 2, "validation"), ("runs/a", 4, "validation"), ("runs/a", 4, "test"),
                     ("runs/b", 2, "validation"), ("runs/b", 4, "validation")}
    assert {r["label"] for r in rows} == {"paretopo (a)", "torl_grpo (b)"}
    shade, fronts, _split_key, dots, _counts = spec["layer"]
    assert fronts["mark"]["interpolate"] == "step-after" and shade["mark"]["type"] == "rect"
    assert dots["encoding"]["shape"]["field"] == "split"
    assert [p["name"] for p in spec["params"]] == ["checkpoint"]
    # a run's frontier of one point is still drawn: the box it dominates, from the chart's edges
    (region,) = [rows for rows in spec["datasets"].values() if rows and "order" in rows[0]]
    single = [(r["obj_task"], r["obj_tool_efficiency"]) for r in region if r["label"] == "torl_grpo (b)"]
    assert len(single) == 3 and single[1][0] == 0.4  # b's validation frontier: (0.4, 0.5) and (0.7, 0.4)


def test_frontier_chart_spreads_coincident_checkpoints_so_each_can_be_clicked():
    points = pl.DataFrame({
        "run": ["runs/a", "runs/a", "runs/b", "runs/b"], "method": ["paretopo", "paretopo", "torl_grpo", "torl_grpo"],
        "step": [2, 4, 2, 4], "split": ["validation"] * 4, "final": [False, True, False, True],
        "accuracy": [1.0] * 4, "mean_tool_calls": [1.0] * 4, "obj_task": [1.0] * 4,
        "obj_tool_efficiency": [1.0] * 4, "n": [8] * 4,
    })
    spec = plots.frontier_chart(points).to_dict()
    (rows,) = [rows for rows in spec["datasets"].values() if rows and "x_shown" in rows[0]]
    assert len({(r["x_shown"], r["y_shown"]) for r in rows}) == 4  # four at (1, 1): four distinct dots
    assert {r["together"] for r in rows} == {4} and {r["obj_task"] for r in rows} == {1.0}
    region = [rows for rows in spec["datasets"].values() if rows and "order" in rows[0]][0]
    assert {r["label"] for r in region} == {"paretopo (a)", "torl_grpo (b)"}  # one-point frontiers drawn


def test_charts_build_for_more_than_two_objectives():
    vectors = replay.llm_like_groups(2, 4, 4, seed=0)
    config = ParetoPOConfig(objectives=replay.objective_names(4), weights=(0.4, 0.3, 0.2, 0.1))
    advantages = replay.estimator_advantages(vectors, 4, weights=config.weights)
    assert advantages.height == 8 * len(ADVANTAGES)
    plots.objective_scatter(replay.ranked_group_frame(vectors, 4), x="task", y="objective_4", facet="group").to_dict()


FRONTIER_POINTS = pl.DataFrame({
    "run": ["runs/a"] * 3 + ["runs/b"] * 2, "method": ["paretopo"] * 3 + ["torl_grpo"] * 2,
    "step": [2, 4, 6, 2, 4], "split": ["validation", "validation", "test", "validation", "validation"],
    "final": [False, True, True, False, True], "accuracy": [0.5, 0.7, 0.6, 0.4, 0.6],
    "mean_tool_calls": [1.0, 0.5, 0.5, 1.0, 2.0], "obj_task": [0.5, 0.7, 0.6, 0.4, 0.6],
    "obj_tool_efficiency": [0.9, 0.6, 0.8, 0.5, 0.4], "n": [8] * 5,
})


def _png_pixels(spec: dict) -> np.ndarray:
    import io

    import vl_convert
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(vl_convert.vegalite_to_png(spec))).convert("RGB")).astype(int)


def test_frontier_chart_shades_what_each_frontier_dominates_when_drawn():
    """The title promises shading: the shade layer alone, drawn by vl-convert, paints a large part of the
    plot (an area mark with y2 and an order channel drew nothing, in the browser and in vl-convert)."""
    spec = plots.frontier_chart(FRONTIER_POINTS).to_dict()
    assert "shaded: what it dominates" in spec["title"]
    shade = spec["layer"][0]
    alone = {**spec, "layer": [shade]}
    blank = {**spec, "layer": [{**shade, "mark": {**shade["mark"], "opacity": 0}}]}  # same legends and size
    painted = (np.abs(_png_pixels(alone) - _png_pixels(blank)).sum(axis=-1) > 0).mean()
    # a's validation front (0.5, 0.9), (0.7, 0.6) dominates about half of the plot: a third of the image at least
    assert painted > 0.2, f"the shade layer paints {painted:.1%} of the image"


def test_dominated_strips_cover_exactly_the_fronts_hypervolume():
    from paretopo.core.hypervolume import hypervolume
    from paretopo.core.pareto import nondominated_mask

    rng = np.random.default_rng(0)
    for _ in range(200):
        cloud = rng.random((int(rng.integers(1, 9)), 2)).round(2)
        front = cloud[np.asarray(nondominated_mask(cloud))]
        strips = plots._dominated_strips(pl.DataFrame({"x": front[:, 0], "y": front[:, 1]}), "x", "y", (0.0, 0.0))
        widths = (strips["x_to"] - strips["x_from"]).to_numpy()
        assert (widths >= 0).all()  # disjoint, left to right: no strip is drawn twice as dark
        area = float((widths * (strips["y_to"] - strips["y_from"]).to_numpy()).sum())
        assert area == pytest.approx(hypervolume(front, [0.0, 0.0]), abs=1e-12)


def test_frontier_chart_legends_show_their_symbols_in_full():
    import vl_convert

    legends = {legend["title"]: legend for legend in
               vl_convert.vegalite_to_vega(plots.frontier_chart(FRONTIER_POINTS).to_dict())["legends"]}
    run, split = legends["run"], legends["split (hollow: not the frontier's split)"]
    assert run.get("symbolOpacity") == 1  # not the shading's 0.12
    assert split["symbolStrokeColor"] and split.get("titleLimit", 0) >= 400  # the title is not cut short
    symbols = split.get("encode", {}).get("symbols", {}).get("update", {})
    assert symbols.get("stroke", {}).get("value") != "transparent"  # hollow symbols with a visible outline


def test_advantage_bars_of_a_degenerate_group_have_a_centred_axis():
    """All advantages 0 (a degenerate group): the axis spans [-1, 1] instead of one "0.000000" tick."""
    flat = pl.DataFrame({"completion": [0, 1, 2], "estimator": ["pareto_rank"] * 3, "advantage": [0.0] * 3})
    spec = plots.advantage_bars(flat, facet=None).to_dict()
    assert spec["layer"][0]["encoding"]["y"]["scale"]["domain"] == [-1.0, 1.0]
    varied = plots.advantage_bars(flat.with_columns(pl.Series("advantage", [0.0, 1.0, -1.0])), facet=None).to_dict()
    assert "domain" not in varied["layer"][0]["encoding"]["y"].get("scale", {})
