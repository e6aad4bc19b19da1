"""Shared, lazily computed state of one audit run (embeddings, balanced samples, NN searches)."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from privsynth.audit.distance import Embedding, fit_embedding, nearest_neighbors
from privsynth.data.schema import TableSchema
from privsynth.policy.model import AuditPolicy

#: Above this many rows per frame the distance attacks work on a seeded random sample.
MAX_DISTANCE_ROWS = 60_000


@dataclass
class AuditContext:
    """Inputs of one audit plus caches the attacks share. Train and holdout are balanced to the
    same size (seeded subsample of the larger) so 'closer to train' has 0.5 as its null value."""

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
            frame = {"train": self.balanced[0], "holdout": self.balanced[1],
                     "synthetic": self.synth}[which]
            return self.embedding.transform(frame)

        return self._get(("matrix", which), make)

    def nn(self, query: str, reference: str, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """k nearest ``reference`` rows of each ``query`` row (cached per pair and k)."""
        return self._get(
            ("nn", query, reference, k),
            lambda: nearest_neighbors(self.matrix(query), self.matrix(reference), k),
        )
