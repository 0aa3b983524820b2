"""The accepted values of every string option of the method, each listed once.

Each ``Literal`` is read by the code that interprets the option (named below) and by
``ParetoPOConfig``'s validation and the command line (through ``OPTION_CHOICES``). They live in
this module, which imports nothing heavy, so that reading them (``paretopo train --help``) loads
no torch.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["InitialMetaReward", "Reference", "Stage1Normalization", "Stage2Center", "ToolEfficiencyForm",
           "UnknownNstar", "ZScoreScale"]

ZScoreScale = Literal["group", "batch", "none"]
"""Std scaling of a group z-score (``advantages.group_zscore``; ``ParetoPOConfig.scale_rewards``)."""
Stage1Normalization = Literal["group_std", "mean_only"]
"""Normalisation of stage 1's advantages (``advantages.hv_scalarized``; ``ParetoPOConfig.stage1_adv_norm``)."""
Stage2Center = Literal["none", "group_mean", "group_zscore"]
"""Centring of Eq. 9's advantages (``advantages.pareto_rank``; ``ParetoPOConfig.stage2_center``)."""
ToolEfficiencyForm = Literal["exp", "otc"]
"""Form of the tool-efficiency objective (``objectives.tool_efficiency``)."""
UnknownNstar = Literal["one", "zero"]
"""n* of a question no correct answer has been seen for (``objectives.OptimalCallTracker``)."""
InitialMetaReward = Literal["one", "formula"]
"""Stage 1's meta reward before any progress (``scalarize.HVScalarizer``)."""
Reference = Literal["nadir", "initial"]
"""Hypervolume reference point of stage 1 (``scalarize.HVScalarizer``)."""
