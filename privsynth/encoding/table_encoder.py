"""Budget-aware table encoder: every data-dependent fact comes from the policy or a DP mechanism.

The encoded table is a matrix of slot indices, one column per table column; a generator sees it
as a concatenation of one-hot blocks (one softmax block per column).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from privsynth.data.schema import ColumnSchema, TableSchema
from privsynth.data.table import EPOCH, category_text
from privsynth.encoding.categorical import OTHER, CategoricalEncoder
from privsynth.encoding.numeric import (
    NumericEncoder,
    geometric_edges,
    uniform_edges,
    value_grid,
)
from privsynth.errors import PrivacyError
from privsynth.policy.model import ColumnPolicy, Policy
from privsynth.policy.relations import Relation, apply_relations, derived_columns
from privsynth.privacy import mechanisms
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import NoiseSource

ColumnEncoder = NumericEncoder | CategoricalEncoder

#: ``point_masses: dp`` keeps at most this many values (those with the largest noisy counts).
MAX_DP_POINT_MASSES = 8


@dataclass(frozen=True)
class EncodingBudget:
    """The encoding stage's share of the release budget, split evenly across its mechanisms.

    ``mechanisms`` includes the release's one ``noisy_count`` (the training row count N̂, run by
    the pipeline with ``epsilon_each``), so it is at least 1.
    """

    epsilon_each: float
    delta_each: float
    mechanisms: int


def count_encoding_mechanisms(policy: Policy) -> tuple[int, int]:
    """(mechanisms needing epsilon, of which need delta) of the encoding stage: the one
    ``noisy_count`` of the training rows, plus those of the policy's modelled columns.

    Counted from the policy alone, so the split is fixed before any private value is read.
    """
    eps_count, delta_count = 1, 0  # the release's noisy row count N̂
    for rule in policy.columns.values():
        if not rule.modelled:
            continue
        if rule.kind in ("numeric", "integer", "datetime"):
            eps_count += (rule.bounds == "dp") + (rule.binning == "quantile")
            if rule.point_masses == "dp":
                eps_count += 1
                delta_count += 1
        elif rule.kind == "categorical" and rule.domain == "dp":
            eps_count += 1
            delta_count += 1
    return eps_count, delta_count


def encoding_budget(policy: Policy) -> EncodingBudget:
    """Per-mechanism epsilon and delta of the encoding stage; the row count N̂ takes one
    ``epsilon_each``."""
    eps_count, delta_count = count_encoding_mechanisms(policy)
    eps_total = policy.privacy.epsilon * policy.privacy.encoding_share
    delta_total = policy.privacy.delta * policy.privacy.encoding_share if delta_count else 0.0
    return EncodingBudget(eps_total / eps_count, delta_total / max(delta_count, 1), eps_count)


@dataclass
class TableEncoder:
    """Fits per-column encoders under DP and maps a table to slot indices and back."""

    encoders: list[ColumnEncoder]
    relations: list[Relation] = field(default_factory=list)
    #: Models saved before derived columns left the model kept them in it (persist reads this).
    model_derived: bool = False

    @classmethod
    def fit(cls, frame: pd.DataFrame, policy: Policy, budget: EncodingBudget,
            spend: PrivacySpend, noise: NoiseSource) -> TableEncoder:
        """Fit from the policy's public facts, paying ``spend`` for anything estimated.

        Each charge is recorded in ``spend`` before its output is used (or raised on). ``noise``
        is the release's :class:`NoiseSource` (``RandomSource.noise("encoding")``).
        """
        if not isinstance(noise, NoiseSource):
            raise PrivacyError("TableEncoder.fit needs a NoiseSource (RandomSource.noise), "
                               f"not {type(noise).__name__}")
        encoders = [
            _fit_column(name, frame[name], rule, budget, spend, noise)
            for name, rule in policy.columns.items() if rule.modelled
        ]
        return cls(encoders, list(policy.relations))

    @property
    def schema(self) -> TableSchema:
        """The public schema of the modelled table."""
        return TableSchema(tuple(e.schema for e in self.encoders))

    @property
    def modelled(self) -> list[int]:
        """Indices of the encoders the generator sees: every column a relation does not derive
        (a derived one is computed at decode, so the model spends nothing on it)."""
        derived = set() if self.model_derived else derived_columns(self.relations)
        return [i for i, e in enumerate(self.encoders) if e.schema.name not in derived]

    @property
    def modelled_names(self) -> list[str]:
        """Names of the generator's columns, in order."""
        return [self.encoders[i].schema.name for i in self.modelled]

    @property
    def widths(self) -> list[int]:
        """Slots per generator column, in order."""
        return [self.encoders[i].width for i in self.modelled]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """(n_rows, n_generator_columns) matrix of slot indices."""
        return np.stack([self.encoders[i].encode(frame[self.encoders[i].schema.name])
                         for i in self.modelled], axis=1)

    def inverse_transform(self, codes: np.ndarray, rng: np.random.Generator, *,
                          relations: bool = True) -> pd.DataFrame:
        """A table from slot indices (numbers drawn inside their bins): every column of the
        schema, the derived ones computed by the policy's relations (post-processing of DP
        output: free). With ``relations=False`` derived columns stay missing, for the person
        encoder, which derives once a person's rows are together."""
        columns = {e.schema.name: pd.Series([None] * len(codes), dtype=object)
                   for e in self.encoders}
        for j, i in enumerate(self.modelled):
            e = self.encoders[i]
            columns[e.schema.name] = e.decode(codes[:, j], rng).reset_index(drop=True)
        frame = pd.DataFrame(columns)
        if not relations:
            return frame
        return apply_relations(frame, self.relations, self.schema)


def _fit_column(name: str, series: pd.Series, rule: ColumnPolicy, budget: EncodingBudget,
                spend: PrivacySpend, noise: NoiseSource) -> ColumnEncoder:
    if rule.kind in ("categorical", "boolean"):
        return _fit_categorical(name, series, rule, budget, spend, noise)
    return _fit_numeric(name, series, rule, budget, spend, noise)


def _fit_categorical(name, series, rule, budget, spend, noise) -> CategoricalEncoder:
    if rule.kind == "boolean":
        schema = ColumnSchema(name, "boolean", domain=("false", "true"), domain_source="policy")
        return CategoricalEncoder(schema, ("false", "true"), rule.complete)
    if rule.domain == "dp":
        kept, _, charge = mechanisms.threshold_domain(
            series.to_numpy(dtype=object), budget.epsilon_each, budget.delta_each, noise,
            column=name)
        spend.add(charge)
        categories = (*kept, OTHER)
        schema = ColumnSchema(name, "categorical", domain=categories, domain_source="dp")
        return CategoricalEncoder(schema, categories, rule.complete)
    categories = tuple(dict.fromkeys(category_text(v) for v in rule.domain))
    schema = ColumnSchema(name, "categorical", domain=categories, domain_source="policy")
    return CategoricalEncoder(schema, categories, rule.complete)


def _fit_numeric(name, series, rule, budget, spend, noise) -> NumericEncoder:
    values = series.to_numpy(dtype=float)
    if rule.bounds == "dp":
        bounds, charge = mechanisms.dp_bounds(values, budget.epsilon_each, noise, column=name)
        spend.add(charge)  # due whether or not the noisy histogram had mass
        if bounds is None:
            raise PrivacyError(
                f"column '{name}': the DP bounds estimate found no mass (too few rows for its "
                "epsilon); declare 'bounds: [low, high]' in the policy")
        source = "dp"
    else:
        bounds = tuple(_model_number(v, rule.kind) for v in rule.bounds)
        source = "policy"
    schema = ColumnSchema(name, rule.kind, bounds=bounds, bounds_source=source)
    masses = _point_masses(name, values, bounds, rule, budget, spend, noise)
    grid = value_grid(schema, transform=rule.transform, transform_scale=rule.transform_scale)
    shape = {"point_masses": masses, "transform": rule.transform,
             "transform_scale": rule.transform_scale, "complete": rule.complete,
             "decimals": rule.decimals}
    if rule.binning == "quantile":
        # Clip to the bounds first: top and bottom coding is part of the public rule. Values at
        # a point mass have a slot of their own, so they do not shape the bins.
        clipped = np.clip(values, *bounds)
        clipped[np.isin(clipped, masses)] = np.nan
        axis = NumericEncoder(schema, grid, grid, np.zeros(len(grid) - 1), **shape)
        noisy, charge = mechanisms.laplace_histogram(
            axis.forward(clipped), grid, budget.epsilon_each, noise, column=name)
        spend.add(charge)
        mass = np.clip(noisy, 0, None)  # int64 noisy counts: nothing full-precision persists
        edges = mechanisms.quantile_edges_from_histogram(grid, mass, rule.bins)
    else:
        mass = np.zeros(len(grid) - 1, dtype=np.int64)
        bins = geometric_edges if rule.binning == "geometric" else uniform_edges
        edges = bins(grid, rule.bins)
    return NumericEncoder(schema, edges, grid, mass, **shape)


def _point_masses(name, values, bounds, rule, budget, spend, noise) -> tuple[float, ...]:
    """The declared point masses inside the bounds, or those the DP threshold finds."""
    if rule.point_masses != "dp":
        return tuple(float(v) for v in (rule.point_masses or ()) if bounds[0] <= v <= bounds[1])
    clipped = np.clip(values[~np.isnan(values)], *bounds)
    kept, noisy, charge = mechanisms.threshold_domain(
        np.array([repr(float(v)) for v in clipped], dtype=object), budget.epsilon_each,
        budget.delta_each, noise, column=name)
    spend.add(charge)
    # post-processing: the most frequent ones by noisy count, so the slots stay few
    top = np.argsort(-np.asarray(noisy), kind="stable")[:MAX_DP_POINT_MASSES]
    return tuple(sorted(float(kept[i]) for i in top))


def _model_number(value, kind: str) -> float:
    if kind == "datetime":
        return float((pd.Timestamp(str(value)) - EPOCH) / pd.Timedelta(days=1))
    return float(value)

