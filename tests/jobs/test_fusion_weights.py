"""Fusion weights chosen by cross-validation over identity-disjoint folds."""

from __future__ import annotations

import numpy as np
import pytest

from facelink.evaluation.weights import cross_validate_weights, identity_folds
from udfs.embed import l2_normalise


def _model(centres: np.ndarray, labels: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Unit embeddings of photos: the identity's centre plus isotropic noise of the given scale."""
    return l2_normalise(centres[labels] + noise * rng.normal(size=(len(labels), centres.shape[1])))


def test_identity_folds_keep_each_person_in_one_fold() -> None:
    people = [f"p{i % 37}" for i in range(300)]
    fold = identity_folds(people, 5, seed=1)
    assert set(fold.tolist()) == set(range(5))
    for person in set(people):
        assert len({int(f) for p, f in zip(people, fold, strict=True) if p == person}) == 1


def test_the_cleaner_model_gets_the_larger_weight() -> None:
    """Two models of the same photos, B with less noise than A (independent noise): the fused score beats
    either alone, B deserves more weight, and each fold's choice made on the other folds holds on it."""
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(200), 4)
    a = _model(l2_normalise(rng.normal(size=(200, 32))), labels, 0.30, rng)
    b = _model(l2_normalise(rng.normal(size=(200, 32))), labels, 0.22, rng)
    a[5] = np.nan  # a photo without a face in one model is left out
    choice = cross_validate_weights(a, b, [f"id{i}" for i in labels], fmr=1e-3, folds=4, seed=0)
    assert 0.5 < choice.weight < 1.0, choice.as_dict()
    mean = choice.fnmr.mean(axis=0)
    j = choice.grid.index(choice.weight)
    assert mean[j] < mean[0] and mean[j] < mean[-1], "the fusion beats both members alone"
    assert len(choice.held_out) == 4 and all(0.5 <= w <= 1.0 for w, _ in choice.held_out)
    assert choice.pairs[0][0] > 0 and choice.pairs[0][1] > choice.pairs[0][0]


def test_bad_inputs_are_refused() -> None:
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="embeddings"):
        cross_validate_weights(x, x[:3], ["a", "a", "b", "b"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cross_validate_weights(x, x, ["a", "a", "b", "b"], grid=(0.5, 1.5))
