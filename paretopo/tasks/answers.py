"""Final-answer extraction and checking (docs/method.md).

Extraction:

* ``extract_boxed`` -- the last ``\\boxed{...}`` / ``\\fbox{...}`` of a math completion.
* ``extract_tag`` -- the last ``<answer>...</answer>`` span of a QA completion.

Checking:

* ``math_equal`` -- ToRL's ``is_equiv`` idea: case-insensitive string equality first, then
  ``math_verify.parse`` + ``math_verify.verify`` on both answers wrapped in ``\\boxed{}``.
  Dollar signs (math delimiters, ``\\$`` currency) are dropped first. ToRL's third stage,
  Hendrycks' ``strip_string`` equality, is left out: math-verify normalises LaTeX itself
  (``tests/test_answers.py`` lists the forms checked).
* ``normalize_qa_answer`` / ``qa_exact_match`` / ``qa_f1`` -- SQuAD normalisation and scores,
  as Search-R1 grades QA.

How the math check is time-limited, and why in a separate process: math-verify's own timeouts
use ``signal.alarm``, which only works in the main thread, and no signal can interrupt work
that sympy hands to C: comparing ``\\boxed{9^{9^{9}}}`` with anything builds a 370-million-digit
integer and ignored a SIGALRM for minutes when measured here. So the symbolic stage runs in one
long-lived worker process per Python process (started on first use, about a second to import
sympy), with math-verify's timeouts switched off there (``parsing_timeout=None``,
``timeout_seconds=None``). The caller waits at most ``timeout_s`` for the verdict; on timeout
the worker is killed, the answer counts as wrong, and the next call starts a new worker. This
works from any thread (calls are serialised by a lock) and after ``fork`` (a child process
starts its own worker). The string stage runs in-process, so exact matches never touch the
worker. Bad input never raises; a worker that cannot start at all (a broken environment)
raises RuntimeError rather than silently marking every answer wrong.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import string
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

__all__ = [
    "extract_boxed",
    "extract_tag",
    "math_equal",
    "normalize_qa_answer",
    "qa_exact_match",
    "qa_f1",
    "symbolic_equal",
]

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced.

    Escaped braces (``\\{``, ``\\}``) inside the box do not count. ``\\boxed 5`` (no braces)
    gives the next whitespace-delimited token. Returns None when there is no box or the last
    one is never closed (a truncated completion has no final answer).

    Example:
        >>> extract_boxed(r"so $x = \\boxed{\\frac{1}{2}}$ and finally \\boxed{\\{1, 2\\}}")
        '\\\\{1, 2\\\\}'
    """
    if not isinstance(text, str):
        return None
    start = max(text.rfind(command) for command in _BOX_COMMANDS)
    if start < 0:
        return None
    command = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
    position = start + len(command)
    if position < len(text) and text[position] == " ":
        token = text[position:].split(maxsplit=1)
        return token[0].rstrip("$.") if token else None
    if position >= len(text) or text[position] != "{":
        return None
    depth = 0
    index = position
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2  # skip the escaped character, e.g. \{ or \}
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[position + 1 : index].strip()
        index += 1
    return None


def extract_tag(text: str, tag: str = "answer") -> str | None:
    """Stripped content of the last ``<tag>...</tag>`` span in ``text``, or None.

    Example:
        >>> extract_tag("<answer> Paris </answer> no, <answer>Lyon</answer>")
        'Lyon'
    """
    if not isinstance(text, str):
        return None
    escaped = re.escape(tag)
    spans = re.findall(rf"<{escaped}>(.*?)</{escaped}>", text, flags=re.DOTALL)
    return spans[-1].strip() if spans else None


# --- math equivalence -------------------------------------------------------------------------


def _strip_math_delimiters(answer: str) -> str:
    """Drop dollar signs: math delimiters (OlympiadBench golds look like ``$69$,$84$``) and the
    escaped currency sign of word problems (``\\$18``)."""
    answer = answer.strip().replace("\\$", "").replace("$", "")
    for opening, closing in (("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(opening) and answer.endswith(closing):
            answer = answer[len(opening) : -len(closing)]
    return answer.strip()


def math_equal(prediction: str, gold: str, timeout_s: float = 5.0) -> bool:
    """Whether a final answer equals the gold answer (both LaTeX or plain text, no ``\\boxed``).

    Case-insensitive string equality first; otherwise ``symbolic_equal`` (math-verify in a
    worker process, at most ``timeout_s`` seconds). Anything that is not a non-empty string,
    fails to parse or times out counts as not equal; the only error raised is RuntimeError
    when the worker process cannot be started at all.

    Example:
        >>> math_equal("0.5", "\\\\frac{1}{2}"), math_equal("3", "\\\\frac{1}{2}")
        (True, False)
    """
    if not isinstance(prediction, str) or not isinstance(gold, str):
        return False
    prediction, gold = _strip_math_delimiters(prediction), _strip_math_delimiters(gold)
    if not prediction or not gold:
        return False
    if prediction.casefold() == gold.casefold():
        return True
    return symbolic_equal(prediction, gold, timeout_s)


def symbolic_equal(prediction: str, gold: str, timeout_s: float = 5.0) -> bool:
    """math-verify's verdict on ``prediction`` vs ``gold``, computed in the worker process.

    Both are wrapped in ``\\boxed{}`` so math-verify's LaTeX extraction finds them. Returns
    False on parse failure, on any error and when the verdict takes longer than ``timeout_s``
    (the worker is then killed and restarted on the next call). The first call in a process
    also waits for the worker to start; that wait does not count against ``timeout_s``.
    """
    if not isinstance(prediction, str) or not isinstance(gold, str):
        return False
    return _WORKER.check(prediction, gold, timeout_s)


def _as_boxed(answer: str) -> str:
    return answer if "\\boxed" in answer else "\\boxed{" + answer + "}"


def _symbolic_equal_in_process(prediction: str, gold: str) -> bool:
    """The math-verify comparison itself, without time limit (runs inside the worker)."""
    from math_verify import parse, verify

    gold_parsed = parse(_as_boxed(gold), parsing_timeout=None)
    prediction_parsed = parse(_as_boxed(prediction), parsing_timeout=None)
    if not gold_parsed or not prediction_parsed:
        return False
    return bool(verify(gold_parsed, prediction_parsed, timeout_seconds=None))


def serve_math_worker() -> None:
    """Worker loop: one JSON request per stdin line, one ``{"equal": bool}`` per stdout line.

    Started by ``symbolic_equal`` with ``python -c``; not meant to be called directly.
    """
    import math_verify  # noqa: F401  (import before signalling ready: it is the slow part)

    # With its timeouts off on purpose, math-verify warns about that, and sympy may warn about
    # odd input: neither helps the caller. Real failures still reach stderr.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray library prints must not corrupt replies
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            equal = _symbolic_equal_in_process(request["prediction"], request["gold"])
        except Exception:  # garbage in -> "not equal", never a dead worker
            equal = False
        replies.write(json.dumps({"equal": equal}) + "\n")
        replies.flush()


class _MathVerifyWorker:
    """One worker process, replaced after a timeout, a crash or a fork of the parent."""

    startup_timeout_s = 120.0  # importing sympy on a busy 2-core machine can take a while

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._owner_pid = -1
        self._buffer = b""
        atexit.register(self._stop)

    def check(self, prediction: str, gold: str, timeout_s: float) -> bool:
        request = (json.dumps({"prediction": prediction, "gold": gold}) + "\n").encode()
        with self._lock:
            self._ensure_started()
            try:
                self._process.stdin.write(request)
                self._process.stdin.flush()
                return json.loads(self._read_line(time.monotonic() + timeout_s))["equal"] is True
            except (OSError, ValueError, KeyError, TypeError, TimeoutError):
                self._stop()
                return False

    def _ensure_started(self) -> None:
        alive = self._process is not None and self._process.poll() is None
        if alive and self._owner_pid == os.getpid():
            return
        self._stop()
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from paretopo.tasks.answers import serve_math_worker; serve_math_worker()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            self._owner_pid = os.getpid()
            self._buffer = b""
            if self._read_line(time.monotonic() + self.startup_timeout_s) != "ready":
                raise OSError("unexpected first line from the worker")
        except (OSError, TimeoutError) as error:
            # Not the answer's fault: say so instead of marking every answer wrong.
            self._stop()
            raise RuntimeError(
                f"could not start the math-verify worker process ({error!r}); "
                "check that `python -c 'import math_verify'` works in this environment"
            ) from error

    def _read_line(self, deadline: float) -> str:
        stdout = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            readable, _, _ = select.select([stdout], [], [], remaining)
            if readable:
                chunk = os.read(stdout, 65536)
                if not chunk:
                    raise OSError("math-verify worker exited")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if self._owner_pid == os.getpid():  # never kill a worker that a parent process owns
            process.kill()
            process.wait()
        for pipe in (process.stdin, process.stdout):
            pipe.close()


_WORKER = _MathVerifyWorker()


# --- question answering (SQuAD) ---------------------------------------------------------------

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_qa_answer(answer: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation, drop articles a/an/the, collapse spaces.

    Example:
        >>> normalize_qa_answer("  The Eiffel-Tower!  ")
        'eiffeltower'
    """
    answer = answer.lower()
    answer = "".join(char for char in answer if char not in _PUNCTUATION)
    answer = _ARTICLES.sub(" ", answer)
    return " ".join(answer.split())


def _gold_list(golds: str | list[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else list(golds)


def qa_exact_match(prediction: str | None, golds: str | list[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    Example:
        >>> qa_exact_match("the Beatles", ["Beatles", "The Fab Four"])
        1.0
    """
    if not isinstance(prediction, str):
        return 0.0
    normalized = normalize_qa_answer(prediction)
    return float(any(normalized == normalize_qa_answer(gold) for gold in _gold_list(golds)))


def _token_f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    if not prediction_tokens or not gold_tokens:
        return float(prediction_tokens == gold_tokens)  # SQuAD v2: both empty counts as a match
    overlap = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_f1(prediction: str | None, golds: str | list[str]) -> float:
    """SQuAD token F1 of the normalised prediction, maximised over the gold answers.

    Example:
        >>> round(qa_f1("Chief of Protocol of the US", "Chief of Protocol"), 3)
        0.75
    """
    if not isinstance(prediction, str):
        return 0.0
    prediction_tokens = normalize_qa_answer(prediction).split()
    return max(
        (_token_f1(prediction_tokens, normalize_qa_answer(gold).split()) for gold in _gold_list(golds)),
        default=0.0,
    )
