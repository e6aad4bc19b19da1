"""Shared, lazily computed state of one audit run (embeddings, reference samples, NN searches)."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from privsynth.audit.distance import Embedding, fit_embedding, nearest_neighbors
from privsynth.audit.stats import subsample_miss_probabilities
from privsynth.data.schema import TableSchema
from privsynth.policy.model import AuditPolicy

#: Above this many rows per frame the distance attacks work on a seeded random sample.
MAX_DISTANCE_ROWS = 60_000
#: The pooled neighbour lists of the DCR share hold enough rows that a subsample of the larger
#: real set misses all of them with probability at most this (see ``PooledNeighbours``).
POOLED_MISS = 0.001
#: ... and at most this many rows per synthetic row.
MAX_POOLED_K = 256


@dataclass(frozen=True)
class PooledNeighbours:
    """Each synthetic row's ``K`` nearest real rows of the pooled reference (train rows first,
    then holdout rows), sorted by exact distance.

    ``idx`` indexes the pooled rows: ``idx < n_train`` is a training row. ``exact``: K covers
    every row the DCR share's subsample score can depend on (``K > n_large - n_small``, or all
    pooled rows); otherwise rows whose K neighbours all lie in the larger set get an upper bound
    (see ``copies.dcr``). ``miss[k]``: the probability that a random ``n_small``-subset of the
    larger set contains none of ``k`` given rows (``stats.subsample_miss_probabilities``)."""

    dist: np.ndarray
    idx: np.ndarray
    n_train: int
    n_holdout: int
    exact: bool
    miss: np.ndarray

    @property
    def n_pooled(self) -> int:
        return self.n_train + self.n_holdout

    @property
    def train_is_larger(self) -> bool:
        return self.n_train >= self.n_holdout

    @property
    def is_train(self) -> np.ndarray:
        """Label of each pooled row: True for a training row."""
        return np.arange(self.n_pooled) < self.n_train


@dataclass
class AuditContext:
    """Inputs of one audit plus caches the attacks share.

    The distance attacks use *all* training rows against *all* holdout rows (``reference``; a
    seeded sample of ``MAX_DISTANCE_ROWS`` of a larger frame, for speed), whatever their sizes:
    every statistic is defined so that its null value is exact with unequal sizes (see
    ``copies`` and ``membership``). ``balanced`` (the same size on both sides) is kept for
    anonymeter, whose singling-out rates depend on the size of the table a query runs on, and
    for the utility report."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    synthetic: pd.DataFrame
    schema: TableSchema
    config: AuditPolicy
    seed_seq: np.random.SeedSequence
    confidence: float = 0.95
    resamples: int = 200
    figures: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def rng(self, label: str) -> np.random.Generator:
        """An independent generator per attack, derived from the audit seed and the label."""
        salt = int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little")
        return np.random.default_rng(np.random.SeedSequence(
            entropy=self.seed_seq.entropy, spawn_key=(*self.seed_seq.spawn_key, salt)))

    def int_seed(self, label: str) -> int:
        return int(self.rng(label).integers(0, 2**31 - 1))

    def _get(self, key, make):
        with self._lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    @property
    def balanced(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        def make():
            rng = self.rng("balance")
            n = min(len(self.train), len(self.holdout), MAX_DISTANCE_ROWS)
            tr = self.train.iloc[np.sort(rng.choice(len(self.train), n, replace=False))]
            ho = self.holdout.iloc[np.sort(rng.choice(len(self.holdout), n, replace=False))]
            return tr.reset_index(drop=True), ho.reset_index(drop=True)

        return self._get("balanced", make)

    @property
    def reference(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Train and holdout, each capped at ``MAX_DISTANCE_ROWS`` rows (seeded sample)."""
        def make():
            out = []
            for label, frame in (("train", self.train), ("holdout", self.holdout)):
                if len(frame) > MAX_DISTANCE_ROWS:
                    rng = self.rng(f"reference-{label}")
                    pick = np.sort(rng.choice(len(frame), MAX_DISTANCE_ROWS, replace=False))
                    frame = frame.iloc[pick]
                out.append(frame.reset_index(drop=True))
            return out[0], out[1]

        return self._get("reference", make)

    @property
    def synth(self) -> pd.DataFrame:
        def make():
            if len(self.synthetic) <= MAX_DISTANCE_ROWS:
                return self.synthetic.reset_index(drop=True)
            rng = self.rng("synth")
            pick = np.sort(rng.choice(len(self.synthetic), MAX_DISTANCE_ROWS, replace=False))
            return self.synthetic.iloc[pick].reset_index(drop=True)

        return self._get("synth", make)

    @property
    def embedding(self) -> Embedding:
        # rank scaling fitted on the pooled real rows (train and holdout, all of them): what an
        # attacker who knows the population would use; the synthetic rows only add categories
        return self._get(
            "embedding",
            lambda: fit_embedding(self.schema, self.train, self.holdout,
                                  categories_from=(self.synth,)),
        )

    def matrix(self, which: str) -> np.ndarray:
        def make():
            if which == "pooled":
                return np.vstack([self.matrix("train"), self.matrix("holdout")])
            frame = {"train": self.reference[0], "holdout": self.reference[1],
                     "synthetic": self.synth}[which]
            return self.embedding.transform(frame)

        return self._get(("matrix", which), make)

    def nn(self, query: str, reference: str, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """k nearest ``reference`` rows of each ``query`` row (cached per pair and k)."""
        return self._get(
            ("nn", query, reference, k),
            lambda: nearest_neighbors(self.matrix(query), self.matrix(reference), k),
        )

    def pooled_neighbours(self) -> PooledNeighbours:
        """Each synthetic row's nearest pooled real rows, as many as the DCR share needs.

        With sizes that differ by at most one, the two nearest pooled rows are all it needs and
        they are among the two nearest of each side, which ``dcr`` computes anyway (merged here
        at no cost). Otherwise one k-NN search over the pooled rows, with ``K`` one more than
        the smallest of ``n_large - n_small + 1`` (exact) and the size at which a random
        ``n_small``-subset of the larger set misses all of them with probability at most
        ``POOLED_MISS``, at most ``MAX_POOLED_K`` (the extra row shows whether a list ends
        inside a group of tied rows).
        """
        def make():
            n_t = self.matrix("train").shape[0]
            n_h = self.matrix("holdout").shape[0]
            n_large, n_small = max(n_t, n_h), min(n_t, n_h)
            miss_all = subsample_miss_probabilities(n_large, n_small, n_large)
            need = n_large - n_small + 1
            if need <= 2:
                d_t, i_t = self.nn("synthetic", "train", 2)
                d_h, i_h = self.nn("synthetic", "holdout", 2)
                dist = np.concatenate([d_t, d_h], axis=1)
                idx = np.concatenate([i_t, i_h + n_t], axis=1)
                order = np.argsort(dist, axis=1, kind="stable")
                dist = np.take_along_axis(dist, order, axis=1)
                idx = np.take_along_axis(idx, order, axis=1)
                keep = np.isfinite(dist).all(axis=0)  # a side with one row has one neighbour
                return PooledNeighbours(dist[:, keep], idx[:, keep], n_t, n_h, True, miss_all)
            below = np.nonzero(miss_all <= POOLED_MISS)[0]
            k_target = int(below[0]) if below.size else n_large
            # one row more than the counts need, so that a list never ends inside a tie group
            k = int(min(need + 1, max(2, k_target + 1), MAX_POOLED_K, n_t + n_h))
            dist, idx = self.nn("synthetic", "pooled", k)
            return PooledNeighbours(dist, idx, n_t, n_h, k > need or k == n_t + n_h, miss_all)

        return self._get("pooled_neighbours", make)
