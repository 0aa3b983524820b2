"""Adapters that give ../shared/bench/anchors.py (the project's reference harness, run from
its own folder) the signatures it expects for paretopo's functions:

    cd ../shared/bench && python anchors.py check \
        --impl rank=paretopo.core.pareto:pareto_ranks --impl hv=paretopo.core.hypervolume:hypervolume \
        --impl hvc=$REPO/benchmarks/anchor_adapters.py:hvc \
        --impl archive=$REPO/benchmarks/anchor_adapters.py:archive_insert
"""

from __future__ import annotations

import numpy as np
import torch

from paretopo.core.hypervolume import ParetoArchive, hv_contribution


def hvc(archive: torch.Tensor, new: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Exclusive contribution of each new point to the archive alone."""
    return torch.from_numpy(np.asarray(hv_contribution(new.reshape(-1, new.shape[-1]), archive, ref)))


def archive_insert(archive: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Mutually non-dominated archive after inserting ``new`` (the reference point is irrelevant here)."""
    both = torch.cat([archive, new]).double().numpy()
    store = ParetoArchive(both.min(axis=0) - 1.0 if len(both) else np.zeros(archive.shape[-1]))
    store.insert(archive.double().numpy())
    store.insert(new.double().numpy())
    return torch.from_numpy(store.points)
