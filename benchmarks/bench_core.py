#!/usr/bin/env python3
"""Per-training-step cost of the multi-objective core, next to moocore, in one run.

* ``pareto_ranks`` on float32 torch tensors [B, G, M] (what the trainer passes) versus a
  Python loop over the B groups calling ``moocore.pareto_rank`` (the obvious alternative).
* ``hypervolume``, ``hv_contribution`` and a ``ParetoArchive`` step (contribution + insert +
  hypervolume) versus moocore's ``hypervolume`` on the same sets.

Every cell is the median of interleaved repeats (methods alternate, so load drift on a shared
machine hits both alike); torch uses one thread. Ratios > 1 mean paretopo is faster.

    python benchmarks/bench_core.py                 # table on stdout
    python benchmarks/bench_core.py --markdown FILE # also write the markdown table
"""

from __future__ import annotations

import argparse
import datetime
import gc
import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import moocore
import numpy as np
import torch

from paretopo.core.hypervolume import ParetoArchive, hv_contribution, hypervolume
from paretopo.core.pareto import pareto_ranks

RANK_SHAPES = [(32, 8, 2), (128, 16, 2), (512, 16, 2), (512, 64, 3), (64, 64, 4)]
ARCHIVE_SIZES = [100, 1_000, 10_000]


def interleaved_medians(calls: dict[str, Callable[[], object]], budget_s: float = 0.6, rounds: int = 7) -> dict[str, float]:
    """Median seconds per call of each callable, timed in alternating rounds."""
    for call in calls.values():
        call()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in calls}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, call in calls.items():
                deadline = time.perf_counter() + budget_s / rounds / len(calls)
                while True:
                    start = time.perf_counter_ns()
                    call()
                    samples[name].append((time.perf_counter_ns() - start) / 1e9)
                    if time.perf_counter() > deadline:
                        break
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def bench_ranks(rng: np.random.Generator) -> list[tuple[str, str, str, float, int]]:
    rows = []
    for shape in RANK_SHAPES:
        objectives = torch.from_numpy(rng.random(shape).astype(np.float32))
        as_float64 = objectives.double().numpy()
        expected = np.stack([moocore.pareto_rank(g, maximise=True) + 1 for g in as_float64])
        assert np.array_equal(pareto_ranks(objectives).numpy(), expected), "ranks disagree with moocore"
        times = interleaved_medians({
            "paretopo": lambda o=objectives: pareto_ranks(o),
            "moocore": lambda x=as_float64: [moocore.pareto_rank(g, maximise=True) for g in x],
        })
        rows.append((str(shape), fmt(times["paretopo"]), fmt(times["moocore"]),
                     times["moocore"] / times["paretopo"], int(expected.max())))
    return rows


def front_2d(n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.sort(rng.random(n))
    return np.c_[x, np.sqrt(1 - x**2)]


def bench_hypervolume(rng: np.random.Generator) -> list[tuple[str, str, str, float]]:
    rows = []
    ref = np.zeros(2)
    for n in ARCHIVE_SIZES:
        points = front_2d(n, rng)
        archive = ParetoArchive(ref)
        archive.insert(points)
        probes = front_2d(64, rng) * (1 + 0.002 * rng.standard_normal((64, 1)))
        archive_probes, moocore_probes = itertools.count(), itertools.count()

        def archive_step(archive=archive, probes=probes, counter=archive_probes):
            probe = probes[next(counter) % len(probes)]
            archive.contribution(probe)
            archive.insert(probe)
            return archive.hypervolume

        def moocore_step(points=points, probes=probes, counter=moocore_probes):
            probe = probes[next(counter) % len(probes)]
            both = np.vstack([points, probe])
            return moocore.hypervolume(both, ref=ref, maximise=True) - moocore.hypervolume(points, ref=ref, maximise=True)

        times = interleaved_medians({
            "hv": lambda p=points: hypervolume(p, ref),
            "moocore_hv": lambda p=points: moocore.hypervolume(p, ref=ref, maximise=True),
            "contribution": lambda p=points, q=probes[0]: hv_contribution(q, p, ref),
            "archive_step": archive_step,
            "moocore_step": moocore_step,
        })
        rows.append((f"hypervolume, N={n}", fmt(times["hv"]), fmt(times["moocore_hv"]), times["moocore_hv"] / times["hv"]))
        rows.append((f"hv_contribution (any set), N={n}", fmt(times["contribution"]), fmt(times["moocore_step"]),
                     times["moocore_step"] / times["contribution"]))
        rows.append((f"archive step: contribution+insert+HV, N={n}", fmt(times["archive_step"]),
                     fmt(times["moocore_step"]), times["moocore_step"] / times["archive_step"]))
    points3 = rng.random((1000, 3))
    times = interleaved_medians({
        "hv": lambda: hypervolume(points3, np.zeros(3)),
        "moocore_hv": lambda: moocore.hypervolume(points3, ref=np.zeros(3), maximise=True),
    })
    rows.append(("hypervolume 3-D, N=1000", fmt(times["hv"]), fmt(times["moocore_hv"]), times["moocore_hv"] / times["hv"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", help="also write the tables as markdown to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    header = (f"{datetime.date.today()} | {platform.machine()} {platform.processor() or ''} | "
              f"{os.cpu_count()} cores | Python {platform.python_version()} | torch {torch.__version__} | "
              f"moocore {moocore.__version__} | torch threads 1")
    rank_rows = bench_ranks(rng)
    hv_rows = bench_hypervolume(rng)

    lines = [f"Machine: {header}", "",
             "pareto_ranks per training step (float32 torch input, continuous random objectives)", "",
             "| (B, G, M) | paretopo | moocore.pareto_rank loop over B | speed-up | fronts |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {s} | {a} | {b} | {r:.1f}x | {f} |" for s, a, b, r, f in rank_rows]
    lines += ["", "Hypervolume and archive (2-D front on the unit circle unless noted; moocore step = "
              "HV(A + p) - HV(A) with two moocore.hypervolume calls)", "",
              "| operation | paretopo | moocore | speed-up |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {a} | {b} | {r:.1f}x |" for name, a, b, r in hv_rows]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    target = next(r for s, _, _, r, _ in rank_rows if s == "(512, 16, 2)")
    step = next(a for name, a, _, _ in hv_rows if name.startswith("archive step") and "10000" in name)
    print(f"\ntargets: pareto_ranks (512,16,2) speed-up {target:.1f}x (>= 10x); archive step at N=10000: {step} (< 1 ms)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
