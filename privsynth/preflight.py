"""Pre-flight: every reason a release would be useless or blocked, known before any ε is spent.

``preflight(policy, rows)`` reads **the policy and a declared, public row count only**: never the
data. ``rows`` is the size of the whole table as the user declares it (``dataset.rows`` in the
policy, or ``privsynth policy check POLICY --rows N``): an approximate, public figure ("about
30,000 patients"), never a count read off the table, which is private under add/remove adjacency
(the pipeline releases its own DP count N̂ after the reservation). With ``rows = None`` only the
rules that need no size run, plus one warning saying so.

Every rule below is computed from public quantities; ``n`` is the declared ``rows``,
``n_train = round(n · (1 - holdout_fraction))`` and ``n_hold = n - n_train`` (the audit balances
train and holdout to ``n_bal = min(n_train, n_hold, 60,000)``). The encoding stage gives each of
its ``k`` mechanisms ``ε_e = ε · encoding_share / k`` and, when some DP domain needs δ,
``δ_e = δ · encoding_share / (DP domains)`` (``count_encoding_mechanisms``). A discrete Laplace
DLap(1/ε_e) count has expected positive part ``μ = p / (1 - p²)``, ``p = e^{-ε_e}`` (≈ 1/(2ε_e)).

Rules (severity: ``refuse`` = the release is blocked or useless whatever the data, or, for the
two rules calibrated on the shared tables (``dpsgd_noise`` and ``target_unlearnable``), blocked
or useless in most measured releases at that noise; ``warn`` = likely poor or likely blocked):

* ``category_threshold`` (``domain: dp``). The threshold mechanism keeps a category only when
  its noisy count reaches τ = ``threshold_for(1/ε_e, δ_e)``, so at most ``⌊n_train / τ⌋``
  categories can survive. Refuse when that is below 2 (with τ > n_train every category becomes
  ``__other__``; with one, the column is a constant plus ``__other__``); warn when τ exceeds 5%
  of n_train (any category rarer than τ/n_train of the rows is folded into ``__other__``).
  Fix: declare the public ``domain: [...]`` (free), or raise ε / lower the number of DP
  mechanisms.
* ``dp_bounds_noise`` (``bounds: dp``). ``dp_bounds`` puts a DLap(1/ε_e) count on each of the
  146 cells of the symmetric log grid ±1e-3…±1e15 (quarter decades) and takes the 0.5% and
  99.5% quantiles of the clipped noisy mass ``T ≈ n_train + 146 μ``. Empty cells carry μ each,
  so counted from the grid's outer edge the 0.5% tail is used up after about
  ``j = 0.005 T / μ`` cells: a bound is expected near ``±10^(15 - j/4)`` whatever the data,
  unless the data themselves reach that far. Refuse when that is beyond ±1e9 (real values then
  sit in one or two of the column's 64 grid cells: the column comes out as noise, e.g. ±1e13);
  warn when beyond ±1e6. Fix: declare public ``bounds: [low, high]`` (free).
* ``quantile_bins_noise`` (``binning: quantile``). One DLap(1/ε_e) count per cell of the
  column's value grid (``value_grid``: 64 cells, or one per integer up to 256) gives expected
  noise mass ``cells · μ``. Refuse when it reaches n_train (the edges are placed by the noise
  more than by the data); warn above n_train / 4. Fix: ``binning: uniform`` (free) or raise ε.
* ``delta_too_large``. The pipeline refuses δ ≥ 1/(10 N̂). Refuse when δ ≥ 1/(10 n_train);
  warn when δ ≥ 1/(10 (n_train + 5/ε_e)) (N̂ exceeds n_train + 5/ε_e with probability < 1%).
* ``dpsgd_*``. q = min(1, E[B] / n_train), steps = ⌈epochs / q⌉, σ =
  ``calibrate_sigma(ε (1 - share), δ_train, q, steps)``. Refuse when σ cannot be calibrated.
  The noise added to the sum of all updates, relative to the largest possible summed signal
  (every clipped gradient aligned), is ``r = σ √d / (E[B] √steps)`` with d the generator's
  parameter count (estimated from the policy's slot widths and ``hidden``/``latent_dim`` as a
  VAE). Refuse when r ≥ 3 (``REFUSE_NOISE_RATIO``: the model learns nothing but noise; r
  counts noise in every parameter direction, so it is conservative); warn when r ≥ 0.1 (the
  demo policy on Adult has r ≈ 0.003). Warn when steps < 50 (too few steps to learn; the demo
  has ~180). Fix: raise ε, more rows, fewer parameters (``hidden``); for few steps, a smaller
  ``batch_size`` (for small q, r hardly depends on the batch).
* ``target_unlearnable`` (row level, a named two-class or numeric ``audit.target`` judged by
  the utility floor's TSTR). The target's relation to the other columns is a weaker signal than
  the marginals: refuse when r ≥ 0.2 (``REFUSE_TARGET_RATIO``, calibrated on the shared tables:
  honest models met the TSTR floor in 1 of 6 releases at r = 0.81, and in 119 of 120 leak-panel
  audits at r ≤ 0.18; see ``_target_rule``). Fix: raise ε (the finding names about how far),
  more rows, or ``audit.utility.tstr: false``.
* ``copy_threshold_unreachable`` (``exact_copy``, ``unique_qi``). With n_syn synthetic rows
  scored (N̂ ≈ n_train, or ``audit_sample_rows`` where the audit draws more) and not one
  copy, the gate's upper bound is ``paired_excess_ci(0, 0, n_syn)`` ≈ 3.84/n_syn (Wilson):
  its smallest possible value. Refuse when that is not below the threshold (the gate
  blocks every release, e.g. 0.0076 > 0.005 for German credit's 500 training rows; any table
  under ~770 training rows). Fix: raise the threshold above it, or more rows. A threshold of 0
  is zero tolerance (counts, not intervals) and is not checked.
* ``dcr_power`` / ``mia_power``. The distance attacks score every train row against every
  holdout row (each capped at 60,000). An honest DCR share is 0.5 with a null standard error of
  about 0.5·√(h / (2 n_small)), n_small = min(n_train, n_hold), h measuring how unevenly
  synthetic rows crowd onto real rows (``DCR_CROWDING``: 2 for rows, se = 0.5/√n_small; 3 for
  whole persons under ``unit: person``); its bound is one-sided (z = 1.645).
  An honest AUC is 0.5 with se = √((m + h + 1)/(12 m h)) for m members and h non-members
  (``stats.auc_se``; the density attack's non-members are half the holdout, the weaker of the
  two), two-sided (z = 1.96). Refuse when 0.5 + z·se reaches the threshold (half of all honest
  releases blocked); warn when 0.5 + (z + 1.645)·se does (more than 5%). Fix: more rows, a
  holdout_fraction nearer 0.5, or a higher threshold.
* ``anonymeter_rows``. Linkability and inference run ``min(anonymeter_attacks, n_bal)`` attacks
  and the gate blocks on fewer than asked: refuse when n_bal < ``anonymeter_attacks``.
* ``singling_out_queries``. Univariate singling out builds queries from values that occur once
  in the synthetic table (plus one ``is null`` and, for numbers, ``<= min``/``>= max`` per
  column): at most Σ (distinct values + 3) over the columns, where a declared categorical domain
  of k gives k + 1 (missing), a boolean 3, an integer with declared bounds its range, anything
  else up to n_train. Refuse when that cap is below ``singling_out_attacks``. Multivariate
  singling out combines 3 columns: refuse with fewer than 3 modelled columns, warn with fewer
  than 6 (a 4-column table generated ~110 of 500 queries). Fix: lower
  ``audit.singling_out_attacks`` or remove ``singling_out`` from ``audit.attacks``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace
from typing import Literal

import pandas as pd

from privsynth.audit.stats import auc_se, judges_tstr, paired_excess_ci
from privsynth.data.schema import ColumnSchema
from privsynth.encoding.marginals import resolve_share
from privsynth.encoding.numeric import value_grid
from privsynth.encoding.table_encoder import count_encoding_mechanisms, encoding_budget
from privsynth.policy.model import ColumnPolicy, GeneratorPolicy, Policy
from privsynth.policy.relations import derived_columns
from privsynth.privacy.mechanisms import threshold_for

Severity = Literal["refuse", "warn"]

#: cells of ``dp_bounds``' symmetric log grid (±1e-3 … ±1e15, quarter decades)
BOUNDS_GRID_CELLS = 146
#: the audit's cap on rows per side for distance attacks (``audit.context.MAX_DISTANCE_ROWS``)
_MAX_BALANCED = 60_000
_Z95, _Z90_ONE_SIDED = 1.96, 1.645


@dataclass(frozen=True)
class Finding:
    """One predicted problem: ``severity`` refuse or warn, a stable ``code``, the ``column`` it
    concerns (if any) and a ``message`` that names the column and the fix."""

    severity: Severity
    code: str
    message: str
    column: str | None = None

    def __str__(self) -> str:
        return f"{self.severity.upper()} [{self.code}] {self.message}"


def _noise_mass_per_cell(epsilon: float) -> float:
    """E[max(Z, 0)] for Z ~ DLap(1/ε): p / (1 - p²), p = e^{-ε}."""
    p = math.exp(-epsilon)
    return p / (1.0 - p * p)


def _split(policy: Policy, rows: int) -> tuple[int, int]:
    n_train = int(round(rows * (1.0 - policy.audit.holdout_fraction)))
    return n_train, rows - n_train


def _grid_cells(name: str, rule: ColumnPolicy) -> int:
    """Cells of the column's quantile grid (``value_grid``) when its bounds are public; 64 when
    they are DP (wide)."""
    if not isinstance(rule.bounds, tuple):
        return 64
    if rule.kind == "datetime":
        epoch = pd.Timestamp("1970-01-01")
        bounds = tuple(float((pd.Timestamp(str(v)) - epoch) / pd.Timedelta(days=1))
                       for v in rule.bounds)
    else:
        bounds = tuple(float(v) for v in rule.bounds)
    return len(value_grid(ColumnSchema(name, rule.kind, bounds=bounds,
                                       bounds_source="policy"))) - 1


def _widths(policy: Policy, n_train: int, tau: int | None) -> list[int]:
    """Slot widths per generator column (an estimate where a DP domain decides); a column a
    relation derives is computed at decode, not modelled."""
    widths = []
    derived = derived_columns(policy.relations)
    for name, rule in policy.columns.items():
        if not rule.modelled or name in derived:
            continue
        if rule.kind == "boolean":
            widths.append(3)
        elif rule.kind == "categorical":
            if isinstance(rule.domain, list):
                widths.append(len(rule.domain) + 1)
            else:
                kept = n_train // tau if tau else 20
                widths.append(min(max(kept, 0), 50) + 2)
        else:
            widths.append(rule.bins + 1)
    return widths


def _param_count(widths: list[int], hidden: list[int], latent: int) -> int:
    """Parameters of a VAE with these slot widths (encoder to 2·latent, decoder back)."""
    def mlp(sizes: list[int]) -> int:
        return sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    width = sum(widths)
    return mlp([width, *hidden, 2 * latent]) + mlp([latent, *hidden[::-1], width])


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def preflight(policy: Policy, rows: int | None) -> list[Finding]:
    """Predict, from ``policy`` and the declared public ``rows`` alone, every reason the release
    would be useless or blocked whatever the data (rules in the module docstring). Never reads
    the data. Under ``privacy.unit: person`` a record is a person: ``rows`` is the declared
    person count and the messages say persons."""
    findings = _preflight(policy, rows)
    if policy.privacy.unit != "person":
        return findings
    return [replace(f, message=_per_person(f.message)) for f in findings]


def _per_person(message: str) -> str:
    """A finding's wording for person records ("156 training rows" -> "156 training persons")."""
    return re.sub(r"\b(training|holdout|train) rows\b", r"\1 persons",
                  message.replace(" rows give ", " persons give "))


def _preflight(policy: Policy, rows: int | None) -> list[Finding]:
    out: list[Finding] = []
    budget = encoding_budget(policy)
    eps_count, delta_count = count_encoding_mechanisms(policy)
    eps_e = budget.epsilon_each
    delta_e = budget.delta_each
    tau = threshold_for(1.0 / eps_e, delta_e) if delta_count else None
    mu = _noise_mass_per_cell(eps_e)
    per_mech = (f"ε·encoding_share = {_fmt(policy.privacy.epsilon * policy.privacy.encoding_share)}"
                f" split over {eps_count} DP mechanisms gives ε = {_fmt(eps_e)} each")
    modelled = {name: rule for name, rule in policy.columns.items() if rule.modelled}
    out += _singling_out_rows_free(policy, modelled, rows)

    if rows is None:
        out.append(Finding(
            "warn", "rows_not_declared",
            "no public row count declared: the checks that depend on the table's size (DP "
            "thresholds and bounds vs rows, DP-SGD noise, the gate's interval widths) were "
            "skipped; declare an approximate public size as "
            + ("'dataset.persons' (unit: person)" if policy.privacy.unit == "person"
               else "'dataset.rows'")
            + " in the policy or pass --rows N (never a count read off the table)"))
        if tau is not None:
            out.append(Finding(
                "warn", "category_threshold",
                f"{per_mech}: every category of a 'domain: dp' column needs about {tau} rows to "
                "survive (the rest becomes __other__); declare the public category lists "
                "(domain: [...], free) or raise privacy.epsilon"))
        return out

    n_train, n_hold = _split(policy, int(rows))
    if n_train < 2 or n_hold < 1:
        out.append(Finding("refuse", "too_few_rows",
                           f"{rows} rows give {n_train} training and {n_hold} holdout rows; "
                           "a release needs at least 2 and 1: more rows are needed"))
        return out

    out += _encoding_rules(modelled, n_train, eps_e, tau, mu, per_mech)
    out += _delta_rule(policy, n_train, eps_e)
    out += _dpsgd_rules(policy, n_train, tau)
    out += _gate_rules(policy, modelled, n_train, n_hold)
    return out


def _encoding_rules(modelled: dict[str, ColumnPolicy], n_train: int, eps_e: float,
                    tau: int | None, mu: float, per_mech: str) -> list[Finding]:
    out = []
    for name, rule in modelled.items():
        if rule.kind == "categorical" and rule.domain == "dp" and tau is not None:
            most = n_train // tau
            fix = (f"declare the public category list for '{name}' (domain: [...], free), raise "
                   "privacy.epsilon, declare other DP bounds/domains to free ε, or drop the column")
            if most < 2:
                what = ("every category becomes __other__" if most == 0 else
                        "at most one category can survive, the rest becomes __other__")
                out.append(Finding(
                    "refuse", "category_threshold",
                    f"column '{name}': {per_mech}; the DP category threshold is τ = {tau} rows "
                    f"but the training split has about {n_train}: {what}. Fix: {fix}", name))
            elif tau > 0.05 * n_train:
                out.append(Finding(
                    "warn", "category_threshold",
                    f"column '{name}': {per_mech}; the DP category threshold is τ = {tau} rows "
                    f"({tau / n_train:.1%} of about {n_train} training rows): at most {most} "
                    f"categories can survive, rarer ones become __other__. Fix: {fix}", name))
        if rule.kind not in ("numeric", "integer", "datetime"):
            continue
        if rule.bounds == "dp":
            total = n_train + BOUNDS_GRID_CELLS * mu
            cells = 0.005 * total / mu
            magnitude = 15.0 - cells / 4.0
            fix = (f"declare public bounds for '{name}' (bounds: [low, high], free, e.g. from a "
                   "codebook or a legal range), raise privacy.epsilon, or drop the column")
            noise = (f"column '{name}': {per_mech}; DP bounds put about {_fmt(mu)} rows of noise "
                     f"on each of {BOUNDS_GRID_CELLS} log-grid cells "
                     f"({_fmt(mu * BOUNDS_GRID_CELLS)} in all) against about {n_train} "
                     f"training rows, so a bound is expected "
                     f"near ±1e{max(magnitude, -3):.0f} whatever the data")
            if magnitude > 9:
                out.append(Finding("refuse", "dp_bounds_noise",
                                   f"{noise}: the column would come out as noise. Fix: {fix}",
                                   name))
            elif magnitude > 6:
                out.append(Finding("warn", "dp_bounds_noise",
                                   f"{noise}: most values would share a few bins. Fix: {fix}",
                                   name))
        if rule.binning == "quantile":
            cells = _grid_cells(name, rule)
            mass = cells * mu
            fix = (f"use 'binning: uniform' for '{name}' (free) or raise privacy.epsilon")
            msg = (f"column '{name}': {per_mech}; DP quantile bins add about {_fmt(mass)} rows of "
                   f"noise over {cells} grid cells against about {n_train} training rows")
            if mass >= n_train:
                out.append(Finding("refuse", "quantile_bins_noise",
                                   f"{msg}: the bin edges would be set by the noise. Fix: {fix}",
                                   name))
            elif mass >= n_train / 4:
                out.append(Finding("warn", "quantile_bins_noise",
                                   f"{msg}: the bin edges would be noisy. Fix: {fix}", name))
    return out


def _delta_rule(policy: Policy, n_train: int, eps_e: float) -> list[Finding]:
    delta = policy.privacy.delta
    limit = 1.0 / (10.0 * n_train)
    fix = f"lower privacy.delta below {_fmt(1.0 / (10.0 * (n_train + 5.0 / eps_e)))}"
    if delta >= limit:
        return [Finding("refuse", "delta_too_large",
                        f"privacy.delta = {delta:g} is not below 1/(10·n) = {_fmt(limit)} for "
                        f"about {n_train} training rows. Fix: {fix}")]
    if delta >= 1.0 / (10.0 * (n_train + 5.0 / eps_e)):
        return [Finding("warn", "delta_too_large",
                        f"privacy.delta = {delta:g} is close to 1/(10·N̂): a noisy row count "
                        f"above {n_train} may refuse the release after ε is spent. Fix: {fix}")]
    return []


@functools.lru_cache(maxsize=256)
def _sigma(epsilon: float, delta: float, q: float, steps: int, accountant: str) -> float:
    from privsynth.privacy.accounting import calibrate_sigma  # noqa: PLC0415 - heavy import

    return calibrate_sigma(epsilon=epsilon, delta=delta, q=q, steps=steps, accountant=accountant)


#: ``dpsgd_noise`` refuses from this noise-to-signal ratio (see ``_dpsgd_rules``).
REFUSE_NOISE_RATIO = 3.0


def _dpsgd_rules(policy: Policy, n_train: int, tau: int | None) -> list[Finding]:
    gen = policy.generator
    share = policy.privacy.encoding_share
    columns = len(policy.privacy.marginals_columns or _widths(policy, n_train, tau))

    def marginals_at(epsilon: float) -> float:  # `auto` resolves per ε, as at fit
        return resolve_share(policy.privacy.marginals_share, epsilon=epsilon, n_public=n_train,
                             columns=columns, unit=policy.privacy.unit)

    scored = gen.tuning.score_share if gen.tuning is not None else 0.0
    eps_train = policy.privacy.epsilon * (1.0 - share - scored
                                          - marginals_at(policy.privacy.epsilon))
    _, delta_count = count_encoding_mechanisms(policy)
    delta_train = policy.privacy.delta * ((1.0 - share) if delta_count else 1.0)
    if gen.tuning is not None:  # judged on the candidate with the least noise per signal
        gen = min((gen.candidate(i) for i in range(len(gen.tuning.candidates))),
                  key=lambda g: _noise_per_sigma(g, policy, n_train, tau))
    schedule = gen.schedule(n_train)  # `auto` resolved as at fit, from the public count
    q = min(1.0, schedule.batch_size / n_train)
    batch = q * n_train
    steps = schedule.steps_for(n_train)
    out = []
    try:
        sigma = _sigma(eps_train, delta_train, q, steps, policy.privacy.accountant)
        tuned = (_tuning_factor(policy, eps_train, delta_train, n_train)
                 if policy.generator.tuning is not None else 1.0)
    except Exception as exc:  # noqa: BLE001 - any failure of the accountant refuses
        return [Finding("refuse", "dpsgd_calibration",
                        f"DP-SGD: no noise multiplier meets ε = {_fmt(eps_train)} at q = "
                        f"{_fmt(q)} and {steps} steps ({type(exc).__name__}). Fix: raise "
                        "privacy.epsilon or lower generator.epochs")]
    sigma *= tuned
    d = _param_count(_widths(policy, n_train, tau), list(gen.hidden), gen.latent_dim)
    per_sigma = math.sqrt(d) / (batch * math.sqrt(steps))  # the ratio r per unit of σ
    ratio = sigma * per_sigma
    msg = (f"DP-SGD: ε = {_fmt(eps_train)} over {steps} steps at q = {_fmt(q)} (expected batch "
           f"{batch:.0f} of about {n_train} training rows) needs noise multiplier σ = "
           f"{_fmt(sigma)}; on a model of about {d} parameters the noise on the summed updates is "
           f"{_fmt(ratio)} times the largest possible signal")
    fix = ("raise privacy.epsilon, use more rows, or a smaller network (generator.hidden); "
           "declaring public bounds and domains also adds to training only through the "
           "encoding share")
    # Refuse from 3: the ratio counts noise in every parameter direction against the signal,
    # which is conservative. Person-level VAEs at ratios 1.46 (wages, ε = 1: utility floor met in
    # 3 of 3 releases) and 2.03 (pbcseq, ε = 2: gate passed) learned; at 4.69 (pbcseq, ε = 1,
    # wide VAE) eight columns stayed at noise level.
    if ratio >= REFUSE_NOISE_RATIO:
        out.append(Finding("refuse", "dpsgd_noise",
                           f"{msg}: the generator would learn noise. Fix: {fix}"))
    elif ratio >= 0.1:
        out.append(Finding("warn", "dpsgd_noise", f"{msg}: expect poor fidelity. Fix: {fix}"))

    def ratio_at(epsilon: float) -> float:  # r at another ε, the same schedule and model
        return _sigma(epsilon * (1.0 - share - scored - marginals_at(epsilon)), delta_train, q,
                      steps, policy.privacy.accountant) * per_sigma * tuned

    out += _target_rule(policy, ratio, ratio_at)
    if steps < 50:
        out.append(Finding(
            "warn", "dpsgd_few_steps",
            f"DP-SGD runs only {steps} steps (epochs {schedule.epochs:g} at q = {_fmt(q)}): too "
            f"few to learn. Fix: lower generator.batch_size (e.g. {max(8, n_train // 20)}) so "
            "that there are more steps per epoch, or leave batch_size and epochs to 'auto'"))
    return out


def _noise_per_sigma(gen: GeneratorPolicy, policy: Policy, n_train: int, tau: int | None
                     ) -> float:
    """√d / (E[B]·√steps) of one generator block: the noise ratio r per unit of σ."""
    schedule = gen.schedule(n_train)
    batch = min(1.0, schedule.batch_size / n_train) * n_train
    d = _param_count(_widths(policy, n_train, tau), list(gen.hidden), gen.latent_dim)
    return math.sqrt(d) / (batch * math.sqrt(schedule.steps_for(n_train)))


def _tuning_factor(policy: Policy, eps_train: float, delta_train: float, n_train: int
                   ) -> float:
    """How much more noise accounted tuning needs than one run at the same ε: σ of random
    stopping over the candidates over σ of the first candidate alone (both in RDP), at the
    policy's ε; applied at other ε too (an estimate for the suggestion)."""
    from privsynth.generators.tuning import plan_candidates  # noqa: PLC0415 - heavy imports
    from privsynth.privacy import random_stopping  # noqa: PLC0415

    gen = policy.generator
    tuning = gen.tuning
    assert tuning is not None
    shapes = plan_candidates(gen, n_train)
    gamma = random_stopping.gamma_for(tuning.expected_runs, tuning.eta)
    sigmas = random_stopping.calibrate(shapes, epsilon=eps_train, delta=delta_train,
                                       eta=tuning.eta, gamma=gamma)
    q, steps = shapes[0]
    return sigmas[0] / _sigma(eps_train, delta_train, q, steps, "rdp")


#: ``target_unlearnable`` refuses from this noise-to-signal ratio (see ``_target_rule``).
REFUSE_TARGET_RATIO = 0.2


def _target_metric(policy: Policy) -> str | None:
    """The TSTR metric the utility floor will judge the named target by, from its public kind
    and domain: ``roc_auc`` (two categories), ``r2`` (a number); None where the floor reads
    accuracy (more classes, or a DP domain) or judges no TSTR."""
    audit = policy.audit
    rule = policy.columns.get(audit.target) if judges_tstr(audit) else None
    if rule is None:
        return None
    if rule.kind in ("numeric", "integer"):
        return "r2"
    if rule.kind == "boolean" or (rule.kind == "categorical" and isinstance(rule.domain, list)
                                  and len(rule.domain) == 2):
        return "roc_auc"
    return None


def _target_rule(policy: Policy, ratio: float, ratio_at) -> list[Finding]:
    """Refuse a row-level release whose named target DP-SGD is unlikely to learn.

    The utility floor blocks a release whose TSTR does not beat chance (AUC interval above 0.5,
    R² above 0). A relation between the target and the other columns is a second-order signal,
    weaker than the marginals the ``dpsgd_noise`` ratio r is about; measured on the shared tables
    (four audit draws pooled per model, 5-6 models each, ``docs/leak_panel.md``), the share of
    honest models that met the TSTR floor was 1/6 at r = 0.81 (German credit, ε = 1), 3/5 at 0.43
    (telecom churn, ε = 1), 4/6 at 0.31 (German credit, ε = 3), 4/5 at 0.24 (lending club,
    ε = 1), 6/6 at 0.21 and 0.13 (German credit, ε = 5 and 10); in the leak panel at r ≤ 0.18
    (German credit ε = 6, telecom churn ε = 3, lending club and dropout wages ε = 2, flchain
    and health insurance ε = 1) the floor passed 119 of 120 honest audits (one dropout wages
    draw at R² ≤ 0). From r = 0.2 a release would spend ε to be blocked too often: refuse,
    with the ε that brings r under 0.2.
    The rule reads no data, so it cannot see a strong relation: a planted one-column rule (real
    AUC 0.9, ``tests/test_target_weight.py``) is learned at r = 0.25 (TSTR 0.80); such a
    policy raises ε, or sets ``audit.utility.tstr: false`` and releases on the marginal floor.
    Accuracy targets (more than two classes) are not refused: the floor's accuracy slack passes
    a model that predicts the majority class. Person-level models are not covered: their ratio
    is computed from one row's widths and was not calibrated here."""
    metric = _target_metric(policy)
    if metric is None or policy.privacy.unit != "row" or ratio < REFUSE_TARGET_RATIO:
        return []
    return [Finding(
        "refuse", "target_unlearnable",
        f"the utility floor judges '{policy.audit.target}' by TSTR ({metric}); at a DP-SGD noise "
        f"ratio of {_fmt(ratio)} (dpsgd_noise; refused from {_fmt(REFUSE_TARGET_RATIO)}) "
        "honest models on the shared tables met it in 1 of 6 to 4 of 5 releases, so the gate "
        f"would often block after spending ε. Fix: raise privacy.epsilon to about "
        f"{_fmt(_epsilon_for(policy.privacy.epsilon, ratio, ratio_at))}, use more rows or a "
        "smaller network (generator.hidden), or set audit.utility.tstr: false to release on the "
        "marginal floor alone (the target is still weighted in training)")]


def _epsilon_for(epsilon: float, ratio: float, ratio_at) -> float:
    """The ε at which the noise ratio reaches ``REFUSE_TARGET_RATIO``: two secant steps of
    log r against log ε from (ε, r) (σ falls about as 1/ε at small ε, slower at large ε),
    rounded up to two significant figures; each step costs one σ calibration. Where a
    calibration fails, the last estimate stands (the message says "about")."""
    e0, r0 = epsilon, ratio
    e1 = e0 * r0 / REFUSE_TARGET_RATIO
    for _ in range(2):
        try:
            r1 = ratio_at(e1)
        except Exception:  # noqa: BLE001 - an estimate for a message, never a refusal's cause
            break
        if r1 <= REFUSE_TARGET_RATIO * 1.02 and r1 >= REFUSE_TARGET_RATIO * 0.9:
            break
        slope = math.log(r1 / r0) / math.log(e1 / e0) if e1 != e0 and r1 != r0 else -1.0
        e0, r0, e1 = e1, r1, e1 * (REFUSE_TARGET_RATIO / r1) ** (1.0 / min(slope, -0.1))
    return float(f"{e1 * 1.02:.2g}") if e1 * 1.02 >= 10 else math.ceil(e1 * 10.2) / 10


#: How unevenly synthetic records crowd onto real ones (h in the DCR share's null sd,
#: 0.5·√(h / (2 n))): up to 2 for rows; 3 for whole persons, whose wide records crowd more
#: (measured: null sd 0.024-0.034 at 444 wages persons per side, h ≈ 2-4; 0.042-0.045 at 156
#: pbc persons, h ≈ 2.2-2.5).
DCR_CROWDING = {"row": 2.0, "person": 3.0}


def _dcr_se(n_bal: int, unit: str) -> float:
    """The honest DCR share's standard error at ``n_bal`` records per side."""
    return 0.5 * math.sqrt(DCR_CROWDING[unit] / (2 * max(n_bal, 1)))


def _gate_rules(policy: Policy, modelled: dict[str, ColumnPolicy], n_train: int,
                n_hold: int) -> list[Finding]:
    audit = policy.audit
    th = audit.thresholds
    out = []
    n_bal = min(n_train, n_hold, _MAX_BALANCED)
    attacks = set(audit.attacks)
    for attack, key in (("exact_copy", "exact_copy_rate"), ("unique_qi", "unique_qi_copy_rate")):
        limit = getattr(th, key)
        if attack not in attacks or limit == 0:
            continue
        n_syn = _copy_rows(policy, n_train)
        floor = paired_excess_ci(0, 0, n_syn)[2]
        if floor >= limit:
            need = math.ceil(3.84 / limit / (1.0 - audit.holdout_fraction))
            out.append(Finding(
                "refuse", "copy_threshold_unreachable",
                f"audit.thresholds.{key} = {limit:g} cannot be met: with about {n_syn} "
                f"synthetic rows scored and not one copy, the gate's 95% upper bound is "
                f"{floor:.4f} "
                f"(Wilson, 0 events), not below {limit:g}, so every release is blocked. Fix: "
                f"raise audit.thresholds.{key} above {floor:.4f}, or use a table of at least "
                f"~{need} rows"))
    n_tr, n_ho = min(n_train, _MAX_BALANCED), min(n_hold, _MAX_BALANCED)
    for attack, key, se, z, what in (
            ("dcr", "dcr_share", _dcr_se(n_bal, policy.privacy.unit), _Z90_ONE_SIDED,
             "DCR share"),
            ("mia", "mia_auc", auc_se(n_tr, max(n_ho // 2, 1)), _Z95, "MIA AUC")):
        limit = getattr(th, key)
        if attack not in attacks:
            continue
        typical, tail = 0.5 + z * se, 0.5 + (z + _Z90_ONE_SIDED) * se
        fix = (f"use more rows, a holdout_fraction nearer 0.5 (now {audit.holdout_fraction:g}), "
               f"or raise audit.thresholds.{key} above {tail:.3f}")
        base = (f"{what} of an honest release on {n_tr} train and {n_ho} holdout rows has "
                f"standard error {se:.3f}")
        if typical >= limit:
            out.append(Finding("refuse", f"{attack}_power",
                               f"{base}: its typical 95% upper bound {typical:.3f} is not below "
                               f"audit.thresholds.{key} = {limit:g}; most honest releases would "
                               f"be blocked. Fix: {fix}"))
        elif tail >= limit:
            out.append(Finding("warn", f"{attack}_power",
                               f"{base}: more than 5% of honest releases would exceed "
                               f"audit.thresholds.{key} = {limit:g} (upper bound up to "
                               f"{tail:.3f}). Fix: {fix}"))
    for attack in ("linkability", "inference"):
        if attack in attacks and n_bal < audit.anonymeter_attacks:
            out.append(Finding(
                "refuse", "anonymeter_rows",
                f"{attack} needs audit.anonymeter_attacks = {audit.anonymeter_attacks} target "
                f"rows but the balanced audit sets hold about {n_bal}: the gate would block on "
                f"too few attacks. Fix: lower audit.anonymeter_attacks to at most {n_bal}"))
    if "singling_out" in attacks:
        cap = _univariate_cap(modelled, n_train)
        if cap < audit.singling_out_attacks:
            out.append(Finding(
                "refuse", "singling_out_queries",
                f"univariate singling out can build at most {cap} distinct queries from these "
                f"columns' values (declared domains, booleans, about {n_train} rows) but "
                f"audit.singling_out_attacks = {audit.singling_out_attacks}: the gate would block "
                f"on too few attacks. Fix: lower audit.singling_out_attacks to at most {cap}, or "
                "remove singling_out from audit.attacks"))
    return out


def _copy_rows(policy: Policy, n_train: int) -> int:
    """Synthetic rows the copy checks score: the audit's own choice where the audit can draw
    more rows than it releases (``audit_sample_rows``), else the released N̂ ≈ n_train."""
    try:
        from privsynth.audit.stats import audit_sample_rows  # noqa: PLC0415
    except ImportError:
        return n_train
    try:
        return int(audit_sample_rows(n_train, policy.audit))
    except AttributeError:  # a policy model without audit.audit_rows
        return n_train


def _univariate_cap(modelled: dict[str, ColumnPolicy], n_train: int | None) -> int | float:
    cap: int | float = 0
    for rule in modelled.values():
        if rule.kind == "boolean":
            distinct: int | float = 3
        elif rule.kind == "categorical" and isinstance(rule.domain, list):
            distinct = len(rule.domain) + 1
        elif rule.kind == "integer" and isinstance(rule.bounds, tuple):
            low, high = (float(v) for v in rule.bounds)
            distinct = math.floor(high) - math.ceil(low) + 2
        else:
            distinct = n_train if n_train is not None else math.inf
        cap += distinct + 3
    return cap


def _singling_out_rows_free(policy: Policy, modelled: dict[str, ColumnPolicy],
                            rows: int | None) -> list[Finding]:
    if "singling_out" not in policy.audit.attacks:
        return []
    fix = ("lower audit.singling_out_attacks or remove singling_out from audit.attacks "
           "(and rely on exact_copy, dcr and mia)")
    m = len(modelled)
    if m < 3:
        return [Finding("refuse", "singling_out_queries",
                        f"multivariate singling out combines 3 columns but the policy models "
                        f"{m}: the attack cannot run and the gate would block. Fix: {fix}")]
    if m < 6:
        return [Finding("warn", "singling_out_queries",
                        f"multivariate singling out on {m} modelled columns has only "
                        f"{math.comb(m, 3)} column triples and often builds far fewer than "
                        f"{policy.audit.singling_out_attacks} queries (a 4-column table built "
                        f"~110 of 500), which blocks the release. Fix: {fix}")]
    return []


def refusals(findings: list[Finding]) -> list[Finding]:
    """The findings that refuse a release."""
    return [f for f in findings if f.severity == "refuse"]


__all__ = ["Finding", "preflight", "refusals"]
