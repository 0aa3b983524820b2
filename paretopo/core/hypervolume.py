"""Hypervolume, exact hypervolume contribution, and the Pareto archive of stage 1.

All objectives are maximised. The hypervolume of a set is the Lebesgue measure of the union of
the boxes ``[ref, p]``; a point that is not strictly above ``ref`` in every objective adds
nothing (as ``moocore.hypervolume(..., maximise=True)`` does).

Exact contribution of a new point ``p`` to a set ``A`` uses the identity

    HV(A + {p}) - HV(A) = HV({p}) - HV({min(a, p) for a in A})

(clip every member to ``p``'s box and measure what is already covered). It holds for any
``A``, including members that ``p`` dominates. ``moocore.hv_contributions`` with its default
``ignore_dominated=True`` answers a different question and over-counts in that case, so it is
not used here.

In two dimensions ``ParetoArchive`` keeps its points sorted by the first objective, so an
insertion or a contribution query touches only the staircase steps next to the new point
(``searchsorted`` plus a slice) instead of the whole archive. Other dimensions use
``moocore`` (dimension-sweep hypervolume, O(n log n) non-dominated filtering for M <= 3).
"""

from __future__ import annotations

import math
from typing import Any

import moocore
import numpy as np

__all__ = ["ParetoArchive", "hv_contribution", "hypervolume"]


def _as_points(points: Any, name: str, n_objectives: int | None = None) -> np.ndarray:
    array = points.detach().cpu().numpy() if hasattr(points, "detach") else np.asarray(points)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1 and n_objectives is not None and array.size in (0, n_objectives):
        array = array.reshape(-1, n_objectives)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape [N, M], got {array.shape}")
    if n_objectives is not None and array.shape[1] != n_objectives and array.shape[0] > 0:
        raise ValueError(f"{name} has {array.shape[1]} objectives, expected {n_objectives} (as in ref)")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity; hypervolume needs finite objective vectors")
    return array


def _as_ref(ref: Any) -> np.ndarray:
    array = ref.detach().cpu().numpy() if hasattr(ref, "detach") else np.asarray(ref)
    array = np.asarray(array, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError("ref must have one coordinate per objective, got an empty reference point")
    if not np.isfinite(array).all():
        raise ValueError(f"ref must be finite, got {array.tolist()}")
    return array


def hypervolume(points: Any, ref: Any) -> float:
    """Hypervolume dominated by ``points`` above the reference point ``ref`` (maximisation).

    Args:
        points: ``[N, M]`` objective vectors (numpy, torch or nested lists); may contain
            dominated points, duplicates, and points not strictly above ``ref`` (they add 0).
        ref: ``[M]`` reference point, below the region of interest.

    Returns:
        The hypervolume as a float (0.0 for an empty set).

    Example:
        >>> hypervolume([[1.0, 0.5], [0.5, 1.0]], ref=[0.0, 0.0])
        0.75
    """
    reference = _as_ref(ref)
    array = _as_points(points, "points", reference.size)
    if array.shape[0] == 0:
        return 0.0
    if reference.size == 1:
        return float(max(0.0, array[:, 0].max() - reference[0]))
    return float(moocore.hypervolume(array, ref=reference, maximise=True))


def hv_contribution(point: Any, archive: Any, ref: Any) -> Any:
    """Exact hypervolume a new point (or each of several, independently) adds to ``archive``.

    Args:
        point: ``[M]`` one new point, or ``[K, M]`` several (each measured on its own).
        archive: ``[N, M]`` existing points (any set: dominated members and duplicates allowed).
        ref: ``[M]`` reference point.

    Returns:
        A float for one point, else a ``[K]`` float64 array: ``HV(archive + {p}) - HV(archive)``,
        exact also when ``p`` dominates archive members (then it includes the volume those
        members covered only partly).

    Example:
        >>> hv_contribution([1.0, 1.0], archive=[[0.5, 0.5]], ref=[0.0, 0.0])
        0.75
    """
    reference = _as_ref(ref)
    single = np.ndim(point.detach().cpu() if hasattr(point, "detach") else point) == 1
    new_points = _as_points(point, "point", reference.size)
    members = _as_points(archive, "archive", reference.size)
    contributions = np.array([_contribution_by_clipping(p, members, reference) for p in new_points])
    return float(contributions[0]) if single else contributions


def _contribution_by_clipping(point: np.ndarray, members: np.ndarray, ref: np.ndarray) -> float:
    box = float(np.prod(np.clip(point - ref, 0.0, None)))
    if box == 0.0 or members.shape[0] == 0:
        return box
    covered = hypervolume(np.minimum(members, point), ref)
    return max(0.0, box - covered)


def _staircase_area(xs: np.ndarray, ys: np.ndarray, ref: np.ndarray) -> float:
    """Area under a 2-D staircase of mutually non-dominated points sorted by x ascending."""
    if xs.size == 0:
        return 0.0
    x = np.maximum(xs, ref[0])
    heights = np.maximum(ys - ref[1], 0.0)
    widths = np.diff(x, prepend=ref[0])
    return float(widths @ heights)


class ParetoArchive:
    """A set of mutually non-dominated objective vectors with its hypervolume.

    Inserting a batch drops every point that ends up dominated, keeps one copy of duplicates,
    and remembers the step at which each kept point arrived. ``state_dict()`` /
    ``load_state_dict()`` round-trip exactly (plain lists of floats, JSON-serialisable).

    Example:
        >>> archive = ParetoArchive(ref=[0.0, 0.0])
        >>> archive.insert([[0.5, 0.5], [0.8, 0.2]], step=1)
        2
        >>> round(archive.contribution([0.6, 0.6]), 4)  # box 0.36 minus the 0.27 already covered
        0.09
        >>> archive.insert([[0.6, 0.6]], step=2), len(archive), round(archive.hypervolume, 4)
        (1, 2, 0.4)
    """

    def __init__(self, ref: Any):
        self.ref = _as_ref(ref)
        self.points = np.empty((0, self.ref.size), dtype=np.float64)
        self.inserted_at = np.empty(0, dtype=np.int64)
        self._hypervolume: float | None = 0.0

    @property
    def n_objectives(self) -> int:
        return int(self.ref.size)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __repr__(self) -> str:
        return f"ParetoArchive(n={len(self)}, ref={self.ref.tolist()}, hypervolume={self.hypervolume:.6g})"

    @property
    def hypervolume(self) -> float:
        """Hypervolume of the archive above ``ref`` (cached between insertions)."""
        if self._hypervolume is None:
            if self.n_objectives == 2:
                self._hypervolume = _staircase_area(self.points[:, 0], self.points[:, 1], self.ref)
            else:
                self._hypervolume = hypervolume(self.points, self.ref)
        return self._hypervolume

    def contribution(self, point: Any) -> float:
        """Exact hypervolume ``point`` would add (``HV(archive + {point}) - HV(archive)``)."""
        candidate = _as_points(point, "point", self.n_objectives)
        if candidate.shape[0] != 1:
            raise ValueError(f"contribution takes one point of shape [{self.n_objectives}], got {candidate.shape}")
        candidate = candidate[0]
        if self.n_objectives != 2:
            return _contribution_by_clipping(candidate, self.points, self.ref)
        box = float(np.prod(np.clip(candidate - self.ref, 0.0, None)))
        if box == 0.0 or len(self) == 0:
            return box
        xs, ys = self.points[:, 0], self.points[:, 1]
        below_x = int(np.searchsorted(xs, candidate[0], side="left"))  # members with x < p.x
        # ys is descending: members with y >= p.y form a prefix
        at_least_y = int(np.searchsorted(-ys, -candidate[1], side="right"))
        if at_least_y > below_x:
            return 0.0  # member `below_x` has x >= p.x and y >= p.y: p adds nothing
        clipped_x = [xs[at_least_y:below_x]]
        clipped_y = [ys[at_least_y:below_x]]
        if at_least_y > 0:  # best member left of p that reaches p's height, clipped to it
            clipped_x.insert(0, xs[at_least_y - 1 : at_least_y])
            clipped_y.insert(0, np.array([candidate[1]]))
        if below_x < len(self):  # best member right of p, clipped to p's width
            clipped_x.append(np.array([candidate[0]]))
            clipped_y.append(ys[below_x : below_x + 1])
        covered = _staircase_area(np.concatenate(clipped_x), np.concatenate(clipped_y), self.ref)
        return max(0.0, box - covered)

    def insert(self, points: Any, step: int = 0) -> int:
        """Insert a batch of points; return how many of them were kept.

        Args:
            points: ``[K, M]`` (or one ``[M]`` point) objective vectors.
            step: training step recorded for the kept points.
        """
        batch = _as_points(points, "points", self.n_objectives)
        if batch.shape[0] == 0:
            return 0
        if self.n_objectives == 2 and batch.shape[0] == 1:
            return self._insert_one_2d(batch[0], step)
        combined = np.concatenate([self.points, batch])
        steps = np.concatenate([self.inserted_at, np.full(batch.shape[0], step, dtype=np.int64)])
        keep = moocore.is_nondominated(combined, maximise=True, keep_weakly=False)  # first copy wins
        kept_new = int(keep[len(self) :].sum())
        self._replace(combined[keep], steps[keep])
        return kept_new

    def _insert_one_2d(self, point: np.ndarray, step: int) -> int:
        xs, ys = self.points[:, 0], self.points[:, 1]
        below_x = int(np.searchsorted(xs, point[0], side="left"))
        at_least_y = int(np.searchsorted(-ys, -point[1], side="right"))
        if at_least_y > below_x:
            return 0  # weakly dominated by an existing member (or equal to one)
        # members with x <= p.x and y <= p.y (now dominated) are exactly the slice [start, stop)
        start = int(np.searchsorted(-ys, -point[1], side="left"))
        stop = int(np.searchsorted(xs, point[0], side="right"))
        self.points = np.concatenate([self.points[:start], point[None, :], self.points[stop:]])
        self.inserted_at = np.concatenate(
            [self.inserted_at[:start], np.array([step], dtype=np.int64), self.inserted_at[stop:]]
        )
        self._hypervolume = None
        return 1

    def _replace(self, points: np.ndarray, steps: np.ndarray) -> None:
        if self.n_objectives == 2:  # keep the 2-D staircase order: x ascending, y descending
            order = np.lexsort((-points[:, 1], points[:, 0]))
            points, steps = points[order], steps[order]
        self.points = np.ascontiguousarray(points)
        self.inserted_at = np.ascontiguousarray(steps)
        self._hypervolume = None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the archive exactly (JSON-serialisable)."""
        return {
            "ref": self.ref.tolist(),
            "points": self.points.tolist(),
            "inserted_at": self.inserted_at.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict()``; validates that the points are mutually non-dominated."""
        missing = {"ref", "points", "inserted_at"} - set(state)
        if missing:
            raise ValueError(f"archive state is missing {sorted(missing)}; pass what state_dict() returned")
        self.ref = _as_ref(state["ref"])
        points = _as_points(state["points"], "archive points", self.n_objectives)
        steps = np.asarray(state["inserted_at"], dtype=np.int64)
        if steps.shape != (points.shape[0],):
            raise ValueError("archive state has a different number of points and insertion steps")
        if points.shape[0] and not moocore.is_nondominated(points, maximise=True, keep_weakly=False).all():
            raise ValueError("archive state holds dominated or duplicate points; it was not written by ParetoArchive")
        self._replace(points, steps)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ParetoArchive:
        archive = cls(state["ref"])
        archive.load_state_dict(state)
        return archive

    def is_close(self, other: ParetoArchive) -> bool:
        """Same reference point and points (used by resume tests)."""
        return (
            np.array_equal(self.ref, other.ref)
            and self.points.shape == other.points.shape
            and np.allclose(self.points, other.points, rtol=0, atol=0)
            and math.isclose(self.hypervolume, other.hypervolume, rel_tol=1e-12, abs_tol=1e-15)
        )
