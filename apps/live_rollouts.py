import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="ParetoPO live rollouts")

with app.setup:
    import html
    import json
    import random
    import re
    from pathlib import Path

    import marimo as mo
    import numpy as np
    import polars as pl
    import torch

    from paretopo.agent import tiny_policy_path
    from paretopo.agent.models import build_tiny_policy, build_tiny_tokenizer, load_policy
    from paretopo.agent.rollout import generate_rollouts, mask_segments
    from paretopo.core.config import ParetoPOConfig
    from paretopo.core.objectives import OptimalCallTracker, score_completions
    from paretopo.evaluation import display, plots, replay
    from paretopo.evaluation.runlog import list_runs, run_paths
    from paretopo.tasks import Example, get_task
    from paretopo.tasks.arithmetic import QUESTION_FORM, TIER_NAMES, question_tier
    from paretopo.tools.calculator import calculator

    def model_source_problem(path):
        """Why ``path`` cannot be a policy, in a sentence (None when it may be): checked before loading, so a
        mistyped path answers at once instead of after the hub client's offline retries."""
        folder = Path(path).expanduser()
        if folder.is_dir():
            if (folder / "config.json").exists() or (folder / "adapter_config.json").exists():
                return None
            return (f"`{path}` is a folder but holds neither `config.json` (a model) nor `adapter_config.json` "
                    "(an adapter): pick a run's `final/` or `checkpoints/checkpoint-*/` folder.")
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", str(path)):
            return (f"There is no folder `{path}` (relative paths start at `{Path.cwd()}`), and it is not a hub id "
                    "of the form `owner/name`: check the path.")
        from huggingface_hub import try_to_load_from_cache
        if isinstance(try_to_load_from_cache(str(path), "config.json"), str):
            return None  # in the local hub cache
        try:
            from huggingface_hub import HfApi
            HfApi().model_info(str(path), timeout=5)
        except Exception as error:
            return (f"There is no folder `{path}`, it is not in the local hub cache, and the hub did not answer for "
                    f"it ({type(error).__name__}). Offline, download it first (`huggingface-cli download {path}`) "
                    "or give a model folder.")
        return None

    def expected_answer(text):
        """The expected answer of a typed question: the calculator on its last arithmetic expression ('' when the
        question has none or it does not evaluate, e.g. a division by zero)."""
        expressions = re.findall(r"\d+(?:\.\d+)?(?:\s*[-+*/]\s*\d+(?:\.\d+)?)+", text)
        answer = calculator(expressions[-1]) if expressions else ""
        try:
            float(answer)
        except ValueError:
            return ""
        return answer

    def trained_on(path):
        """``(task, where it is recorded)`` of a policy folder, or None: a run's checkpoint or final/ reads its
        run's config.json, the shipped tiny policy its warmstart.json."""
        folder = Path(path).expanduser()
        for record in (*(parent / "config.json" for parent in list(folder.parents)[:2]), folder / "warmstart.json"):
            try:
                task = json.loads(record.read_text()).get("task")
            except (OSError, ValueError, AttributeError):
                continue
            if task:
                return task, record
        return None

    def natural_key(text):
        """Sort key reading digit runs as numbers: checkpoint-30 before checkpoint-120."""
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]

    torch.set_num_threads(1)  # more threads on a shared 2-core CPU were slower, not faster
    METHOD = ParetoPOConfig()  # the objectives' and advantages' settings: ParetoPO's defaults


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # Live rollouts

    Sample **G** completions of one arithmetic question with the real tool loop
    (`paretopo.agent.rollout.generate_rollouts`, the calculator as the tool), score them exactly as
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
    # every run at any depth (a demo writes runs/demo-<ts>/<method>/): its final adapter and checkpoints
    _found = sorted({str(folder) for run in list_runs(runs_root)
                     for folder in (run_paths(run).final, *run_paths(run).checkpoint_folders())
                     if (folder / "config.json").exists() or (folder / "adapter_config.json").exists()},
                    key=natural_key)
    _options = {f"shipped tiny policy ({_shipped})": _shipped, **{f"checkpoint: {p}": p for p in _found}}
    if cli_model:
        _options = {f"from --model: {cli_model}": str(cli_model), **_options}
    model_choice = mo.ui.dropdown(options=_options, value=next(iter(_options)), label="policy")
    model_typed = mo.ui.text(placeholder="or a model folder / adapter folder / hub id", full_width=True)
    # the typed path on a row of its own: squeezed beside the picker it was ~140 px wide, its hint cut off
    mo.vstack([model_choice, model_typed,
               mo.md(f"*{len(_found)} checkpoint or final folder(s) found in the runs under `{runs_root}/`"
                     + ("" if _found else " (train one with `paretopo demo`, or pass `-- --runs-dir <folder>`)")
                     + ".*")])
    return model_choice, model_typed


@app.cell
def _(model_choice, model_typed):
    # Loaded once per choice: the sampling controls below do not re-run this cell.
    model_path = model_typed.value.strip() or model_choice.value
    model, tokenizer, model_note = None, None, None
    if model_path == str(tiny_policy_path()) and not Path(model_path).exists():
        tokenizer = build_tiny_tokenizer()
        model = build_tiny_policy(tokenizer)
        model_note = mo.callout(mo.md(
            f"`{model_path}` is missing, so this is a **randomly initialised** tiny policy: expect noise. "
            "Regenerate the warm-started one with `python -m paretopo.training.warmstart`."), kind="warn")
    else:
        _problem = model_source_problem(model_path)
        if _problem is None:
            try:
                model, tokenizer = load_policy(model_path, lora=False)  # an adapter folder brings its base model
            except Exception as error:  # any loader failure becomes a sentence, not a failed cell
                _problem = (f"`{model_path}` could not be loaded as a policy ({type(error).__name__}: "
                            f"{html.escape(str(error).splitlines()[0] if str(error) else '')[:300]}). Pick a folder "
                            "holding `config.json` (a model) or `adapter_config.json` (an adapter of a run).")
        if _problem:
            model_note = mo.callout(mo.md(_problem + " The policy picker above still works."), kind="danger")
        else:
            _trained = trained_on(model_path)
            model_note = mo.md(
                f"Loaded `{model_path}` ({sum(p.numel() for p in model.parameters()):,} parameters). "
                + (f"It was trained on the **{_trained[0]}** task (`{_trained[1]}`)"
                   + (f": only questions of the form {QUESTION_FORM}. Anything else is new to it." if
                      _trained[0] == "arithmetic" else ", not the arithmetic questions asked here.")
                   if _trained else
                   "Not a run or policy of this project: what it was trained on is unknown here."))
    mo.stop(model is None, model_note)
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
    # the picked test question: a state, so the "new question" button can pick one too
    get_question_id, set_question_id = mo.state(questions[0].id)
    question_labels = {e.id: f"{e.question} (tier {e.metadata.get('tier')}: {TIER_NAMES[e.metadata.get('tier')]})"
                       for e in questions}
    new_question = mo.ui.button(label="🎲 new question from the task", on_click=lambda _: set_question_id(
        random.choice([e.id for e in questions if e.id != get_question_id()])))
    return get_question_id, new_question, question_labels, set_question_id


@app.cell
def _(get_question_id, new_question, question_labels, set_question_id):
    question_choice = mo.ui.dropdown(options={label: i for i, label in question_labels.items()},
                                     value=question_labels[get_question_id()], label="test question",
                                     on_change=set_question_id)
    mo.vstack([mo.md(f"The task's questions, all of one form: {QUESTION_FORM}."),
               mo.hstack([question_choice, new_question], justify="start", align="end")])
    return (question_choice,)


@app.cell
def _():
    question_typed = mo.ui.text(placeholder="or type one, e.g. What is 417*38?", full_width=True)
    group_size = mo.ui.slider(2, 16, value=8, label="G", show_value=True)
    temperature = mo.ui.slider(0.1, 1.5, step=0.1, value=1.0, label="temperature", show_value=True)
    max_new_tokens = mo.ui.slider(32, 256, step=16, value=160, label="max new tokens", show_value=True)
    seed = mo.ui.number(start=0, stop=10**6, value=0, label="seed")
    sample_button = mo.ui.run_button(label="sample G rollouts", kind="success")
    mo.vstack([question_typed,
               mo.hstack([group_size, temperature], justify="start", gap=2),
               mo.hstack([max_new_tokens, seed], justify="start", gap=2),
               sample_button])
    return group_size, max_new_tokens, question_typed, sample_button, seed, temperature


@app.cell
def _(question_choice, question_typed, questions):
    _typed = question_typed.value.strip()
    example = (Example(id="typed", question=_typed, answer=expected_answer(_typed)) if _typed
               else next(e for e in questions if e.id == question_choice.value))
    _shown = mo.Html(f"<div>Question: <b>{html.escape(example.question)}</b> · expected answer: "
                     f"<code>{html.escape(example.answer or 'unknown')}</code></div>")
    _outside = mo.callout(mo.md(
        f"This question is **not in the task's form** ({QUESTION_FORM}), the only questions the shipped policy "
        "and the demo's runs were trained on: expect a wrong or malformed answer. It is sampled all the same."),
        kind="warn")
    _unscorable = mo.callout(mo.md(
        "The arithmetic task can only score a question with an arithmetic expression that evaluates: this one "
        "has no expected answer, so every completion will count as **wrong** (task 0)"
        + (", and a wrong answer earns no tool efficiency (`gate_tool_by_correctness`): all of them get the "
           "vector (0, 0), one rank, no learning signal." if METHOD.gate_tool_by_correctness else
           ": they differ in tool efficiency only.")
        + " Pick a test question or type a sum or product to score it."), kind="warn")
    _notes = ([_outside] if question_tier(example.question) is None else []) + ([] if example.answer else [_unscorable])
    mo.vstack([_shown, *_notes])
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
    objectives = score_completions([example.id] * len(rollouts), correct, calls, tracker, METHOD,
                                   lengths=[len(r.completion_ids) for r in rollouts])
    nstar = tracker.lookup([example.id] * len(rollouts))
    ranked = replay.ranked_group_frame(objectives, len(rollouts))
    advantages = replay.estimator_advantages(objectives, len(rollouts), weights=METHOD.weights, beta=METHOD.beta)
    return advantages, nstar, objectives, ranked


@app.cell
def _(advantages, nstar, ranked, rollouts):
    rollout_table = ranked.drop("group").with_columns(
        pl.Series("tool_calls", [r.num_tool_calls for r in rollouts]),
        pl.Series("tool_errors", [r.tool_errors for r in rollouts]),
        pl.Series("final_answer", [r.final_answer or "" for r in rollouts]),
        pl.Series("finish", [r.finish_reason for r in rollouts]),
    ).join(advantages.drop("group").pivot(on="estimator", index="completion", values="advantage"), on="completion")
    # every sentence below is read off the numbers in the table, not assumed
    _efficiencies = np.unique(ranked["tool_efficiency"].to_numpy())
    _nstar = (f"{nstar[0]:.0f}" if not np.isnan(nstar[0]) else
              "unknown (no correct completion), tool efficiency "
              + (f"{_efficiencies[0]:g} for all" if len(_efficiencies) == 1 else
                 ", ".join(f"{e:.3g}" for e in _efficiencies))
              + (" (a wrong answer earns none: `gate_tool_by_correctness`)" if METHOD.gate_tool_by_correctness
                 else ""))
    _same = len(np.unique(ranked.select("task", "tool_efficiency").to_numpy(), axis=0)) == 1
    _tasks = set(ranked["task"].to_list())
    _advice = ("every answer is wrong: pick a question the policy can answer (the task's form, above) or sample "
               "again with another seed" if _tasks == {0.0} else
               "every answer is right with the same tool calls: pick a harder question (a product), or sample "
               "again with another seed or a higher temperature" if _tasks == {1.0} else
               "sample again with another seed or a higher temperature")
    _degenerate = (mo.callout(mo.md(
        f"All {ranked.height} completions have the same objective vector "
        f"({', '.join(f'{v:g}' for v in ranked.select('task', 'tool_efficiency').row(0))}): a **degenerate group**, "
        f"rank {ranked['rank'][0]} for all, no learning signal (every estimator gives all the same advantage). "
        f"Here {_advice}."), kind="info") if _same else mo.md(""))
    mo.vstack([
        mo.md(f"n\\* of this group = **{_nstar}** · tool efficiency = exp(-{METHOD.alpha} |calls - n\\*|) · "
              f"weights w = {METHOD.weights}, β = {METHOD.beta}"),
        mo.hstack([plots.objective_scatter(ranked, x="task", y="tool_efficiency", title="objective vectors by rank",
                                           width=260, height=240),
                   plots.advantage_bars(advantages, facet=None, title="advantages by estimator", width=380,
                                        height=240)], justify="start"),
        _degenerate,
        mo.ui.table(display.display_table(rollout_table), selection=None, show_column_summaries=False),
        mo.md(display.PARETO_RANK_NOTE),
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
        return mo.vstack([mo.md(head), mo.Html(display.transcript_html(segments))])

    mo.vstack([mo.md("### Transcripts"), *[_card(i, r) for i, r in enumerate(rollouts)]])
    return


if __name__ == "__main__":
    app.run()
