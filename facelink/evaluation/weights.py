"""Choosing the weights of a two-model linear fusion by cross-validation over identity-disjoint folds.

The weight must not be chosen on the figures an evaluation reports. Here it is chosen on within-fold
comparisons of a labelled set: the identities are split into folds (no person in two folds); within each
fold every pair of photos with a face in both models is scored as ``(1 - w) * cos_a + w * cos_b`` for each
weight ``w`` of a grid, and the criterion is the false non-match rate at a low false-match rate (the FMR
target sets the threshold on that fold's different-identity pairs). For each fold the weight that is best on
the other folds is applied to it (the held-out figure says how well choosing this way generalises), and the
weight reported as chosen is the one best on the mean over all folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facelink.metrics import threshold_at_fmr

DEFAULT_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass(frozen=True)
class WeightChoice:
    """The outcome of :func:`cross_validate_weights`.

    Attributes:
        weight: Weight of the second model chosen on all folds (the first model gets ``1 - weight``).
        grid: Weights tried.
        fnmr: float [folds, len(grid)]: FNMR at the FMR target per fold and weight.
        held_out: Per fold, (weight chosen on the other folds, that fold's FNMR at it).
        fmr: The FMR target.
        pairs: Per fold, (same-identity pairs, different-identity pairs).
    """

    weight: float
    grid: tuple[float, ...]
    fnmr: np.ndarray
    held_out: list[tuple[float, float]]
    fmr: float
    pairs: list[tuple[int, int]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight, "grid": list(self.grid), "fmr": self.fmr, "pairs": self.pairs,
            "mean_fnmr": {f"{w:g}": round(float(m), 4) for w, m in zip(self.grid, self.fnmr.mean(axis=0), strict=True)},
            "held_out": [{"weight": w, "fnmr": round(f, 4)} for w, f in self.held_out],
            "held_out_mean_fnmr": round(float(np.mean([f for _, f in self.held_out])), 4),
        }


def identity_folds(identities: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """int [n]: the fold of each photo, identities shuffled with ``seed`` and dealt round-robin."""
    names = sorted(set(identities))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[j]: k % folds for k, j in enumerate(order)}
    return np.array([fold_of[i] for i in identities], dtype=np.int64)


def _argbest(values: np.ndarray, grid: Sequence[float]) -> int:
    """Index of the lowest value; ties go to the weight closest to equal weights."""
    best = float(np.min(values))
    ties = [i for i, v in enumerate(values) if v <= best + 1e-12]
    return min(ties, key=lambda i: abs(grid[i] - 0.5))


def cross_validate_weights(a: np.ndarray, b: np.ndarray, identities: Sequence[str], *, fmr: float = 1e-4,
                           folds: int = 5, seed: int = 0, grid: Sequence[float] = DEFAULT_GRID) -> WeightChoice:
    """Choose the weight of ``b`` in the linear fusion of models ``a`` and ``b`` (see the module docstring).

    Args:
        a: float32 [n, d_a] unit embeddings of the first model (NaN rows: no face).
        b: float32 [n, d_b] unit embeddings of the second model, same photos.
        identities: Identity of each photo.
        fmr: False-match rate at which FNMR is read.
        folds: Identity-disjoint folds.
        seed: Seed of the identity shuffle.
        grid: Weights of ``b`` tried, in [0, 1].

    Raises:
        ValueError: Shapes differ, a weight is outside [0, 1], or a fold has no same-identity pair.
    """
    if len(a) != len(b) or len(a) != len(identities):
        raise ValueError(f"{len(a)} and {len(b)} embeddings for {len(identities)} photos")
    if not grid or min(grid) < 0 or max(grid) > 1:
        raise ValueError(f"weights must lie in [0, 1], got {list(grid)}")
    fold = identity_folds(identities, folds, seed)
    ok = ~(np.isnan(a[:, 0]) | np.isnan(b[:, 0]))
    ident = np.unique(np.asarray(identities), return_inverse=True)[1]
    table = np.zeros((folds, len(grid)))
    pairs = []
    for k in range(folds):
        rows = np.flatnonzero((fold == k) & ok)
        iu = np.triu_indices(len(rows), 1)
        same = (ident[rows][:, None] == ident[rows][None, :])[iu]
        if not same.any():
            raise ValueError(f"fold {k} has no same-identity pair")
        sa = (a[rows].astype(np.float64) @ a[rows].astype(np.float64).T)[iu]
        sb = (b[rows].astype(np.float64) @ b[rows].astype(np.float64).T)[iu]
        pairs.append((int(same.sum()), int((~same).sum())))
        for j, w in enumerate(grid):
            s = (1 - w) * sa + w * sb
            t = threshold_at_fmr(s[~same], fmr)
            table[k, j] = float(np.mean(s[same] < t))
    held_out = []
    for k in range(folds):
        others = np.delete(table, k, axis=0).mean(axis=0)
        j = _argbest(others, grid)
        held_out.append((float(grid[j]), float(table[k, j])))
    chosen = float(grid[_argbest(table.mean(axis=0), grid)])
    return WeightChoice(chosen, tuple(float(w) for w in grid), table, held_out, fmr, pairs)
