import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="ParetoPO live rollouts")

with app.setup:
    import html
    import re
    from pathlib import Path

    import marimo as mo
    import numpy as np
    import polars as pl
    import torch

    from paretopo import plots
    from paretopo.config import ParetoPOConfig
    from paretopo.models import build_tiny_policy, build_tiny_tokenizer, load_policy
    from paretopo.objectives import OptimalCallTracker, objective_matrix
    from paretopo.rollout import generate_rollouts, mask_segments
    from paretopo.tasks import Example, get_task
    from paretopo.tools.calculator import calculator
    from paretopo.train import tiny_policy_path

    torch.set_num_threads(1)  # more threads on a shared 2-core CPU were slower, not faster
    METHOD = ParetoPOConfig()  # the objectives' and advantages' settings: ParetoPO's defaults


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # Live rollouts

    Sample **G** completions of one arithmetic question with the real tool loop
    (`paretopo.rollout.generate_rollouts`, the calculator as the tool), score them exactly as
    training does — correctness, tool calls, n\* from this group's correct answers, the objective
    vectors (task, tool efficiency) — and see their Pareto ranks and the advantage every estimator
    gives them. Tool output (amber) is written by the environment and masked from the loss.
    Start with `marimo run apps/live_rollouts.py` (the shipped tiny CPU policy) or
    `-- --model <folder or hub id>`.
    """)
    return


@app.cell
def _():
    cli_model = mo.cli_args().get("model")
    runs_root = Path(mo.cli_args().get("runs-dir") or "runs")
    return cli_model, runs_root


@app.cell
def _(cli_model, runs_root):
    _shipped = str(tiny_policy_path())
    _found = sorted({str(p.parent) for pattern in ("*/final/*.json", "*/checkpoints/checkpoint-*/*.json")
                     for p in runs_root.glob(pattern) if p.name in ("config.json", "adapter_config.json")})
    _options = {f"shipped tiny policy ({_shipped})": _shipped, **{f"checkpoint: {p}": p for p in _found}}
    if cli_model:
        _options = {f"from --model: {cli_model}": str(cli_model), **_options}
    model_choice = mo.ui.dropdown(options=_options, value=next(iter(_options)), label="policy")
    model_typed = mo.ui.text(placeholder="or a model folder / adapter folder / hub id", full_width=True)
    mo.hstack([model_choice, model_typed], justify="start", align="end")
    return model_choice, model_typed


@app.cell
def _(model_choice, model_typed):
    # Loaded once per choice: the sampling controls below do not re-run this cell.
    model_path = model_typed.value.strip() or model_choice.value
    if model_path == str(tiny_policy_path()) and not Path(model_path).exists():
        tokenizer = build_tiny_tokenizer()
        model = build_tiny_policy(tokenizer)
        model_note = mo.callout(mo.md(
            f"`{model_path}` is missing, so this is a **randomly initialised** tiny policy: expect noise. "
            "Regenerate the warm-started one with `python -m paretopo.warmstart`."), kind="warn")
    else:
        model, tokenizer = load_policy(model_path, lora=False)  # an adapter folder brings its base model
        model_note = mo.md(f"Loaded `{model_path}` ({sum(p.numel() for p in model.parameters()):,} parameters).")
    model.eval()
    model_note
    return model, tokenizer


@app.cell
def _():
    task = get_task("arithmetic")
    questions = task.load("test")[:60]
    return questions, task


@app.cell
def _(questions):
    question_choice = mo.ui.dropdown(
        options={f"{e.question} (tier {e.metadata.get('tier')})": e.id for e in questions},
        value=f"{questions[0].question} (tier {questions[0].metadata.get('tier')})", label="test question")
    question_typed = mo.ui.text(placeholder="or type one, e.g. What is 417*38?", full_width=True)
    group_size = mo.ui.slider(2, 16, value=8, label="G", show_value=True)
    temperature = mo.ui.slider(0.1, 1.5, step=0.1, value=1.0, label="temperature", show_value=True)
    max_new_tokens = mo.ui.slider(32, 256, step=16, value=160, label="max new tokens", show_value=True)
    seed = mo.ui.number(start=0, stop=10**6, value=0, label="seed")
    sample_button = mo.ui.run_button(label="sample G rollouts", kind="success")
    mo.vstack([mo.hstack([question_choice, question_typed], justify="start", align="end"),
               mo.hstack([group_size, temperature], justify="start", gap=2),
               mo.hstack([max_new_tokens, seed], justify="start", gap=2),
               sample_button])
    return group_size, max_new_tokens, question_choice, question_typed, sample_button, seed, temperature


@app.cell
def _(question_choice, question_typed, questions):
    def _typed_example(text):
        # the expected answer of a typed question: the calculator applied to its arithmetic expression
        expressions = re.findall(r"[\d.]+(?:\s*[-+*/]\s*[\d.]+)+", text)
        answer = calculator(expressions[-1]) if expressions else ""
        return Example(id="typed", question=text, answer=answer)

    example = (_typed_example(question_typed.value.strip()) if question_typed.value.strip()
               else next(e for e in questions if e.id == question_choice.value))
    mo.Html(f"<div>Question: <b>{html.escape(example.question)}</b> · expected answer: "
            f"<code>{html.escape(example.answer or 'unknown')}</code></div>")
    return (example,)


@app.cell
def _(example, group_size, max_new_tokens, model, sample_button, seed, task, temperature, tokenizer):
    # As a script (`python apps/live_rollouts.py`) it samples once with the defaults, so the whole path runs headless.
    mo.stop(not (sample_button.value or mo.app_meta().mode == "script"),
            mo.md("*Press **sample G rollouts** to generate.*"))
    rollouts = generate_rollouts(
        model, tokenizer, [task.messages(example)], tools={t.__name__: t for t in task.tools()},
        num_samples=group_size.value, max_new_tokens=max_new_tokens.value, max_tool_calls=task.max_tool_calls,
        temperature=temperature.value, seed=int(seed.value), answer_extractor=task.extract_answer,
        tools_in_prompt=False)
    return (rollouts,)


@app.cell
def _(example, rollouts, task):
    correct = np.array([float(task.is_correct(r.text, example)) for r in rollouts])
    calls = np.array([r.num_tool_calls for r in rollouts])
    tracker = OptimalCallTracker()  # this group alone: n* = fewest calls of its correct completions
    tracker.update([example.id] * len(rollouts), calls, correct)
    nstar = tracker.lookup([example.id] * len(rollouts))
    objectives = objective_matrix(correct, calls, nstar, form=METHOD.tool_efficiency_form, alpha=METHOD.alpha,
                                  max_calls=task.max_tool_calls, unknown_nstar=METHOD.unknown_nstar)
    ranked = plots.ranked_group_frame(objectives, len(rollouts))
    advantages = plots.estimator_advantages(objectives, len(rollouts), weights=METHOD.weights, beta=METHOD.beta)
    return advantages, nstar, objectives, ranked


@app.cell
def _(advantages, nstar, ranked, rollouts):
    rollout_table = ranked.drop("group").with_columns(
        pl.Series("tool_calls", [r.num_tool_calls for r in rollouts]),
        pl.Series("tool_errors", [r.tool_errors for r in rollouts]),
        pl.Series("final_answer", [r.final_answer or "" for r in rollouts]),
        pl.Series("finish", [r.finish_reason for r in rollouts]),
    ).join(advantages.drop("group").pivot(on="estimator", index="completion", values="advantage"), on="completion")
    _nstar = "unknown (no correct completion: efficiency 1 for all)" if np.isnan(nstar[0]) else f"{nstar[0]:.0f}"
    mo.vstack([
        mo.md(f"n\\* of this group = **{_nstar}** · tool efficiency = exp(-{METHOD.alpha} |calls - n\\*|) · "
              f"weights w = {METHOD.weights}, β = {METHOD.beta}"),
        mo.hstack([plots.objective_scatter(ranked, x="task", y="tool_efficiency", title="objective vectors by rank",
                                           width=260, height=240),
                   plots.advantage_bars(advantages, facet=None, title="advantages by estimator", width=380,
                                        height=240)], justify="start"),
        mo.ui.table(plots.rounded_for_display(rollout_table), selection=None,
                    show_column_summaries=False),
    ])
    return (rollout_table,)


@app.cell
def _(rollout_table, rollouts, tokenizer):
    def _card(index, rollout):
        row = rollout_table.row(index, named=True)
        head = (f"**#{index}** · rank {row['rank']} · pareto_rank advantage {row['pareto_rank']:+.2f} · "
                f"{'correct' if row['task'] else 'wrong'} · {rollout.num_tool_calls} tool call(s) · "
                f"finish: {rollout.finish_reason}")
        segments = mask_segments(tokenizer, rollout.completion_ids, rollout.loss_mask)
        return mo.vstack([mo.md(head), mo.Html(plots.transcript_html(segments))])

    mo.vstack([mo.md("### Transcripts"), *[_card(i, r) for i, r in enumerate(rollouts)]])
    return


if __name__ == "__main__":
    app.run()
