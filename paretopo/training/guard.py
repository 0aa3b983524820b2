"""Stop a run whose loss or weights stop being finite, before it saves them.

A learning rate that is finite but far too large, or an unlucky batch, can turn the weights
into NaN or infinity; training on would write checkpoints and a final model that only produce
garbage, and the run would still exit 0. :class:`NonFiniteGuard` checks the logged loss and
the trainable weights after every optimiser step (before the trainer decides to save) and
raises :class:`NonFiniteTraining`, one line naming the step and the last checkpoint, so the
run folder keeps its last good checkpoint and nothing after it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

__all__ = ["NonFiniteGuard", "NonFiniteTraining", "first_non_finite_parameter"]


class NonFiniteTraining(RuntimeError):
    """The loss or the weights of a run became NaN or infinite."""


def first_non_finite_parameter(model: torch.nn.Module) -> str | None:
    """Name of the first trainable parameter holding a NaN or an infinity (None if all are finite).

    Only trainable parameters change during training (LoRA: the adapters), so only they are
    checked; one device synchronisation for all of them.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).cpu()
    bad = (~finite).nonzero()
    return named[int(bad[0])][0] if len(bad) else None


def _last_checkpoint(output_dir: str) -> str:
    from paretopo.evaluation.runlog import CHECKPOINT_STATE_FILE, checkpoint_step

    complete = [c for c in Path(output_dir).glob("checkpoint-*") if (c / CHECKPOINT_STATE_FILE).exists()]
    if not complete:
        return "no checkpoint was saved before it"
    last = max(complete, key=checkpoint_step)
    return f"{last} is the last good checkpoint (a smaller learning rate, --lr, usually avoids this)"


class NonFiniteGuard(TrainerCallback):
    """Raise :class:`NonFiniteTraining` as soon as the loss or a trainable weight is not finite."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # runs before the trainer logs and saves this step: NaN weights never reach a checkpoint
        if model is not None and (name := first_non_finite_parameter(model)) is not None:
            self._stop(args, state, f"weight {name} became NaN or infinite")
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if isinstance(loss, (int, float)) and not math.isfinite(loss):
            self._stop(args, state, f"the loss became {loss}")
        return control

    @staticmethod
    def _stop(args: Any, state: Any, what: str) -> None:
        raise NonFiniteTraining(f"training stopped at step {state.global_step}: {what}; "
                                f"{_last_checkpoint(args.output_dir)}")
