"""Objective functions: task correctness, tool efficiency, brevity, and the optimal-call tracker n*.

Every objective is maximised and lies in [0, 1]. The objective matrix handed to the advantage
estimators has one row per completion and one column per name of ``ParetoPOConfig.objectives``
(default ``(task, tool_efficiency)``; the known names are :data:`OBJECTIVES`).

:func:`score_completions` is the one path from measurements (question ids, correctness, tool
calls, completion lengths) to objective vectors; the trainer, evaluation, comparison, apps,
showcase and notebooks all call it, and :func:`scoring_options` is the one place that reads the
scoring options out of a ``ParetoPOConfig``. Scoring has no defaults here: every caller names
its options (a config, or :func:`scoring_options` of one), so a column such as
``obj_tool_efficiency`` means what the config that produced it says, e.g. gated by correctness
or not. :func:`describe_scoring` says it in one line.

Tool efficiency (docs/method.md, section 1), with ``m`` tool calls and the tracked optimum ``n*``:

* ``form="exp"`` (ParetoPO Eq. 4, default): ``exp(-alpha * |m - n*|)``.
* ``form="otc"`` (OTC, arXiv 2504.14870 Eq. 5-7): with ``f(m, n) = 0`` if ``m = n = 0``,
  ``m`` if ``n = 0``, else ``2nm / (m + n)``: ``1`` if ``m = n = 0``;
  ``cos(m*pi / (2m + c))`` if ``n = 0``; else ``sin(f(m, n) * pi / (2n))``.

``n*`` per question (§1.3) is the fewest calls among correct completions seen so far; it never
increases, and it is updated from a group's correct completions *before* that group's rewards
are computed. While a question has no correct completion yet, ``n*`` is unknown and
``unknown_nstar`` decides: ``"one"`` (default) gives every completion efficiency 1 (efficiency
is undefined without a successful reference, so the group is ranked on the task alone);
``"zero"`` treats ``n* = 0`` (prefer no tools).

Brevity (``brevity``): ``clip(1 - L / brevity_length, 0, 1)`` with ``L`` the completion's
length in tokens (model and tool-output tokens alike, as the rollout returns them) and
``brevity_length`` the length at which it reaches 0 (``paretopo train`` sets it to the run's
``max_completion_length``).

Correctness checkers (math via math-verify, QA via SQuAD exact match / F1) live in
``paretopo.tasks.answers`` and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from paretopo.core.choices import ToolEfficiencyForm, UnknownNstar

__all__ = [
    "DEFAULT_OBJECTIVES",
    "OBJECTIVES",
    "OptimalCallTracker",
    "brevity",
    "count_tool_calls",
    "describe_scoring",
    "objective_matrix",
    "require_known_objectives",
    "score_completions",
    "scored_objectives",
    "scoring_options",
    "tool_efficiency",
    "tool_efficiency_exp",
    "tool_efficiency_otc",
]


def _as_float_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
    if np.isnan(array).any() and name != "nstar":
        raise ValueError(f"{name} contains NaN; pass a number for every completion")
    return array


def tool_efficiency_exp(calls: Any, nstar: Any, alpha: float = 0.5) -> np.ndarray:
    """ParetoPO Eq. 4: ``exp(-alpha * |m - n*|)``, in (0, 1], 1 exactly at ``m = n*``.

    Example:
        >>> tool_efficiency_exp([0, 1, 2, 3], [1, 1, 1, 1], alpha=0.5).round(4).tolist()
        [0.6065, 1.0, 0.6065, 0.3679]
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 (penalty severity), got {alpha}")
    m = _as_float_array(calls, "calls")
    n = _as_float_array(nstar, "nstar")
    return np.exp(-alpha * np.abs(m - n))


def tool_efficiency_otc(calls: Any, nstar: Any, max_calls: int) -> np.ndarray:
    """OTC's tool reward (sin/cos form), in [0, 1], 1 at ``m = n*``.

    Args:
        calls: ``m``, executed tool calls per completion.
        nstar: ``n*`` per completion (known, >= 0).
        max_calls: OTC's ``c``, the tool-call / turn limit (3 for code, 4 for search).

    Example:
        >>> tool_efficiency_otc([0, 1, 2, 0], [0, 0, 2, 2], max_calls=3).round(4).tolist()
        [1.0, 0.809, 1.0, 0.0]
    """
    if max_calls < 1:
        raise ValueError(f"max_calls (OTC's c) must be >= 1, got {max_calls}")
    m = _as_float_array(calls, "calls")
    n = _as_float_array(nstar, "nstar")
    m, n = np.broadcast_arrays(m, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(n == 0, m, 2 * n * m / (m + n))
        with_optimum = np.sin(f * math.pi / (2 * n))
        without_optimum = np.cos(m * math.pi / (2 * m + max_calls))
    reward = np.where(n == 0, without_optimum, with_optimum)
    return np.where((m == 0) & (n == 0), 1.0, reward)


def tool_efficiency(
    calls: Any,
    nstar: Any,
    *,
    form: ToolEfficiencyForm = "exp",
    alpha: float = 0.5,
    max_calls: int = 3,
    unknown_nstar: UnknownNstar = "one",
) -> np.ndarray:
    """Tool efficiency per completion; ``nstar`` is NaN where the optimum is still unknown.

    Args:
        calls: ``[N]`` executed tool calls.
        nstar: ``[N]`` tracked optimal calls for each completion's question (NaN = unknown).
        form: ``"exp"`` (ParetoPO Eq. 4) or ``"otc"`` (OTC sin/cos).
        alpha: penalty severity of the exp form.
        max_calls: OTC's ``c``.
        unknown_nstar: ``"one"``: efficiency 1 while unknown; ``"zero"``: treat ``n* = 0``.

    Returns:
        ``[N]`` float64 array in [0, 1].
    """
    m = _as_float_array(calls, "calls")
    if (m < 0).any():
        raise ValueError("calls must be >= 0 (number of executed tool calls)")
    n = _as_float_array(nstar, "nstar")
    m, n = np.broadcast_arrays(m, n)
    unknown = np.isnan(n)
    if unknown_nstar == "zero":
        n_filled = np.where(unknown, 0.0, n)
    elif unknown_nstar == "one":
        n_filled = np.where(unknown, m, n)  # placeholder; overwritten with 1 below
    else:
        raise ValueError(f"unknown_nstar must be 'one' or 'zero', got {unknown_nstar!r}")
    if form == "exp":
        reward = tool_efficiency_exp(m, n_filled, alpha)
    elif form == "otc":
        reward = tool_efficiency_otc(m, n_filled, max_calls)
    else:
        raise ValueError(f"tool efficiency form must be 'exp' (ParetoPO Eq. 4) or 'otc', got {form!r}")
    if unknown_nstar == "one":
        reward = np.where(unknown, 1.0, reward)
    return reward


def brevity(lengths: Any, max_length: int) -> np.ndarray:
    """Brevity per completion: ``clip(1 - L / max_length, 0, 1)``, 1 for an empty completion.

    Example:
        >>> brevity([0, 40, 160, 200], max_length=160).tolist()
        [1.0, 0.75, 0.0, 0.0]
    """
    if not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise ValueError(f"brevity needs a length >= 1 at which it reaches 0, got {max_length!r}")
    length = _as_float_array(lengths, "lengths")
    if (length < 0).any():
        raise ValueError("completion lengths must be >= 0")
    return np.clip(1.0 - length / float(max_length), 0.0, 1.0)


OBJECTIVES: tuple[str, ...] = ("task", "tool_efficiency", "brevity")
"""Objective names :func:`objective_matrix` can compute, in any order and combination."""
DEFAULT_OBJECTIVES: tuple[str, ...] = ("task", "tool_efficiency")
"""The objectives of ``ParetoPOConfig`` unless a run names others (written here only)."""
SCORING_OPTIONS: tuple[str, ...] = ("objectives", "gate_tool_by_correctness", "form", "alpha", "max_calls",
                                    "unknown_nstar", "brevity_length")
"""The keyword options :func:`objective_matrix` needs, every one of them (:func:`scoring_options`)."""


def require_known_objectives(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple, or a ValueError naming the objectives paretopo can score."""
    names = tuple(str(n) for n in names)
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ValueError(f"objectives {unknown} cannot be scored; choose among {list(OBJECTIVES)} "
                         "(paretopo.core.objectives.OBJECTIVES)")
    return names


def objective_matrix(
    correct: Any,
    calls: Any,
    nstar: Any,
    *,
    objectives: Sequence[str],
    gate_tool_by_correctness: bool,
    form: ToolEfficiencyForm,
    alpha: float,
    max_calls: int,
    unknown_nstar: UnknownNstar,
    brevity_length: int | None,
    lengths: Any = None,
) -> np.ndarray:
    """Objective vectors ``[N, M]`` for N completions, one column per name of ``objectives``.

    Every option is required (no defaults): pass ``**scoring_options(config)``.

    Args:
        correct: ``[N]`` task correctness in [0, 1] (1 = correct).
        calls: ``[N]`` executed tool calls.
        nstar: ``[N]`` n* of each completion's question (NaN = unknown).
        objectives: column names, from :data:`OBJECTIVES`.
        gate_tool_by_correctness: if True, efficiency counts only for correct answers
            (OTC-style ``r_tool <- r_task * r_tool``; a wrong answer gets (0, 0)); False: the
            paper's independent objectives.
        form, alpha, max_calls, unknown_nstar: how tool efficiency is computed
            (:func:`tool_efficiency`).
        brevity_length: the length at which brevity reaches 0 (needed for ``brevity``).
        lengths: ``[N]`` completion lengths in tokens (needed for ``brevity``).

    Example (ids q, q, q; correct 1, 0, 0; calls 1, 1, 0; so n* = 1):
        >>> options = dict(objectives=("task", "tool_efficiency"), form="exp", alpha=0.5, max_calls=3,
        ...                unknown_nstar="one", brevity_length=None)
        >>> objective_matrix([1, 0, 0], [1, 1, 0], [1, 1, 1], gate_tool_by_correctness=True,
        ...                  **options).round(3).tolist()
        [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
        >>> objective_matrix([1, 0, 0], [1, 1, 0], [1, 1, 1], gate_tool_by_correctness=False,
        ...                  **options).round(3).tolist()
        [[1.0, 1.0], [0.0, 1.0], [0.0, 0.607]]
    """
    names = require_known_objectives(objectives)
    task = _as_float_array(correct, "correct")
    if ((task < 0) | (task > 1)).any():
        raise ValueError("task correctness must lie in [0, 1]")
    tool = tool_efficiency(calls, nstar, form=form, alpha=alpha, max_calls=max_calls, unknown_nstar=unknown_nstar)
    if tool.shape != task.shape:
        raise ValueError(f"correct and calls must have the same length, got {task.shape} and {tool.shape}")
    if gate_tool_by_correctness:
        tool = tool * task
    columns = {"task": task, "tool_efficiency": tool}
    if "brevity" in names:
        if lengths is None or brevity_length is None:
            raise ValueError("the brevity objective needs the completion lengths and brevity_length (the length at "
                             "which it reaches 0; paretopo train sets it to max_completion_length)")
        columns["brevity"] = brevity(lengths, brevity_length)
        if columns["brevity"].shape != task.shape:
            raise ValueError(f"lengths must have one entry per completion, got {columns['brevity'].shape} "
                             f"and {task.shape}")
    return np.stack([columns[name] for name in names], axis=-1)


def scoring_options(config: Any) -> dict[str, Any]:
    """Everything :func:`score_completions` needs from a ``ParetoPOConfig``, as keyword options.

    The one place that maps config fields to scoring options: tool-efficiency form, alpha,
    OTC's c (at least 1), the unknown-n* rule, correctness gating, the objective names and
    brevity's length.
    """
    return {
        "form": config.tool_efficiency_form,
        "alpha": config.alpha,
        "max_calls": max(1, config.max_tool_calls),
        "unknown_nstar": config.unknown_nstar,
        "gate_tool_by_correctness": config.gate_tool_by_correctness,
        "objectives": tuple(config.objectives),
        "brevity_length": config.brevity_length,
    }


def describe_scoring(config_or_options: Any) -> str:
    """The scoring options in one line, e.g. to print beside the numbers they produced.

    Example:
        >>> describe_scoring({"objectives": ("task", "tool_efficiency"), "gate_tool_by_correctness": True,
        ...                   "form": "exp", "alpha": 0.5, "max_calls": 3, "unknown_nstar": "one",
        ...                   "brevity_length": None})
        'objectives task, tool_efficiency; tool efficiency exp(-0.5 |m - n*|), gated by correctness, 1 while n* is unknown'
    """
    options = _complete_options(config_or_options)
    form = (f"exp(-{options['alpha']:g} |m - n*|)" if options["form"] == "exp"
            else f"OTC's sin/cos (c = {options['max_calls']})")
    gate = "gated by correctness" if options["gate_tool_by_correctness"] else "not gated by correctness"
    unknown = "1 while n* is unknown" if options["unknown_nstar"] == "one" else "n* = 0 while unknown"
    text = f"objectives {', '.join(options['objectives'])}; tool efficiency {form}, {gate}, {unknown}"
    if "brevity" in options["objectives"]:
        text += f"; brevity 0 at {options['brevity_length']} tokens"
    return text


def scored_objectives(config_or_options: Any) -> tuple[str, ...]:
    """Objective names :func:`score_completions` gives for this config or options mapping."""
    return tuple(_complete_options(config_or_options)["objectives"])


def _complete_options(config_or_options: Any) -> dict[str, Any]:
    """The scoring options of a ``ParetoPOConfig`` or of a mapping holding all of them."""
    if not isinstance(config_or_options, Mapping):
        if not hasattr(config_or_options, "gate_tool_by_correctness"):
            raise TypeError(f"scoring needs a ParetoPOConfig or a mapping of scoring options, got "
                            f"{config_or_options!r}")
        return scoring_options(config_or_options)
    options = dict(config_or_options)
    missing = [name for name in SCORING_OPTIONS if name not in options]
    unknown = sorted(set(options) - set(SCORING_OPTIONS))
    if missing or unknown:
        raise ValueError(f"scoring options {'miss ' + ', '.join(missing) if missing else ''}"
                         f"{'; ' if missing and unknown else ''}{'do not know ' + ', '.join(unknown) if unknown else ''}"
                         "; build them with paretopo.core.objectives.scoring_options(config)")
    return options


def score_completions(
    question_ids: Sequence[Any],
    correct: Any,
    calls: Any,
    tracker: OptimalCallTracker,
    config_or_options: Any,
    *,
    lengths: Any = None,
    update: bool = True,
) -> np.ndarray:
    """Objective vectors ``[N, M]`` of N completions: the one scoring path of paretopo.

    Args:
        question_ids: ``[N]`` question of each completion (n* is tracked per question).
        correct: ``[N]`` task correctness in [0, 1].
        calls: ``[N]`` executed tool calls.
        tracker: the n* tracker; with ``update=True`` it first learns from these completions'
            correct answers (so a group's own best correct completion counts), as in training.
        config_or_options: a ``ParetoPOConfig`` (read by :func:`scoring_options`) or the mapping
            that function returns (every option; there are no defaults).
        lengths: ``[N]`` completion lengths in tokens (needed when ``brevity`` is an objective).
        update: False scores against the tracker as it is (e.g. the trainer outside training).

    Example:
        >>> tracker = OptimalCallTracker()
        >>> from paretopo.core.config import ParetoPOConfig
        >>> ungated = ParetoPOConfig(gate_tool_by_correctness=False)
        >>> score_completions(["q", "q"], [1, 0], [2, 0], tracker, ungated).round(4).tolist()
        [[1.0, 1.0], [0.0, 0.3679]]
    """
    options = _complete_options(config_or_options)
    ids = [str(q) for q in question_ids]
    correct_array = _as_float_array(correct, "correct")
    calls_array = np.asarray(calls.detach().cpu() if hasattr(calls, "detach") else calls)
    if update:
        tracker.update(ids, calls_array, correct_array)
    return objective_matrix(correct_array, calls_array, tracker.lookup(ids), lengths=lengths, **options)


class OptimalCallTracker:
    """Per-question n*: the fewest tool calls among correct completions seen so far.

    Monotonically non-increasing per question. Call :meth:`update` with a batch's completions
    before computing their tool-efficiency rewards (so a group's own best correct completion
    already counts), then :meth:`lookup`.

    Example:
        >>> tracker = OptimalCallTracker()
        >>> tracker.update(["q1", "q1", "q2"], calls=[2, 1, 0], correct=[1, 0, 0])
        >>> tracker.lookup(["q1", "q2"]).tolist()
        [2.0, nan]
        >>> tracker.update(["q1"], calls=[3], correct=[1]); tracker.lookup(["q1"]).tolist()
        [2.0]
    """

    def __init__(self) -> None:
        self._nstar: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._nstar)

    def __contains__(self, question_id: object) -> bool:
        return str(question_id) in self._nstar

    def update(self, question_ids: Sequence[Any], calls: Any, correct: Any) -> None:
        """Lower n* of each question to the fewest calls of its correct completions."""
        ids = [str(q) for q in question_ids]
        m = np.asarray(calls.detach().cpu() if hasattr(calls, "detach") else calls)
        ok = np.asarray(correct.detach().cpu() if hasattr(correct, "detach") else correct, dtype=np.float64)
        if not (len(ids) == m.shape[0] == ok.shape[0]):
            raise ValueError(
                f"question_ids, calls and correct must have one entry per completion, got "
                f"{len(ids)}, {m.shape[0]}, {ok.shape[0]}"
            )
        if (m < 0).any():
            raise ValueError("calls must be >= 0")
        rows = np.flatnonzero(ok >= 1.0)
        if rows.size == 0:
            return
        # fewest calls per question among this batch's correct rows, then one dict update each
        unique_ids, inverse = np.unique(np.asarray(ids, dtype=object)[rows].astype(str), return_inverse=True)
        batch_min = np.full(unique_ids.size, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(batch_min, inverse, m[rows].astype(np.int64))
        for question, fewest in zip(unique_ids.tolist(), batch_min.tolist(), strict=True):
            previous = self._nstar.get(question)
            if previous is None or fewest < previous:
                self._nstar[question] = int(fewest)

    def lookup(self, question_ids: Iterable[Any]) -> np.ndarray:
        """n* per question id as float64, NaN where no correct completion has been seen."""
        return np.array([self._nstar.get(str(q), np.nan) for q in question_ids], dtype=np.float64)

    def as_dict(self) -> dict[str, int]:
        return dict(self._nstar)

    def state_dict(self) -> dict[str, Any]:
        return {"nstar": dict(self._nstar)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "nstar" not in state:
            raise ValueError("optimal-call tracker state needs an 'nstar' mapping (what state_dict() returned)")
        table = {str(k): int(v) for k, v in state["nstar"].items()}
        if any(v < 0 for v in table.values()):
            raise ValueError("n* values must be >= 0")
        self._nstar = table


def count_tool_calls(messages: Sequence[dict[str, Any]] | str) -> int:
    """Number of tool calls the assistant made in a chat transcript.

    Accepts TRL's conversational completions (a list of messages, assistant messages with
    ``tool_calls``) or raw text (counts ``<tool_call>`` tags).
    """
    if isinstance(messages, str):
        return messages.count("<tool_call>")
    total = 0
    for message in messages:
        if message.get("role") != "assistant":
            continue
        total += len(message.get("tool_calls") or [])
        content = message.get("content")
        if not message.get("tool_calls") and isinstance(content, str):
            total += content.count("<tool_call>")
    return total
