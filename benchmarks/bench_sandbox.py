"""Round-trip latency of the python sandbox: `print(1+1)` in, "2" out, ~50 runs per level.

Run: .venv/bin/python benchmarks/bench_sandbox.py [--runs 50]
Prints the median and p90 per isolation level, and for a numpy import (site-packages on).
"""

import argparse
import statistics

from paretopo.tools.sandbox import ISOLATED_LEVELS, PythonSandbox, _level_problem


def latency(box: PythonSandbox, code: str, runs: int) -> tuple[float, float]:
    """(median, p90) round trip in milliseconds; the first run only warms caches."""
    box.run(code)
    times = sorted(box.run(code).duration_s * 1e3 for _ in range(runs))
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    levels = [level for level in ISOLATED_LEVELS if _level_problem(level) is None]
    levels.append("rlimits-only")
    for level in levels:
        for label, code in (("print(1+1)", "print(1+1)"), ("import numpy", "import numpy")):
            median, p90 = latency(PythonSandbox(mode=level), code, args.runs)
            print(
                f"{level:13s} {label:13s} median {median:6.1f} ms   p90 {p90:6.1f} ms   ({args.runs} runs)"
            )


if __name__ == "__main__":
    main()
