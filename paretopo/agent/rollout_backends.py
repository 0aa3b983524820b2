"""Switchable rollout backends: who decodes the tool-using completions during training.

A backend is a function with ``paretopo.agent.rollout.generate_rollouts``' signature and contract
(B prompts x G samples -> B*G ``Rollout``s, grouped by prompt, with ``completion_ids``,
``loss_mask`` and ``logprobs`` aligned token by token). ``paretopo.training.trainer.make_rollout_func`` turns any
registered backend into TRL's ``rollout_func`` (the only place a rollout meets TRL), so a second backend is added by registering one function and is
measured against the first with ``benchmarks/gpu_check.py``.

Registered:

* ``"tool_loop"``: ``paretopo.agent.rollout.generate_rollouts``, the batched KV-cached loop that runs
  tools as soon as ``</tool_call>`` is sampled (the default, and the only one implemented).

Not registered, and why: a vLLM backend (Unsloth's ``fast_inference=True``) cannot be carried to
the GPU machine this project is lent (no network, 64 MiB per call); docs/gpu.md lists what it
has to do (stop on ``</tool_call>``, run the tool, resume from the prefix, return sampling
log-probabilities and the environment mask).
"""

from __future__ import annotations

from collections.abc import Callable

from paretopo.agent.rollout import generate_rollouts

__all__ = ["DEFAULT_ROLLOUT_BACKEND", "ROLLOUT_BACKENDS", "get_rollout_backend", "register_rollout_backend"]

RolloutBackend = Callable[..., list]
ROLLOUT_BACKENDS: dict[str, RolloutBackend] = {"tool_loop": generate_rollouts}
DEFAULT_ROLLOUT_BACKEND = "tool_loop"


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
