"""The release gate: a pure function from audit evidence and policy to a decision. Fails closed.

A release passes only when *all* of these hold:

* every attack the policy asked for ran and produced at least one result;
* no attack failed (raised, timed out, returned NaN, ran fewer attacks than asked, or got an
  empty or schema-mismatched table);
* for every gated risk, the *upper end* of its confidence interval, less the risk's *null
  excess*, is below the policy's threshold (a finite number; NaN never passes). The null excess
  is ``max(0, null_mean - null_nominal)`` from the risk's details: how far the permutation null
  of the statistic (train and holdout re-split at the same sizes, the synthetic table fixed)
  sits above the value the statistic has under the null by definition (0.5 for AUC and DCR
  share, 0 for excess rates). Thresholds are effect sizes over the null, so a statistic whose
  computation leans above its nominal null (the DCR share's bound for rows beyond its
  neighbour lists) is not blocked for that lean; a null below the nominal value is never used
  to loosen nor to tighten a limit. Risks without a null pass on the plain upper bound. A
  threshold of exactly 0 on a count-based risk (copies) means zero tolerance: it passes only
  if the observed count is 0;
* the run is not a seeded development run (its noise can be regenerated from the seed, so it
  carries no DP claim and is never released, whatever the policy says);
* the release is better than noise: the audit's utility floor (``AuditPolicy.utility``, on by
  default; see ``privsynth.policy.model.UtilityFloor``) found no more noise-level columns than
  allowed and TSTR beats a trivial classifier where a target is named. A utility computation
  that failed blocks while the floor is on;
* an attack the table cannot support (anonymeter could not generate its queries) is *not
  applicable*: neither a pass nor a failure. It is listed in the decision and the report, is not
  a ``missing_attack``, and counts as no evidence (a release with no gated risk at all is still
  blocked by ``no_evidence``);
* the data carry a differential-privacy claim, unless the policy explicitly waives that
  (``require_dp_claim: false``). Black-box attacks cannot tell a non-private generator from a DP
  one (CTGAN without DP scores MIA AUC ~0.51 on Adult), so the guarantee is checked separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from privsynth.audit.result import AuditResult
from privsynth.policy.model import Thresholds


@dataclass(frozen=True)
class GateCheck:
    """One comparison: a risk's CI upper bound against its threshold."""

    name: str
    attack: str
    threshold_key: str
    value: float | None
    upper_bound: float | None
    threshold: float | None
    passed: bool
    null_excess: float = 0.0


@dataclass(frozen=True)
class GateDecision:
    """``passed`` with every reason it did not, and each check made."""

    passed: bool
    reasons: tuple[str, ...]
    checks: tuple[GateCheck, ...]
    dp_claim: bool = False
    require_dp_claim: bool = True
    evidence: str = ""
    development_run: bool = False
    not_applicable: tuple[str, ...] = ()

    @property
    def reason_codes(self) -> tuple[str, ...]:
        """The machine-readable code of each reason (the text before the first colon)."""
        return tuple(r.split(":", 1)[0] for r in self.reasons)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "decision": "pass" if self.passed else "blocked",
            "reasons": list(self.reasons),
            "reason_codes": list(self.reason_codes),
            "checks": [{k: _finite(v) for k, v in asdict(c).items()} for c in self.checks],
            "dp_claim": self.dp_claim,
            "require_dp_claim": self.require_dp_claim,
            "evidence": self.evidence,
            "development_run": self.development_run,
            "not_applicable": list(self.not_applicable),
        }


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def decide(
    result: AuditResult,
    thresholds: Thresholds,
    *,
    dp_claim: bool,
    require_dp_claim: bool,
    attacks_requested: Sequence[str],
    development_run: bool = False,
) -> GateDecision:
    """Decide whether a release may leave. Pure: no I/O, no randomness, no clock."""
    reasons: list[str] = []
    checks: list[GateCheck] = []

    for failure in result.errors:
        reasons.append(
            f"{failure.reason_code}: attack '{failure.attack}' failed: {failure.message}")

    attacks_with_results = {r.attack for r in result.risks}
    failed = {f.attack for f in result.errors}
    inapplicable = {n.attack for n in result.not_applicable}
    for attack in dict.fromkeys(attacks_requested):
        if attack not in attacks_with_results and attack not in failed | inapplicable:
            reasons.append(
                f"missing_attack: attack '{attack}' was requested but produced no result")

    limits = thresholds.model_dump()
    for risk in result.risks:
        if risk.threshold_key is None:
            continue
        threshold = limits.get(risk.threshold_key)
        upper = risk.ci_high
        excess = null_excess(risk)
        finite = (isinstance(upper, int | float) and math.isfinite(upper)
                  and isinstance(risk.value, int | float) and math.isfinite(risk.value))
        if threshold is None:
            ok = False
            reasons.append(f"unknown_threshold: risk '{risk.name}' names threshold "
                           f"'{risk.threshold_key}' which the policy does not define")
        elif not finite:
            ok = False
            reasons.append(f"nan_result: risk '{risk.name}' has no finite upper bound")
        elif threshold == 0 and isinstance(risk.details.get("observed_count"), int):
            # zero tolerance: an interval is never below 0, so count events instead
            count = risk.details["observed_count"]
            ok = count == 0
            if not ok:
                reasons.append(
                    f"threshold_exceeded: {risk.name}: {count} event(s) observed and "
                    f"{risk.threshold_key}=0 tolerates none")
        else:
            ok = upper - excess < threshold
            if not ok:
                less = f" less null excess {excess:.4g}" if excess > 0 else ""
                reasons.append(
                    f"threshold_exceeded: {risk.name} upper bound {upper:.4g}{less} is not "
                    f"below {risk.threshold_key}={threshold:g} (estimate {risk.value:.4g})"
                    + _power_hint(risk, threshold))
        checks.append(GateCheck(
            name=risk.name, attack=risk.attack, threshold_key=risk.threshold_key,
            value=risk.value if finite else None, upper_bound=upper if finite else None,
            threshold=threshold, passed=ok, null_excess=excess,
        ))

    reasons += _utility_reasons(result.utility or {})

    if not checks and not reasons:
        reasons.append("no_evidence: no gated risk was measured, so nothing shows the release "
                       "is safe")

    if require_dp_claim and not dp_claim:
        reasons.append(
            "no_dp_claim: the data carry no differential-privacy claim and the policy requires "
            "one (set audit.require_dp_claim: false only if the privacy officer waives it)")

    if development_run:
        reasons.append(
            "development_run: the policy sets a seed, so every noise draw can be regenerated by "
            "whoever knows or guesses it; a seeded run carries no DP claim and is never "
            "released (remove `seed:` for a release)")

    passed = not reasons
    not_applicable = tuple(f"{n.attack}: {n.reason}" for n in result.not_applicable)
    attack_blocks = any(not r.startswith(("no_dp_claim", "development_run")) for r in reasons)
    if passed:
        evidence = ("passed: every requested attack ran and every risk's upper bound is below "
                    "its threshold" + ("; DP claim present" if dp_claim else
                                        "; DP claim waived by the policy"))
    elif attack_blocks and require_dp_claim and not dp_claim:
        evidence = "blocked by the attack evidence and by the missing DP claim"
    elif attack_blocks:
        evidence = "blocked by the attack evidence"
    elif development_run:
        evidence = ("a seeded development run: the attacks found nothing, but its noise is "
                    "reproducible, so it is never released")
    else:
        evidence = ("blocked by the missing DP claim alone: the attacks found nothing, but "
                    "attacks are evidence, not a guarantee")
    return GateDecision(passed=passed, reasons=tuple(reasons), checks=tuple(checks),
                        dp_claim=dp_claim, require_dp_claim=require_dp_claim, evidence=evidence,
                        development_run=development_run, not_applicable=not_applicable)


def null_excess(risk) -> float:
    """``max(0, null_mean - null_nominal)`` of a risk's permutation null (0 without one)."""
    d = risk.details or {}
    mean, nominal = d.get("null_mean"), d.get("null_nominal")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (mean, nominal)):
        return 0.0
    return max(0.0, float(mean) - float(nominal))


def _power_hint(risk, threshold: float) -> str:
    """When the sample was too small for an honest release to pass reliably, say so and how to
    fix it (the block stands: an interval too wide to show safety is not a pass)."""
    from privsynth.audit.stats import auc_holdout_rows_needed, auc_min_rows, auc_se

    d = risk.details or {}
    if risk.threshold_key == "mia_auc":
        nm, nh = int(d.get("members") or 0), int(d.get("non_members") or 0)
        if nm <= 0 or nh <= 0:
            return ""
        if auc_se(nm, nh) <= auc_se(auc_min_rows(threshold), auc_min_rows(threshold)):
            return ""
        need = auc_holdout_rows_needed(threshold, nm)
        scored = f"{nm} training and {nh} holdout rows scored"
        what = f"about {need} holdout rows" if need else "more rows on both sides"
    elif risk.threshold_key == "dcr_share":
        sd = d.get("null_sd")
        n_small = min(int(d.get("train_rows") or 0), int(d.get("holdout_rows") or 0))
        if not isinstance(sd, int | float) or n_small <= 0:
            return ""
        # an honest share is 0.5 with this sd; its upper bound stays below the threshold in 95%
        # of runs when (1.96 + 1.645) sd < threshold - 0.5, and sd falls like 1/sqrt(n)
        room = (threshold - 0.5) / (1.96 + 1.645)
        if sd <= room:
            return ""
        need = math.ceil(n_small * (sd / room) ** 2)
        scored = (f"the null's standard deviation is {sd:.3g} with {n_small} rows on the "
                  f"smaller side")
        what = f"about {need} rows on the smaller side"
    else:
        return ""
    return (f"; underpowered: {scored}, while an honest release passes this check 95% of the "
            f"time only from {what}; raise audit.holdout_fraction towards 0.5 (or the table "
            f"size) so the interval is narrow enough")


def _utility_reasons(utility: dict) -> list[str]:
    """The utility floor's block reasons, phrased for the user who must fix the policy."""
    if "error" in utility and utility.get("floor_enabled", True):
        return [f"utility_floor: the utility of the synthetic table could not be measured "
                f"({utility['error']}), so nothing shows it is better than noise"]
    floor = utility.get("floor")
    if not isinstance(floor, dict) or not floor.get("enabled", True) or floor.get("passed"):
        return []
    out = []
    noise = list(floor.get("noise_columns") or [])
    if len(noise) > int(floor.get("max_noise_columns", 0)):
        out.append(
            f"utility_floor: the synthetic table is no better than noise on columns {noise} "
            f"(their marginals are as far from the real holdout as a generator that learned "
            f"nothing: all __other__, all missing, or values at the bounds' extremes); declare "
            f"public bounds/domains for these columns in the policy or raise ε")
    tstr = floor.get("tstr")
    if isinstance(tstr, dict) and not tstr.get("passed", True):
        value = tstr.get("value")
        shown = "none (a single class in the synthetic target)" if value is None else \
            f"{value:.3g}"
        out.append(
            f"utility_floor: a model trained on the synthetic table predicts the target no "
            f"better than a trivial one (TSTR {tstr.get('metric')} {shown}, trivial baseline "
            f"{tstr.get('baseline')}); declare public bounds/domains or raise ε")
    if not out:
        out.append("utility_floor: the synthetic table did not pass the utility floor")
    return out
