"""What ``paretopo eval`` evaluates: :class:`EvalSettings` (light: the command line builds its
parser from these fields without importing torch; ``paretopo.evaluation.evaluate`` runs them)."""

from __future__ import annotations

from dataclasses import dataclass

from paretopo.core.settings import (
    MAX_EXAMPLES,
    MAX_GENERATIONS,
    MAX_TOKENS,
    check_settings,
    setting,
)
from paretopo.tools.sandbox import require_isolation_setting

__all__ = ["EvalSettings"]


@dataclass
class EvalSettings:
    """What ``paretopo eval`` evaluates; the command's options are generated from these fields."""

    policy: str = setting("", "a run folder (its final/ policy), checkpoint, exported adapter or model folder",
                          positional=True)
    task: str = setting("arithmetic", "task name (arithmetic, math, hotpotqa, nq_open)")
    split: str = setting("test", "split of the task to evaluate on")
    data: str | None = setting(None, "a JSONL file with id, question, answer, evaluated instead of --split", kind=str)
    limit: int | None = setting(None, "evaluate the first N questions; default: all", kind=int, minimum=1,
                                maximum=MAX_EXAMPLES)
    samples: int = setting(1, "completions per question (1: greedy decoding; more: sampled at temperature 1, "
                              "with greedy decoding's accuracy and calls beside them as greedy_*)",
                           minimum=1, maximum=MAX_GENERATIONS)
    max_new_tokens: int = setting(160, "new tokens per completion, tool responses included", minimum=1,
                                  maximum=MAX_TOKENS)
    tools_in_prompt: bool = setting(False, "render the tools block in the prompt (real chat models; the tiny "
                                           "policy was taught the protocol without it)")
    by: str | None = setting(None, "also break accuracy down by an example field (e.g. tier) and tool use", kind=str)
    out: str | None = setting(None, "also write the JSON summary to this file", kind=str)
    require_isolation: str | None = require_isolation_setting()

    def __post_init__(self) -> None:
        check_settings(self)
