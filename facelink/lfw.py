"""The LFW View-2 pairs protocol as found in lfw_dev's ``pairs.txt``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    """One comparison of the protocol: two photo paths relative to the lfw folder."""

    left: str
    right: str
    same: bool
    fold: int


def photo_path(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}.jpg"


def read_pairs(lfw_dir: Path, per_fold: int | None = None) -> list[Pair]:
    """Parse ``pairs.txt`` (first line ``folds n``, then n same and n different lines per fold).

    Args:
        lfw_dir: The lfw_dev folder.
        per_fold: Keep only the first ``per_fold`` same and ``per_fold`` different pairs of each fold.
    """
    lines = (lfw_dir / "pairs.txt").read_text().split("\n")
    folds, n = (int(x) for x in lines[0].split())
    pairs: list[Pair] = []
    pos = 1
    for fold in range(folds):
        for kind in ("same", "diff"):
            for i in range(n):
                parts = lines[pos].split()
                pos += 1
                if per_fold is not None and i >= per_fold:
                    continue
                if kind == "same":
                    pairs.append(Pair(photo_path(parts[0], int(parts[1])), photo_path(parts[0], int(parts[2])),
                                      True, fold))
                else:
                    pairs.append(Pair(photo_path(parts[0], int(parts[1])), photo_path(parts[2], int(parts[3])),
                                      False, fold))
    return pairs


def pair_photos(pairs: list[Pair]) -> list[str]:
    """Distinct photo paths used by ``pairs``, sorted."""
    return sorted({p.left for p in pairs} | {p.right for p in pairs})
