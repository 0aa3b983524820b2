"""Switchable rollout backends: who decodes the tool-using completions during training.

A backend is a function with ``paretopo.agent.rollout.generate_rollouts``' signature and contract
(B prompts x G samples -> B*G ``Rollout``s, grouped by prompt, with ``completion_ids``,
``loss_mask`` and ``logprobs`` aligned token by token). ``paretopo.training.trainer.make_rollout_func`` turns any
registered backend into TRL's ``rollout_func`` (the only place a rollout meets TRL), so a second backend is added by registering one function and is
measured against the first with ``benchmarks/gpu_check.py``.

Registered:

* ``"tool_loop"``: ``paretopo.agent.rollout.generate_rollouts``, the batched KV-cached loop that runs
  tools as soon as ``</tool_call>`` is sampled (the default).
* ``"segmented_generate"``: ``paretopo.agent.segmented_rollout.generate_rollouts_segmented``, the
  same contract through ``model.generate``, one model turn per call. An Unsloth-loaded model
  cannot run the KV-cached loop (tuple caches, per-module decode buffers), so
  ``rollout_backend_for`` gives it this backend whenever ``"tool_loop"`` is asked for.

Not registered, and why: a vLLM backend (Unsloth's ``fast_inference=True``) cannot be carried to
the GPU machine this project is lent (no network, 64 MiB per call); docs/gpu.md lists what it
has to do (stop on ``</tool_call>``, run the tool, resume from the prefix, return sampling
log-probabilities and the environment mask).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from paretopo.agent.models import uses_unsloth_generate
from paretopo.agent.rollout import generate_rollouts
from paretopo.agent.segmented_rollout import generate_rollouts_segmented

__all__ = ["DEFAULT_ROLLOUT_BACKEND", "ROLLOUT_BACKENDS", "get_rollout_backend", "register_rollout_backend",
           "rollout_backend_for"]

logger = logging.getLogger(__name__)

RolloutBackend = Callable[..., list]
ROLLOUT_BACKENDS: dict[str, RolloutBackend] = {"tool_loop": generate_rollouts,
                                               "segmented_generate": generate_rollouts_segmented}
DEFAULT_ROLLOUT_BACKEND = "tool_loop"
UNSLOTH_ROLLOUT_BACKEND = "segmented_generate"


def register_rollout_backend(name: str, backend: RolloutBackend) -> None:
    """Add a backend under ``name`` (same signature and contract as ``generate_rollouts``)."""
    if name in ROLLOUT_BACKENDS:
        raise ValueError(f"a rollout backend named {name!r} is already registered")
    ROLLOUT_BACKENDS[name] = backend


def get_rollout_backend(name: str) -> RolloutBackend:
    """The backend registered as ``name``; a ValueError lists the registered ones otherwise."""
    try:
        return ROLLOUT_BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown rollout backend {name!r}; registered: {sorted(ROLLOUT_BACKENDS)}") from None


def rollout_backend_for(model: torch.nn.Module, requested: str = DEFAULT_ROLLOUT_BACKEND) -> str:
    """The backend name to decode ``model`` with: ``requested``, except that an Unsloth-loaded model
    asked to run the KV-cached ``"tool_loop"`` gets ``"segmented_generate"`` (the loop cannot
    drive Unsloth's patched forward; see ``paretopo.agent.segmented_rollout``)."""
    get_rollout_backend(requested)  # an unknown name fails here, whatever the model
    if requested == "tool_loop" and uses_unsloth_generate(model):
        logger.info("Unsloth-loaded policy: rollouts go through %s instead of tool_loop", UNSLOTH_ROLLOUT_BACKEND)
        return UNSLOTH_ROLLOUT_BACKEND
    return requested
