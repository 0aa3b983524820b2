"""What the apps and notebooks show beside the charts: tables rounded for reading and completions
as HTML.

* Tables: :func:`display_table` puts the key columns (rank, advantage, correctness, objectives)
  first and rounds floats (:func:`rounded_for_display`, which also shows the ``-0.0`` of tiny
  negatives as 0); :data:`PARETO_RANK_NOTE` is the sentence shown under a table of
  ``pareto_rank`` advantages.
* Transcripts: :func:`transcript_html` draws a completion's segments
  (``paretopo.agent.rollout.mask_segments``: model text, and tool output masked from the loss)
  with tool calls and tool output marked in :data:`TOOL_CALL_STYLE` / :data:`TOOL_OUTPUT_STYLE`;
  :func:`transcript_legend_html` names the colours.

Nothing here touches marimo or altair (charts: ``paretopo.evaluation.plots``).

Example:
    >>> page = transcript_html([{"text": "2+2=", "tool_output": False}, {"text": "4", "tool_output": True}])
    >>> page.count(TOOL_OUTPUT_STYLE), page.endswith('masked from the loss">4</span></pre>')
    (1, True)
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

__all__ = [
    "KEY_COLUMNS",
    "PARETO_RANK_NOTE",
    "TOOL_CALL_STYLE",
    "TOOL_OUTPUT_STYLE",
    "display_table",
    "rounded_for_display",
    "transcript_html",
    "transcript_legend_html",
]

TOOL_OUTPUT_STYLE = "background:#fde68a;color:#713f12;border-radius:3px"
TOOL_CALL_STYLE = "background:#dbeafe;color:#1e3a8a;border-radius:3px"


# --- tables ----------------------------------------------------------------------------------


def rounded_for_display(frame: pl.DataFrame, decimals: int = 3) -> pl.DataFrame:
    """Float columns rounded to ``decimals``, with the ``-0.0`` of rounded tiny negatives shown as 0.

    Example:
        >>> rounded_for_display(pl.DataFrame({"a": [-1e-13, 0.12345]}))["a"].to_list()
        [0.0, 0.123]
    """
    return frame.with_columns(
        pl.when(pl.col(c).round(decimals) == 0).then(0.0).otherwise(pl.col(c).round(decimals)).alias(c)
        for c, dtype in frame.schema.items() if dtype.is_float()
    )


PARETO_RANK_NOTE = (
    "`pareto_rank` is ParetoPO's stage-2 advantage, the paper's Eq. 9 `N_rank - rank + 1 + β (r̂ - 0.5)` "
    "standardised within each group (the default `stage2_center=\"group_zscore\"`, chosen on validation: "
    "docs/method.md), so wrong answers on worse fronts get negative values. Raw Eq. 9 "
    "(`stage2_center=\"none\"`, the paper's reading) is positive for every completion, a wrong one too: "
    "there only the order trains the policy, and it cost ~20 points of accuracy in our measurement."
)

KEY_COLUMNS = ("group", "completion", "rank", "pareto_rank", "advantage", "correct", "task", "tool_efficiency",
               "obj_task", "obj_tool_efficiency", "tool_calls", "w·r")


def display_table(frame: pl.DataFrame, first: Sequence[str] = KEY_COLUMNS, decimals: int = 3) -> pl.DataFrame:
    """A frame for a table on screen: the key columns first (those of ``first`` present, in that order), then
    the rest, floats rounded (:func:`rounded_for_display`).

    Example:
        >>> display_table(pl.DataFrame({"x": [0.123456], "rank": [1], "advantage": [2.0004]})).columns
        ['rank', 'advantage', 'x']
    """
    leading = [c for c in first if c in frame.columns]
    return rounded_for_display(frame.select(*leading, *[c for c in frame.columns if c not in leading]), decimals)


# --- transcripts -----------------------------------------------------------------------------


def _visible(text: str) -> str:
    """Escape for HTML and show control characters as their Unicode pictures (random policies emit them)."""
    shown = "".join(chr(0x2400 + ord(c)) if ord(c) < 32 and c not in "\n\t" else c for c in text)
    return html.escape(shown)


# a tool turn in a chat template (Qwen's: end of the model turn, a user turn with the response, the next
# assistant header) is written by the environment, as the training mask has it
_TAGGED_SPANS = re.compile(
    r"(<tool_call>.*?(?:</tool_call>|$))"
    r"|((?:<\|im_end\|>\s*<\|im_start\|>\w+\n)?<tool_response>.*?(?:</tool_response>(?:<\|im_end\|>\s*"
    r"<\|im_start\|>assistant\n?)?|$))", re.DOTALL)


def _model_text_html(text: str) -> str:
    """Text without a mask: ``<tool_call>`` spans marked as calls, ``<tool_response>`` spans as tool output."""
    parts, position = [], 0
    for match in _TAGGED_SPANS.finditer(text):
        parts.append(_visible(text[position:match.start()]))
        style, tip = ((TOOL_CALL_STYLE, "tool call") if match.group(1) else
                      (TOOL_OUTPUT_STYLE, "tool output: written by the environment"))
        parts.append(f'<span style="{style}" title="{tip}">{_visible(match.group(0))}</span>')
        position = match.end()
    parts.append(_visible(text[position:]))
    return "".join(parts)


def transcript_legend_html() -> str:
    """One line of HTML naming the transcript colours (tool calls, tool output)."""
    chip = "padding:0 4px;display:inline-block"
    return (f'<div>Marked: <span style="{TOOL_CALL_STYLE};{chip}">tool call</span> '
            f'<span style="{TOOL_OUTPUT_STYLE};{chip}">tool output (written by the environment, masked from '
            "the loss)</span></div>")


def transcript_html(segments: str | Sequence[Mapping[str, Any]]) -> str:
    """HTML of a completion: model text plain, tool calls blue, tool output (masked) amber.

    Args:
        segments: a list of ``{"text": str, "tool_output": bool}`` or its JSON (the run log's
            ``samples.segments`` column). A text without a mask (evaluation rows) can be passed
            as one segment with ``tool_output=False``: its ``<tool_response>`` spans are then
            marked as tool output from the tags.
    """
    items = json.loads(segments) if isinstance(segments, str) else segments
    body = "".join(
        f'<span style="{TOOL_OUTPUT_STYLE}" title="tool output: written by the environment, masked from the loss">'
        f"{_visible(item['text'])}</span>" if item["tool_output"] else _model_text_html(item["text"])
        for item in items
    )
    return ('<pre style="white-space:pre-wrap;word-break:break-word;font-size:12px;margin:0;'
            f'padding:6px;border:1px solid #e5e7eb;border-radius:4px">{body}</pre>')
