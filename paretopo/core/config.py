"""ParetoPOConfig: every hyper-parameter of the method, with help text, validation and presets.

One dataclass describes the *method* (objectives, stage 1, stage 2, estimator options); the
trainer combines it with TRL's ``GRPOConfig`` for the optimiser side. Every method of the
comparison is a preset of this one config, so all of them run through the same trainer:

>>> ParetoPOConfig.from_preset("otc_grpo").stage1_estimator
'otc_grpo'
>>> sorted(PRESETS)  # doctest: +NORMALIZE_WHITESPACE
['calibrated_rank', 'fixed_weight', 'gdpo', 'hv_scalarized', 'mo_grpo', 'no_dynamic_weighting',
 'no_pareto_ranking', 'no_stage1', 'no_stage2', 'otc_grpo', 'paretopo', 'torl_grpo']

A run has stage 1 for ``stage1_steps`` steps (``None``: one epoch over the training set; 0: no
stage 1) and then stage 2 with ``stage2_estimator`` until the end; ``stage2_estimator=None``
keeps stage 1 for the whole run (single-stage baselines and the "w/o Stage 2" ablation).
Defaults and which of them we had to reconstruct are listed in docs/method.md.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from paretopo.core.choices import (
    InitialMetaReward,
    Reference,
    Stage1Normalization,
    Stage2Center,
    ToolEfficiencyForm,
    UnknownNstar,
    ZScoreScale,
)
from paretopo.core.objectives import DEFAULT_OBJECTIVES
from paretopo.core.settings import MAX_STEPS, MAX_TOKENS, MAX_TOOL_CALLS, check_number

# paretopo.core.advantages (torch) is imported where an estimator is looked up, so that reading
# the fields (the command line's help) needs no torch

__all__ = ["OPTION_CHOICES", "PRESETS", "ParetoPOConfig"]

Stage1Outcome = Literal["validation", "train_batch", "train_batch_ema"]
"""Where stage 1's outcome vector comes from (read by ``paretopo.training.trainer``)."""


# Largest accepted value of each count (their lower bounds are checked in _validate).
_COUNT_MAXIMA = {"max_tool_calls": MAX_TOOL_CALLS, "brevity_length": MAX_TOKENS, "stage1_steps": MAX_STEPS,
                 "stage1_eval_every": MAX_STEPS}


def _help(text: str, default: Any = MISSING, *, choices: Any = None, **kwargs: Any) -> Any:
    """A field with its help text and, for a string option, the ``Literal`` type whose values it accepts
    (declared by the code that interprets the option)."""
    metadata = {"help": text, **({"choices": get_args(choices)} if choices is not None else {})}
    if default is MISSING:
        return field(metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class ParetoPOConfig:
    """Method hyper-parameters (see docs/method.md for equations and provenance)."""

    method: str = _help("Name of the method this config implements (a preset name or your own label).", "paretopo")
    objectives: tuple[str, ...] = _help(
        "Objective names, all maximised, in column order of the reward matrix.", DEFAULT_OBJECTIVES
    )
    weights: tuple[float, ...] = _help(
        "User preference w, one per objective (>= 0, not all 0); (0.6, 0.4) reproduces the paper's "
        "default row of Table 4.", (0.6, 0.4)
    )
    # tool efficiency (Eq. 4 / OTC)
    tool_efficiency_form: str = _help(
        "'exp': ParetoPO Eq. 4 exp(-alpha |m - n*|); 'otc': OTC's sin/cos reward.", "exp", choices=ToolEfficiencyForm
    )
    alpha: float = _help("Penalty severity alpha of Eq. 4 (> 0); one extra call costs 1 - exp(-alpha).", 0.5)
    max_tool_calls: int = _help(
        "Tool budget per completion (C); also OTC's c. Math 3, multi-hop QA 4 in the paper's setting.", 3
    )
    unknown_nstar: str = _help(
        "Tool efficiency while a question has no correct completion yet: 'one' (efficiency 1, rank on the "
        "task only) or 'zero' (treat n* = 0, prefer no tools).", "one", choices=UnknownNstar
    )
    gate_tool_by_correctness: bool = _help(
        "If True (default, chosen on validation: docs/method.md), r_tool <- r_task * r_tool (OTC-style; "
        "wrong answers get (0, 0), so a cheap wrong answer never ties a correct one on the Pareto front). "
        "False is the paper's reading: independent objectives.", True
    )
    brevity_length: int | None = _help(
        "Completion length in tokens at which the 'brevity' objective reaches 0 (brevity = clip(1 - L / "
        "brevity_length, 0, 1)); None = the run's max_completion_length (set by paretopo train).", None
    )
    # stage 1 (Eqs. 5-6)
    stage1_estimator: str = _help("Advantage estimator of stage 1 (a name in paretopo.core.advantages.ESTIMATORS).",
                                  "hv_scalarized")
    stage1_steps: int | None = _help(
        "Length of stage 1 in optimiser steps; None = one epoch over the training set, 0 = no stage 1.", None
    )
    gamma: float = _help("EMA smoothing factor of the hypervolume gain (Eq. 5), in [0, 1).", 0.9)
    dynamic_weighting: bool = _help(
        "If False the meta reward stays 1 (ablation 'w/o Dynamic Weighting').", True
    )
    stage1_adv_norm: str = _help(
        "Stage-1 advantage normalisation: 'group_std' (GRPO z-score; the batch-wide meta reward then "
        "cancels) or 'mean_only' (centring only, keeps its effect).", "group_std", choices=Stage1Normalization
    )
    stage1_outcome: str = _help(
        "Where the stage-1 outcome vector comes from: 'validation' (held-out greedy evaluation every "
        "stage1_eval_every steps), 'train_batch' (the batch's mean objectives, no extra generation) or "
        "'train_batch_ema' (an EMA of those, decay stage1_outcome_decay). Default 'train_batch': under the "
        "default group_std normalisation the meta reward cancels, so a validation outcome only costs time "
        "(docs/method.md has the measurement).",
        "train_batch", choices=Stage1Outcome,
    )
    stage1_outcome_decay: float = _help(
        "Decay of the 'train_batch_ema' outcome: ema <- decay * ema + (1 - decay) * batch mean, in [0, 1).",
        0.8,
    )
    stage1_eval_every: int = _help("Steps between validation outcomes in stage 1 (>= 1).", 1)
    hv_reference: str = _help(
        "Hypervolume reference point: 'nadir' (all zeros) or 'initial' (the first outcome vector, as the "
        "dynamic-weighting code does).", "nadir", choices=Reference
    )
    initial_meta_reward: str = _help(
        "Meta reward before the first outcome: 'one' (1.0, as the dynamic-weighting code) or 'formula' "
        "(0.5 + 1.5 tanh(0) = 0.5).", "one", choices=InitialMetaReward
    )
    # stage 2 (Eqs. 7-9)
    stage2_estimator: str | None = _help(
        "Advantage estimator of stage 2; None keeps stage 1 for the whole run.", "pareto_rank"
    )
    beta: float = _help("Within-rank refinement weight beta of Eq. 9, in (0, 1].", 0.5)
    stage2_center: str = _help(
        "Centring of the Eq. 9 advantages: 'group_zscore' (default, chosen on validation: docs/method.md), "
        "'group_mean', or 'none' (raw, the paper's reading: every completion gets a positive advantage).",
        "group_zscore", choices=Stage2Center,
    )
    # baselines / shared
    scale_rewards: str = _help(
        "Std scaling of the z-score baselines: 'group' (GRPO), 'batch', or 'none' (Dr.GRPO).", "group",
        choices=ZScoreScale,
    )
    otc_alpha: float = _help("OTC's reward scale alpha_OTC (> 0).", 1.0)
    advantage_eps: float = _help("Epsilon added to standard deviations (TRL uses 1e-4).", 1e-4)

    def __post_init__(self) -> None:
        self.objectives = tuple(str(o) for o in self.objectives)
        self.weights = tuple(float(w) for w in self.weights)
        self._validate()

    # ---------------------------------------------------------------------------------------
    def _validate(self) -> None:
        from paretopo.core.advantages import ESTIMATORS

        problems: list[str] = []
        if len(self.objectives) < 2:
            problems.append(f"objectives needs at least 2 names, got {self.objectives}")
        if len(set(self.objectives)) != len(self.objectives):
            problems.append(f"objectives must be distinct, got {self.objectives}")
        if len(self.weights) != len(self.objectives):
            problems.append(
                f"weights has {len(self.weights)} entries but there are {len(self.objectives)} objectives "
                f"{self.objectives}; give one weight per objective"
            )
        if any(w < 0 for w in self.weights) or not any(w > 0 for w in self.weights):
            problems.append(f"weights must be >= 0 with at least one > 0, got {self.weights}")
        for name, choices in OPTION_CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                problems.append(f"{name}={value!r} is not one of {list(choices)}")
        if not self.alpha > 0:
            problems.append(f"alpha must be > 0, got {self.alpha}; try 0.5")
        if not isinstance(self.max_tool_calls, int) or self.max_tool_calls < 0:
            problems.append(f"max_tool_calls must be an integer >= 0, got {self.max_tool_calls!r}")
        elif self.tool_efficiency_form == "otc" and self.max_tool_calls < 1:
            problems.append("the OTC tool reward needs max_tool_calls (its c) >= 1")
        if self.brevity_length is not None and (not isinstance(self.brevity_length, int) or self.brevity_length < 1):
            problems.append(f"brevity_length must be None (the run's max_completion_length) or an integer >= 1, "
                            f"got {self.brevity_length!r}")
        if not 0.0 <= self.gamma < 1.0:
            problems.append(f"gamma must be in [0, 1), got {self.gamma}; try 0.9")
        if not 0.0 < self.beta <= 1.0:
            problems.append(f"beta must be in (0, 1] (larger lets worse ranks overtake better ones), got {self.beta}")
        if self.stage1_steps is not None and (not isinstance(self.stage1_steps, int) or self.stage1_steps < 0):
            problems.append(f"stage1_steps must be None (one epoch) or an integer >= 0, got {self.stage1_steps!r}")
        if not 0.0 <= self.stage1_outcome_decay < 1.0:
            problems.append(f"stage1_outcome_decay must be in [0, 1), got {self.stage1_outcome_decay}; try 0.8")
        if not isinstance(self.stage1_eval_every, int) or self.stage1_eval_every < 1:
            problems.append(f"stage1_eval_every must be an integer >= 1, got {self.stage1_eval_every!r}")
        for name in ("stage1_estimator", "stage2_estimator"):
            value = getattr(self, name)
            if value is not None and value not in ESTIMATORS:
                problems.append(f"{name}={value!r} is unknown; choose one of {sorted(ESTIMATORS)}")
            elif value is not None:
                missing = sorted(set(ESTIMATORS[value].reads.values()) - {f.name for f in fields(self)})
                if missing:
                    problems.append(f"estimator {value!r} reads config fields {missing}, which ParetoPOConfig lacks")
        if self.stage2_estimator is None and self.stage1_steps == 0:
            problems.append("stage1_steps=0 with stage2_estimator=None leaves no stage to train with")
        if not self.otc_alpha > 0:
            problems.append(f"otc_alpha must be > 0, got {self.otc_alpha}")
        if not self.advantage_eps >= 0:
            problems.append(f"advantage_eps must be >= 0, got {self.advantage_eps}")
        problems += self._range_problems(already=problems)
        if problems:
            raise ValueError("invalid ParetoPOConfig:\n  - " + "\n  - ".join(problems))

    def _range_problems(self, already: list[str]) -> list[str]:
        """Every number finite (``inf`` passes the ``> 0`` checks above) and every count bounded;
        a field ``already`` names a problem of is not named twice."""
        problems = [check_number(f"weights[{k}]", w) for k, w in enumerate(self.weights)]
        for item in fields(self):
            value = getattr(self, item.name)
            named = any(p.startswith(f"{item.name}=") or p.startswith(f"{item.name} ") for p in already)
            if item.type in ("float", "float | None") and value is not None and not named:
                problems.append(check_number(item.name, value))
        for name, largest in _COUNT_MAXIMA.items():
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                problems.append(check_number(name, value, integer=True, maximum=largest))
        return [p for p in problems if p]

    # ---------------------------------------------------------------------------------------
    @property
    def two_stage(self) -> bool:
        """Whether the run switches from a stage-1 to a stage-2 estimator (the run inspector labels steps
        by stage only then)."""
        return self.stage2_estimator is not None and self.stage1_steps != 0

    @property
    def uses_meta_reward(self) -> bool:
        """Whether an outcome vector / HV archive drives the advantages (a stage-1 estimator that
        asks for the meta reward, e.g. hv_scalarized)."""
        from paretopo.core.advantages import ESTIMATORS

        return "meta_reward" in ESTIMATORS[self.stage1_estimator].inputs and self.stage1_steps != 0

    def stage_at(self, step: int, steps_per_epoch: int | None = None) -> int:
        """Stage (1 or 2) of optimiser step ``step`` (0-based)."""
        if self.stage2_estimator is None:
            return 1
        length = self.stage1_steps
        if length is None:
            if steps_per_epoch is None:
                raise ValueError("stage1_steps=None means one epoch: pass steps_per_epoch")
            length = steps_per_epoch
        return 1 if step < length else 2

    def estimator_for_stage(self, stage: int) -> str:
        if stage == 2 and self.stage2_estimator is not None:
            return self.stage2_estimator
        return self.stage1_estimator

    def estimator_options(self, stage: int, meta_reward: float = 1.0) -> dict[str, Any]:
        """Keyword options for this stage's estimator, taken from the config."""
        return self.options_for_estimator(self.estimator_for_stage(stage), meta_reward=meta_reward)

    def options_for_estimator(self, name: str, meta_reward: float = 1.0) -> dict[str, Any]:
        """Keyword options of any registered estimator: the config fields it declared (see
        ``paretopo.core.advantages.register``) and the meta reward (1 without dynamic weighting)."""
        from paretopo.core.advantages import estimator_options

        return estimator_options(name, self, meta_reward=meta_reward if self.dynamic_weighting else 1.0)

    # ---------------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ParetoPOConfig:
        """A named method (see :data:`PRESETS`), optionally with overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown method preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{"method": name, **PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["objectives"] = list(self.objectives)
        data["weights"] = list(self.weights)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParetoPOConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ParetoPOConfig fields {unknown}; known fields are {sorted(known)}")
        return cls(**data)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text (used by the CLI and the docs)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    f.name: f.metadata["choices"] for f in fields(ParetoPOConfig) if "choices" in f.metadata}
"""Field -> the values it accepts, for every option with a fixed set (config validation and the CLI)."""

_SINGLE_STAGE = {"stage2_estimator": None}

PRESETS: dict[str, dict[str, Any]] = {
    # ParetoPO: stage 1 for one epoch, then Pareto ranking
    "paretopo": {},
    # baselines (one estimator for the whole run)
    "torl_grpo": {**_SINGLE_STAGE, "stage1_estimator": "torl_grpo"},
    "fixed_weight": {**_SINGLE_STAGE, "stage1_estimator": "fixed_weight"},
    "otc_grpo": {**_SINGLE_STAGE, "stage1_estimator": "otc_grpo", "tool_efficiency_form": "otc"},
    "mo_grpo": {**_SINGLE_STAGE, "stage1_estimator": "mo_grpo"},
    "gdpo": {**_SINGLE_STAGE, "stage1_estimator": "gdpo"},
    "hv_scalarized": {**_SINGLE_STAGE, "stage1_estimator": "hv_scalarized"},
    # the paper's Table 3 ablations
    "no_stage1": {"stage1_steps": 0},
    "no_stage2": {**_SINGLE_STAGE},
    "no_dynamic_weighting": {"dynamic_weighting": False},
    "no_pareto_ranking": {"stage2_estimator": "fixed_weight"},
    # beyond the paper: fronts spaced by their mean weighted sum (the weighted sum's break-even)
    "calibrated_rank": {"stage2_estimator": "calibrated_rank"},
}
