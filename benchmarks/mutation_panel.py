"""Mutation panel: realistic DP bugs, each planted in a copy of the repository, each killed by
the test suite.

For every mutant the panel copies ``privsynth/``, ``tests/`` and ``pyproject.toml`` to a fresh
temporary folder, replaces one exact source snippet (it must occur exactly once: a refactor
that moves the code is reported as ``broken``, never silently skipped), and runs the mutant's
killing tests there::

    python -m pytest -q -x -p no:cacheprovider <killing tests>

from the copy's root with the copy first on ``PYTHONPATH`` (the development venv has privsynth
installed in editable mode pointing at the working tree; the ``import-sanity`` mutant breaks
the copy's ``import privsynth`` and so proves the copy is what the tests import). Results:
``killed`` (the tests failed), ``survived`` (they passed), ``broken`` (the snippet is not there
exactly once), ``error`` (pytest could not run the tests: unknown node id, nothing collected),
``timeout``.

Before any mutant runs, the *unmutated* copy must pass every killing test without a skip: a
panel that kills everything because the tests fail (or skip) anyway proves nothing.

Usage::

    python benchmarks/mutation_panel.py                 # the full panel
    python benchmarks/mutation_panel.py --ci            # the cheap subset (CI)
    python benchmarks/mutation_panel.py --only noise-off clip-off --jobs 2
    python benchmarks/mutation_panel.py --markdown docs/mutation_panel_table.md
    python benchmarks/mutation_panel.py --list

Exit status 0 only when every selected mutant is killed. See ``docs/mutation_panel.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("privsynth", "tests", "policies", "pyproject.toml")  # policies/: the demo policy
TIMEOUT_S = 900
SANITY_MARK = "mutation panel sanity check"


@dataclass(frozen=True)
class Mutant:
    """One planted bug: ``edits`` are (exact snippet, replacement) pairs in ``file``."""

    id: str
    area: str
    bug: str
    file: str
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]
    ci: bool = True  # its killing tests are cheap enough for every CI run
    sanity: bool = False  # a check of the panel itself, not a DP bug


@dataclass
class Outcome:
    mutant: Mutant
    result: str
    seconds: float
    detail: str = ""
    output: str = field(default="", repr=False)


T_SAMPLER = "tests/test_sampler.py"
T_DPSGD = "tests/test_dp_sgd.py"
T_MECH = "tests/test_mechanisms.py"
T_LEAK = "tests/test_preprocessing_leak.py"
T_GAN = "tests/test_gan.py"
T_GATE = "tests/test_gate.py"
T_NOISE = "tests/test_noise.py"
T_MUT_GAN = "tests/test_dp_mutants_gan.py"
T_MUT_MECH = "tests/test_dp_mutants_mechanisms.py"
T_MUT_SGD = "tests/test_dp_mutants_dpsgd.py"
T_MUT_REL = "tests/test_dp_mutants_release.py"
T_LEDGER = "tests/test_ledger.py"
T_PIPE = "tests/test_pipeline.py"
T_SYNTH = "tests/test_synthesizer.py"
T_PERSON = "tests/test_person_privacy.py"
T_MARGINALS = "tests/test_marginals.py"
T_TUNING = "tests/test_tuning.py"

DP_SGD = "privsynth/generators/dp_sgd.py"
GAN = "privsynth/generators/gan.py"
MECH = "privsynth/privacy/mechanisms.py"
NOISE = "privsynth/privacy/noise.py"
RNG = "privsynth/privacy/rng.py"
ENC = "privsynth/encoding/table_encoder.py"
GATE = "privsynth/gate.py"
LEDGER = "privsynth/privacy/ledger.py"
PIPELINE = "privsynth/pipeline.py"
SYNTH = "privsynth/synthesizer.py"
VERIFY = "privsynth/release/verify.py"
BUNDLE = "privsynth/release/bundle.py"
PERSONS = "privsynth/data/persons.py"
MARGINALS = "privsynth/encoding/marginals.py"
STOPPING = "privsynth/privacy/random_stopping.py"
TUNING = "privsynth/generators/tuning.py"


def m(id, area, bug, file, old, new, tests, *, ci=True, more=(), sanity=False) -> Mutant:
    """A mutant with one edit (``more`` adds further (old, new) edits in the same file)."""
    tests = (tests,) if isinstance(tests, str) else tuple(tests)
    return Mutant(id, area, bug, file, ((old, new), *more), tests, ci, sanity)


MUTANTS: list[Mutant] = [
    # ------------------------------------------------------------------ the panel itself
    m("import-sanity", "panel", "the copy's privsynth fails to import (proves the copy is what "
      "the tests import, not the editable install)", "privsynth/__init__.py",
      "from privsynth.errors import (",
      'raise ImportError("mutation panel sanity check")\nfrom privsynth.errors import (',
      T_GATE, sanity=True),
    # ------------------------------------------------------------------ the review's nine
    m("gan-raw-frequencies", "GAN conditioning",
      "the GAN's condition and marginal-loss frequencies come from the raw slot counts, not the "
      "noisy ones", GAN,
      "mass = np.clip(noisy, 0, None)",
      "mass = np.bincount(codes[:, j], minlength=w)",
      f"{T_MUT_GAN}::test_condition_frequencies_are_the_noisy_counts"),
    m("gan-generator-train-mode", "GAN conditioning",
      "G left in train mode in the discriminator step: BatchNorm mixes the real rows' "
      "conditions into every fake row", GAN,
      "            gen.eval()\n            with torch.no_grad(), self._amp():",
      "            gen.train()\n            with torch.no_grad(), self._amp():",
      f"{T_MUT_GAN}::test_discriminator_unit_loss_depends_on_its_own_row_only"),
    m("mask-reused", "sampling", "the Poisson mask is drawn once and reused every step", DP_SGD,
      "batch = data[self.poisson_mask(len(data))]",
      "batch = data[self.__dict__.setdefault('_mask', self.poisson_mask(len(data)))]",
      f"{T_SAMPLER}::test_every_step_draws_a_fresh_batch"),
    m("histogram-half-noise", "noise", "the Laplace histogram draws noise at half its scale",
      MECH,
      "counts = np.histogram(x, bins=edges)[0].astype(np.int64)\n"
      "    noisy = counts + _draw(noise, scale, len(counts))",
      "counts = np.histogram(x, bins=edges)[0].astype(np.int64)\n"
      "    noisy = counts + _draw(noise, scale / 2, len(counts))",
      f"{T_MECH}::test_histogram_noise_has_the_full_variance"),
    m("category-counts-no-noise", "noise", "category counts are released without noise", MECH,
      "counts = np.bincount(codes[codes >= 0], minlength=len(domain)).astype(np.int64)\n"
      "    noisy = counts + _draw(noise, scale, len(counts))",
      "counts = np.bincount(codes[codes >= 0], minlength=len(domain)).astype(np.int64)\n"
      "    noisy = counts + 0 * _draw(noise, scale, len(counts))",
      f"{T_MECH}::test_category_counts_are_noised_with_the_full_variance"),
    m("bounds-np-sort", "encoding", "DP bounds replaced by exact order statistics (np.sort of "
      "the raw values)", MECH,
      "low, high = float(grid[lo_cell]), float(grid[min(hi_cell + 1, len(grid) - 1)])",
      "ordered = np.sort(np.asarray(values, dtype=float)[~np.isnan(values)])\n"
      "    low = float(ordered[int(tail * (len(ordered) - 1))])\n"
      "    high = float(ordered[int((1 - tail) * (len(ordered) - 1))])",
      f"{T_LEAK}::test_dp_bounds_are_post_processing_of_the_noisy_histogram"),
    m("noise-off", "noise", "DP-SGD adds no noise (the accountant is still told σ)", DP_SGD,
      "noise_multiplier=plan.noise_multiplier,\n            max_grad_norm",
      "noise_multiplier=0.0,\n            max_grad_norm",
      f"{T_DPSGD}::test_zero_gradient_run_has_noise_std_lr_sigma_c_over_expected_batch"),
    m("noise-quarter", "noise", "DP-SGD adds a quarter of the planned noise", DP_SGD,
      "noise_multiplier=plan.noise_multiplier,\n            max_grad_norm",
      "noise_multiplier=plan.noise_multiplier / 4,\n            max_grad_norm",
      f"{T_DPSGD}::test_zero_gradient_run_has_noise_std_lr_sigma_c_over_expected_batch"),
    m("clip-off", "clipping", "per-sample gradients are summed unclipped", DP_SGD,
      "coefficients = self.module.get_clipping_coef().to(losses.device)",
      "coefficients = torch.ones_like(self.module.get_clipping_coef()).to(losses.device)",
      f"{T_DPSGD}::test_every_per_sample_contribution_has_norm_at_most_c"),
    # ------------------------------------------------------------------ sampling
    m("q-from-exact-n", "sampling", "q and the steps planned from the exact N, not the public "
      "N̂", DP_SGD,
      "return self.public_rows if self.public_rows is not None else n_rows",
      "return n_rows",
      f"{T_SAMPLER}::test_plan_uses_the_public_row_count_not_the_rows_it_is_given", ci=False),
    m("gan-q-from-exact-n", "sampling", "the GAN plans its DP-SGD run from len(data) (the exact "
      "N)", GAN,
      "plan = DPSGDPlan.calibrate(sgd_config, sgd_config.plan_rows(len(data)))",
      "plan = DPSGDPlan.calibrate(sgd_config, len(data))",
      f"{T_MUT_GAN}::test_gan_plans_from_the_public_row_count", ci=False),
    m("fixed-size-batches", "sampling", "fixed-size batches (shuffle and take E[B]) instead of "
      "Poisson sampling", DP_SGD,
      "        return draws < cut\n",
      "        keep = torch.zeros(n_rows, dtype=torch.bool, device=self.device)\n"
      "        keep[torch.argsort(draws)[:round(self.plan.sample_rate * n_rows)]] = True\n"
      "        return keep\n",
      f"{T_SAMPLER}::test_batch_sizes_follow_binomial"),
    m("float32-mask", "sampling", "a float32 rand() < q mask (keeps rows at 2⁻²⁴ at least)",
      DP_SGD,
      "        return draws < cut\n",
      "        del draws, cut\n"
      "        return torch.rand(n_rows, generator=self.generator, device=self.device,\n"
      "                          dtype=torch.float32) < self.plan.sample_rate\n",
      f"{T_SAMPLER}::test_a_tiny_rate_is_kept_exactly_not_at_a_float_floor", ci=False),
    m("q-rounded-up", "sampling", "q rounded up to the 2⁻³² grid (rows kept slightly above "
      "E[B]/N̂)", DP_SGD,
      "scaled = math.floor(min(1.0, rate) * 2**Q_BITS)",
      "scaled = math.ceil(min(1.0, rate) * 2**Q_BITS)",
      f"{T_SAMPLER}::test_plan_q_is_expected_batch_over_counted_rows", ci=False),
    # ------------------------------------------------------------------ clipping
    m("clip-norm-doubled", "clipping", "Opacus clips at 2C while the noise is calibrated to C",
      DP_SGD,
      "max_grad_norm=config.max_grad_norm, use_ghost_clipping=True",
      "max_grad_norm=2 * config.max_grad_norm, use_ghost_clipping=True",
      f"{T_DPSGD}::test_every_per_sample_contribution_has_norm_at_most_c", ci=False),
    m("gan-condition-from-other-row", "GAN conditioning", "D's condition for row i read from "
      "row i-1 (the unit loss then depends on two rows)", GAN,
      "index = self.offsets_[j] + batch.gather(1, j[:, None]).squeeze(1)",
      "index = self.offsets_[j] + batch.roll(1, 0).gather(1, j[:, None]).squeeze(1)",
      f"{T_MUT_GAN}::test_discriminator_unit_loss_depends_on_its_own_row_only", ci=False),
    # ------------------------------------------------------------------ accounting
    m("sigma-for-larger-epsilon", "accounting", "σ calibrated for twice the allotted ε",
      DP_SGD,
      "sigma = calibrate_sigma(epsilon=config.epsilon, delta=config.delta,",
      "sigma = calibrate_sigma(epsilon=2 * config.epsilon, delta=config.delta,",
      f"{T_MUT_SGD}::test_plan_spends_at_most_its_epsilon_at_its_delta"),
    m("sigma-for-larger-delta", "accounting", "σ calibrated for 100× the allotted δ", DP_SGD,
      "sigma = calibrate_sigma(epsilon=config.epsilon, delta=config.delta,",
      "sigma = calibrate_sigma(epsilon=config.epsilon, delta=100 * config.delta,",
      f"{T_MUT_SGD}::test_plan_spends_at_most_its_epsilon_at_its_delta", ci=False),
    m("accountant-fewer-steps", "accounting", "the charge counts one step fewer than ran",
      DP_SGD,
      "steps=self.steps_done, delta=self.config.delta,",
      "steps=max(0, self.steps_done - 1), delta=self.config.delta,",
      f"{T_SAMPLER}::test_trainer_tells_its_accountant_exactly_the_planned_q_each_step", ci=False),
    m("divide-by-realised-batch", "noise", "the optimizer divides by the realised batch size "
      "(leaks B, and the noise no longer has std σC/E[B])", DP_SGD,
      "        self.optimizer.zero_grad(set_to_none=True)\n"
      "        losses = self._clipped_sum(batch, loss_fn)",
      "        self.optimizer.expected_batch_size = max(1, len(batch))\n"
      "        self.optimizer.zero_grad(set_to_none=True)\n"
      "        losses = self._clipped_sum(batch, loss_fn)",
      f"{T_MUT_SGD}::test_noise_is_divided_by_the_expected_not_the_realised_batch"),
    m("gan-cond-budget-not-deducted", "accounting", "the GAN's conditioning ε is not taken out "
      "of the DP-SGD ε (the charges sum above the allotment)", GAN,
      "sgd_config = dataclasses.replace(config, epsilon=config.epsilon - spent)",
      "sgd_config = config",
      f"{T_GAN}::test_dp_conditioning_charges_and_budget_split", ci=False),
    m("threshold-too-low", "noise", "the domain threshold τ forgets the count of 1 "
      "(τ one too low: a one-row category passes at e^ε·δ)", MECH,
      "    return 1 + m\n",
      "    return m\n",
      f"{T_LEAK}::test_canary_enters_a_dp_domain_at_most_at_rate_delta", ci=False),
    m("threshold-on-raw-counts", "noise", "the domain threshold applied to the raw counts",
      MECH,
      "keep = noisy >= tau",
      "keep = counts >= tau",
      f"{T_LEAK}::test_domain_follows_the_noisy_counts_not_the_raw_ones"),
    m("row-count-no-noise", "noise", "the DP row count N̂ is the exact N", MECH,
      "value = max(int(n) + int(_draw(noise, scale, 1)[0]), 0)",
      "value = max(int(n) + 0 * int(_draw(noise, scale, 1)[0]), 0)",
      f"{T_MECH}::test_noisy_count_is_noised_with_the_full_variance"),
    m("secure-noise-zero-twice", "noise", "the exact sampler keeps -0 (zero drawn at twice its "
      "probability)", NOISE,
      "            if negative and y == 0:\n                continue\n",
      "",
      f"{T_NOISE}::test_secure_noise_fits_the_exact_pmf", ci=False),
    m("seeded-noise-wrong-rate", "noise", "the dev sampler's geometric rate uses 2/scale",
      NOISE,
      "success = -math.expm1(-1.0 / scale)",
      "success = -math.expm1(-2.0 / scale)",
      f"{T_NOISE}::test_seeded_noise_fits_the_exact_pmf", ci=False),
    m("release-noise-seeded", "noise", "a release (no seed) draws its count noise from a "
      "seeded numpy generator", RNG,
      "        if self._seed is None:\n            return SecureNoise()\n",
      "",
      f"{T_MUT_MECH}::test_release_noise_comes_from_the_os_csprng", ci=False),
    m("release-torch-seed-constant", "noise", "a release seeds torch (DP-SGD noise) with a "
      "constant", RNG,
      "seed = secrets.randbits(64) if self._seed is None else self._stream_seed(stream)",
      "seed = 0 if self._seed is None else self._stream_seed(stream)",
      f"{T_DPSGD}::test_two_release_mode_runs_differ", ci=False),
    # ------------------------------------------------------------------ encoding
    m("encoding-split-forgets-row-count", "encoding", "the encoding ε split ignores the N̂ "
      "count (the encoding charges sum above their share)", ENC,
      "eps_count, delta_count = 1, 0  # the release's noisy row count N̂",
      "eps_count, delta_count = 0, 0",
      f"{T_MUT_MECH}::test_encoding_charges_with_the_row_count_fit_their_share"),
    m("encoding-split-forgets-quantiles", "encoding", "the ε split does not count the quantile "
      "histograms (charges above the share)", ENC,
      'eps_count += (rule.bounds == "dp") + (rule.binning == "quantile")',
      'eps_count += (rule.bounds == "dp")',
      f"{T_MUT_MECH}::test_encoding_charges_with_the_row_count_fit_their_share", ci=False),
    m("encoding-delta-not-split", "encoding", "each DP domain gets the whole encoding δ",
      ENC,
      "return EncodingBudget(eps_total / eps_count, delta_total / max(delta_count, 1), "
      "eps_count)",
      "return EncodingBudget(eps_total / eps_count, delta_total, eps_count)",
      f"{T_MUT_MECH}::test_encoding_charges_with_the_row_count_fit_their_share", ci=False),
    m("uniform-bins-from-data", "encoding", "'uniform' bin edges at the data's quantiles "
      "(no charge)", ENC,
      "        edges = bins(grid, rule.bins)\n",
      "        edges = np.unique(np.nanquantile(np.clip(values, *bounds),\n"
      "                                         np.linspace(0, 1, rule.bins + 1)))\n",
      f"{T_MUT_MECH}::test_uniform_bins_do_not_depend_on_the_data", ci=False),
    m("grid-from-data", "encoding", "the fine grid of the quantile histogram spans the data's "
      "min and max, not the bounds", ENC,
      "    grid = value_grid(schema, transform=rule.transform, "
      "transform_scale=rule.transform_scale)\n",
      "    grid = value_grid(schema, transform=rule.transform, "
      "transform_scale=rule.transform_scale)\n"
      "    grid = np.linspace(np.nanmin(values), np.nanmax(values), len(grid))\n",
      f"{T_MUT_MECH}::test_quantile_grid_does_not_depend_on_the_data", ci=False),
    # ------------------------------------------------------------------ ledger
    m("ledger-no-budget-check", "ledger", "a reservation does not check the population's "
      "remaining ε", LEDGER,
      "            if spent + want > total:\n",
      "            if False:  # the remaining budget is not checked\n",
      f"{T_LEDGER}::test_serial_reservations_fill_the_budget_exactly"),
    m("ledger-no-delta-check", "ledger", "a reservation does not check the remaining δ",
      LEDGER,
      "            if spent_d + want_delta > total_d:\n",
      "            if False:  # the remaining delta is not checked\n",
      f"{T_LEDGER}::test_delta_is_budgeted"),
    m("ledger-refund", "ledger", "a run that used less than it reserved (a failed run: "
      "nothing) is refunded the difference", LEDGER,
      "                if used <= _dec(from_micro(int(known[\"epsilon_micro\"]))) * (1 + slack):\n"
      "                    over = 0\n",
      "",
      f"{T_LEDGER}::test_charges_never_refund_and_overrun_is_charged",
      more=(("if over > 0 or over_d > 0:", "if over != 0 or over_d > 0:"),
            ("epsilon_micro=max(0, over),", "epsilon_micro=over,"))),
    m("ledger-cap-from-policy", "ledger", "reserve takes the cap from the caller (the release "
      "policy) when it names one", LEDGER,
      "    def reserve(self, *, population: str, release_id: str, epsilon: float,\n"
      "                delta: float, unit: str = \"row\",\n"
      "                rows_per_person: int | None = None) -> Reservation:",
      "    def reserve(self, *, population: str, release_id: str, epsilon: float,\n"
      "                delta: float, unit: str = \"row\",\n"
      "                rows_per_person: int | None = None,\n"
      "                total_epsilon: float | None = None) -> Reservation:",
      f"{T_LEDGER}::test_a_policy_cannot_set_or_raise_the_total",
      more=(('            total = int(state["total_epsilon_micro"])\n',
             '            total = (int(state["total_epsilon_micro"]) if total_epsilon is None\n'
             '                     else to_micro(total_epsilon, round_up=False))\n'),)),
    m("ledger-unverified-grants", "ledger", "reserve grants budget from a ledger that fails "
      "its hash-chain check", LEDGER,
      "                if problems:\n                    raise LedgerError(\n"
      "                        f\"the ledger {self.location} does not verify",
      "                if False:\n                    raise LedgerError(\n"
      "                        f\"the ledger {self.location} does not verify",
      f"{T_LEDGER}::test_reserve_refuses_a_ledger_that_does_not_verify[sqlite]"),
    # ------------------------------------------------------------------ gate
    m("gate-nan-passes", "gate",
      "no finiteness check and `not upper >= t`: a NaN upper bound passes", GATE,
      "        elif not finite:\n",
      "        elif False:  # the finite check forgotten\n",
      f"{T_GATE}::test_blocks",
      more=(("ok = upper - excess < threshold", "ok = not upper - excess >= threshold"),)),
    m("gate-lower-bound", "gate", "the gate compares the lower, not the upper, CI bound",
      GATE,
      "upper = risk.ci_high",
      "upper = risk.ci_low",
      f"{T_GATE}::test_blocks"),
    m("gate-dev-run-released", "gate", "a seeded development run passes the gate", GATE,
      "    if development_run:\n        reasons.append(",
      "    if False:\n        reasons.append(",
      f"{T_MUT_REL}::test_the_gate_never_releases_a_development_run"),
    # ------------------------------------------------------------------ release
    m("exact-row-count-released", "release", "the synthetic table (and the manifest's row "
      "figure) has the exact N rows instead of N̂", SYNTH,
      "keep = slice(None, n_public) if owners is None else owners < n_public",
      "keep = slice(None, len(train)) if owners is None else owners < n_public",
      f"{T_MUT_REL}::test_the_output_and_manifest_carry_the_dp_row_count", ci=False),
    m("dp-claim-ignores-seed", "release", "the DP claim is granted to a seeded development "
      "run", PIPELINE,
      'return seed_mode == "os-entropy" and trained and counted and finite and within',
      "return trained and counted and finite and within",
      f"{T_PIPE}::test_dp_claim_needs_dp_sgd_on_the_dp_count_within_the_allotment"),
    m("blocked-release-public", "release", "a blocked release still writes its public part",
      BUNDLE,
      "        if release.decision.passed:\n",
      "        if True:  # the gate's decision is not consulted\n",
      f"{T_PIPE}::test_a_copying_synthesizer_is_blocked_and_writes_nothing_public", ci=False),
    m("synth-save-keeps-rows", "release", "Synthesizer.save writes the training rows it keeps "
      "for the audit beside the DP model", SYNTH,
      '"policy_digest": self.policy.digest(),',
      '"policy_digest": self.policy.digest(), "rows": self._train.to_dict("list"),',
      f"{T_SYNTH}::test_save_load_round_trip_holds_no_training_value"),
    m("synth-release-twice", "release", "one fitted model may be gated again and again (retry "
      "until a lucky audit passes)", SYNTH,
      "        if self._released:\n",
      "        if False:  # every call gets a fresh gate attempt\n",
      f"{T_SYNTH}::test_own_holdout_is_what_the_audit_reads", ci=False),
    m("verify-trusts-stated-charge", "release", "verify takes each charge's stated ε and δ "
      "instead of recomputing them", VERIFY,
      'return [charge_cost(c["mechanism"], c["params"], c["delta"])',
      'return [(float(c["epsilon"]), float(c["delta"]))',
      f"{T_MUT_REL}::test_verify_recomputes_every_charge"),
    # ------------------------------------------------------------------ privacy per person
    m("person-bound-ignored", "per person", "the contribution bound is not applied: every row "
      "of a person is kept (a person weighs up to all of their rows, not k)", PERSONS,
      "kept = np.nonzero(rank < max_rows)[0]",
      "kept = np.arange(len(frame))",
      f"{T_PERSON}::test_contribution_bound_keeps_at_most_k_rows_per_person"),
    m("person-encoder-all-rows", "per person", "the person encoder is fitted on every kept row "
      "instead of one row per person (a person with k rows counts k times in the DP domains, "
      "bins and quantiles)", PIPELINE,
      'one_row_per_person(train, person_layout(policy), rng.numpy("person-row"))',
      "from_wide(train, person_layout(policy))[0]",
      f"{T_PERSON}::test_encoding_is_fitted_on_one_row_per_person",
      more=(("from privsynth.data.persons import one_row_per_person, person_layout",
             "from privsynth.data.persons import from_wide, one_row_per_person, "
             "person_layout"),)),
    m("person-split-by-row", "per person", "the audit split is drawn over rows, then the "
      "persons are built on each side (a person's rows on both sides; the record still says "
      "person)", SYNTH,
      "            train, holdout, split = _split(records, holdout_fraction, rng, release_id,\n"
      "                                           policy.privacy.unit)\n",
      "            train, holdout, split = _split(records, holdout_fraction, rng, release_id,\n"
      "                                           policy.privacy.unit)\n"
      "            if self.per_person and holdout_fraction is not None:\n"
      "                pid = policy.privacy.person.id\n"
      "                rows = prepared.frame.reset_index(drop=True).assign(\n"
      "                    _pid_=raw[pid].reset_index(drop=True).to_numpy())\n"
      "                tr, ho, split = _split(rows, holdout_fraction, rng, release_id, 'row')\n"
      "                split = {**split, 'unit': 'person', 'table_persons': len(records)}\n"
      "                train, holdout = (self._records(\n"
      "                    side.rename(columns={'_pid_': pid}), side.drop(columns='_pid_'),\n"
      "                    rng)[0] for side in (tr, ho))\n",
      f"{T_PERSON}::test_split_is_by_person"),
    m("person-draws-positional", "per person", "the contribution bound's draws come from a "
      "positional RNG (row i of the table), not keyed per person: adding a person elsewhere "
      "changes which rows the others keep", PERSONS,
      "    rank = pd.Series(codes).groupby(codes).cumcount().to_numpy()\n"
      "    out = np.empty(len(keys))\n",
      "    return np.random.default_rng(int.from_bytes(secret[:8], 'big')).random(len(keys))\n"
      "    rank = pd.Series(codes).groupby(codes).cumcount().to_numpy()\n"
      "    out = np.empty(len(keys))\n",
      f"{T_PERSON}::test_adding_or_removing_a_person_keeps_the_others_rows"),
    # ------------------------------------------------------------------ one-way marginals
    m("marginals-raw-counts", "one-way marginals", "the shares matched at sampling are the "
      "exact slot counts, not the noisy ones (the measurement's noise is computed and dropped)",
      MARGINALS,
      "mass = np.clip(noisy, 0, None).astype(float)",
      "mass = np.bincount(lookup[codes[:, j]], minlength=k).astype(float)",
      f"{T_MARGINALS}::test_measurement_is_charged_per_column_and_its_noise_has_the_laplace_"
      "scale"),
    m("marginals-uncharged", "one-way marginals", "the marginal measurement is not recorded in "
      "the spend: DP-SGD is calibrated to the whole remainder and the manifest understates ε",
      MARGINALS,
      "            spend.add(charge)\n            mass = np.clip",
      "            mass = np.clip",
      f"{T_MARGINALS}::test_measurement_is_charged_per_column_and_its_noise_has_the_laplace_"
      "scale"),
    # ------------------------------------------------------------------ accounted tuning
    m("tuning-no-run-count-term", "accounted tuning", "random stopping's log E[K]/(λ-1) term is "
      "dropped: the tuned ε is the best-of-K cost without paying for the repetitions",
      STOPPING,
      "    return curve + extra + math.log(expected_runs(eta, gamma)) / (lam - 1)",
      "    return curve + extra",
      f"{T_TUNING}::test_tuned_epsilon_is_theorem_2"),
    m("tuning-selected-only", "accounted tuning", "the tuned charge is accounted over the kept "
      "candidate's plan only, not the worst over every candidate (a noisier candidate's "
      "plan hides a cheaper one's cost)", STOPPING,
      "    curve = np.max([_rdp(run, ORDERS) for run in runs], axis=0)",
      "    curve = _rdp(runs[0], ORDERS)",
      f"{T_TUNING}::test_tuned_epsilon_is_theorem_2"),
    m("tuning-score-uncharged", "accounted tuning", "the score tables are measured but not "
      "recorded in the spend: DP-SGD is calibrated to the whole remainder", TUNING,
      "                stage=\"tuning\")\n            spend.add(charge)\n",
      "                stage=\"tuning\")\n",
      f"{T_TUNING}::test_the_score_pays_for_every_table_and_prefers_the_real_relation"),
    m("tuning-keeps-last", "accounted tuning", "the last run is kept instead of the best-scoring "
      "one (the selection ignores the score)", TUNING,
      "        if best is None or value < best.score:",
      "        if True:",
      f"{T_TUNING}::test_random_stopping_keeps_the_candidate_that_learned", ci=False),
]


# ---------------------------------------------------------------------- running
def copy_repository(dest: Path) -> None:
    """privsynth/, tests/ and pyproject.toml into ``dest`` (no .venv, no .git, no caches)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)


def apply(mutant: Mutant, root: Path) -> str | None:
    """Apply the edits in ``root``; the reason it cannot (a snippet not there exactly once)."""
    path = root / mutant.file
    if not path.is_file():
        return f"{mutant.file} does not exist"
    text = path.read_text(encoding="utf-8")
    for i, (old, new) in enumerate(mutant.edits, start=1):
        count = text.count(old)
        if count != 1:
            return f"edit {i}: snippet found {count} times in {mutant.file} (expected once)"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return None


def run_tests(root: Path, tests: tuple[str, ...], threads: int, *,
              stop_first: bool = True) -> tuple[int, str]:
    """``python -m pytest`` in ``root``, the copy first on PYTHONPATH. (returncode, output)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "tests")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
               *(["-x"] if stop_first else []), *tests]
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return -1, out
    return done.returncode, done.stdout + done.stderr


def last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else ""


def run_mutant(mutant: Mutant, threads: int) -> Outcome:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.id}-") as tmp:
        root = Path(tmp)
        copy_repository(root)
        problem = apply(mutant, root)
        if problem:
            return Outcome(mutant, "broken", time.monotonic() - start, problem)
        rc, output = run_tests(root, mutant.tests, threads)
    seconds = time.monotonic() - start
    summary = last_line(output)
    if rc == -1:
        return Outcome(mutant, "timeout", seconds, f"ran past {TIMEOUT_S} s", output)
    if rc == 0:
        return Outcome(mutant, "survived", seconds, summary, output)
    if mutant.sanity and SANITY_MARK not in output:
        return Outcome(mutant, "error", seconds, "the copy's mutated code was not what the "
                       "tests imported", output)
    if rc in (1, 2):  # tests failed, or collection failed (import error)
        return Outcome(mutant, "killed", seconds, summary, output)
    return Outcome(mutant, "error", seconds, f"pytest exit {rc}: {summary}", output)


def baseline(mutants: list[Mutant], threads: int) -> tuple[bool, str, float]:
    """The unmutated copy must pass every killing test, none skipped."""
    tests = tuple(dict.fromkeys(t for mu in mutants for t in mu.tests))
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutant-baseline-") as tmp:
        root = Path(tmp)
        copy_repository(root)
        rc, output = run_tests(root, tests, threads, stop_first=False)
    seconds = time.monotonic() - start
    summary = last_line(output)
    ok = rc == 0 and "skipped" not in summary and "deselected" not in summary
    return ok, (summary if ok else output[-6000:]), seconds


def markdown(outcomes: list[Outcome]) -> str:
    lines = ["| mutant | area | bug | killing test | result | seconds |",
             "|---|---|---|---|---|---:|"]
    for o in outcomes:
        tests = "<br>".join(f"`{t.removeprefix('tests/')}`" for t in o.mutant.tests)
        bug = o.mutant.bug.replace("|", "\\|")
        lines.append(f"| `{o.mutant.id}` | {o.mutant.area} | {bug} | {tests} | {o.result} | "
                     f"{o.seconds:.1f} |")
    return "\n".join(lines) + "\n"


def select(args: argparse.Namespace) -> list[Mutant]:
    by_id = {mu.id: mu for mu in MUTANTS}
    if len(by_id) != len(MUTANTS):
        raise SystemExit("duplicate mutant ids")
    if args.only:
        unknown = [i for i in args.only if i not in by_id]
        if unknown:
            raise SystemExit(f"unknown mutant id(s): {unknown}; see --list")
        return [by_id[i] for i in args.only]
    return [mu for mu in MUTANTS if mu.ci or not args.ci]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ci", action="store_true", help="only the mutants with cheap tests")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="mutants run in parallel (default: one per core; each pytest then "
                             "gets cores/jobs threads)")
    parser.add_argument("--markdown", type=Path, help="write the results table here")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="do not check the unmutated copy first (debugging only)")
    args = parser.parse_args(argv)
    chosen = select(args)
    if args.list:
        for mu in chosen:
            print(f"{mu.id:34} {mu.area:17} {'ci ' if mu.ci else '   '}{mu.bug}")
        return 0
    jobs = max(1, args.jobs)
    threads = max(1, (os.cpu_count() or 2) // jobs)
    began = time.monotonic()
    if not args.skip_baseline:
        ok, summary, seconds = baseline(chosen, threads * jobs)
        print(f"baseline (unmutated copy, {len(chosen)} mutants' tests): "
              f"{'pass' if ok else 'FAIL'} in {seconds:.1f} s: {summary}", flush=True)
        if not ok:
            print("the unmutated copy must pass every killing test without a skip; fix the "
                  "suite first", file=sys.stderr)
            return 2

    def one(mutant: Mutant) -> Outcome:
        outcome = run_mutant(mutant, threads)
        print(f"{outcome.result:9} {outcome.seconds:6.1f} s  {mutant.id}: {outcome.detail}",
              flush=True)
        return outcome

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = list(pool.map(one, chosen))
    total = time.monotonic() - began
    bad = [o for o in outcomes if o.result != "killed"]
    for o in bad:
        print(f"\n--- {o.mutant.id}: {o.result} ({o.detail})\n{o.output[-3000:]}",
              file=sys.stderr)
    print(f"\n{len(outcomes) - len(bad)}/{len(outcomes)} mutants killed in {total:.1f} s "
          f"({jobs} job(s))")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(outcomes), encoding="utf-8")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
