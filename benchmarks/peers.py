"""Side-by-side benchmark of privsynth's DP backends against DP peers (smartnoise-synth MST, AIM).

Every shared table with a target (``benchmarks/policies/<table>.yaml``, ``audit.target``) is split
as in ``benchmarks/defaults_study.py`` (its ``_split``: one seeded permutation, first half held
out, second half trained on). Each system makes a synthetic table with as many rows as the
training half; every table is then scored the same way, in this process, by privsynth's own
external audit (``privsynth.audit.external.audit_tables``): TSTR (ROC AUC on a binary target,
accuracy on another categorical one, R² on a numeric one), the mean 1-way marginal TVD, the
largest membership-inference AUC and the DCR share.

Systems:

* ``privsynth-vae``: ``privsynth.Synthesizer`` with the reviewed policy at the given ε, its
  generator's ``epochs`` and ``batch_size`` removed (so both are ``auto``), no seed (OS entropy);
* ``mst`` and ``aim``: smartnoise-synth 1.0.8 in its own virtual environment
  (``benchmarks/.peers/snsynth``, made by ``--setup-only`` or on first use), run in a subprocess
  on integer codes made from the policy's public facts only (see ``encode``);
* ``privsynth-gan``: the same with the policy's generator block replaced by the GAN's defaults;
* ``independent``: a NON-PRIVATE control, each column drawn independently from its exact
  marginal on the training half;
* ``sdv-ctgan`` and ``sdv-tvae``: NON-PRIVATE references, SDV 1.x's CTGAN and TVAE at their
  default settings (or ``--sdv-epochs``) in their own virtual environment
  (``benchmarks/.peers/sdv``, torch 2.13.0 CPU installed first), on the training half with
  numbers as numbers. ε does not apply to them: one run per table is enough.

    python benchmarks/peers.py --setup-only
    python benchmarks/peers.py --tables german_credit telecom_churn --json /tmp/peers.json

Prints a markdown TSTR table per ε (rows: tables, columns: systems, plus ``real``: the same
model trained on the real training half) and a long table of every figure. Never prints a cell
value of a real table, only aggregate figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from defaults_study import POLICIES, ROOT, TABLES, _split, scratch_ledger  # noqa: E402

PEERS = HERE / ".peers"
SN_VENV = PEERS / "snsynth"
SN_PYTHON = SN_VENV / "bin" / "python"
SN_PACKAGES = ["mbi>=1.1,<2", "Faker>=17", "disjoint-set>=0.9,<0.10", "smartnoise-sql>=1.0.10",
               "pandas", "numpy", "scipy", "networkx"]
SYSTEMS = ["privsynth-vae", "privsynth-tuned", "privsynth-gan", "mst", "aim", "dpctgan",
           "patectgan", "independent", "sdv-ctgan", "sdv-tvae"]
#: ``privsynth-tuned``: the VAE with accounted tuning (random stopping, E[K] = 3, η = 0) over
#: the widths the width study found best on different tables (docs/defaults_study.md)
TUNING = {"candidates": [{"hidden": [16]}, {"hidden": [32]}, {"hidden": [64]}],
          "expected_runs": 3, "eta": 0, "score_share": 0.1}
#: NON-PRIVATE references (no DP at all): SDV's CTGAN and TVAE at their default settings
REFERENCE_SYSTEMS = {"sdv-ctgan", "sdv-tvae"}
#: DP peers in the smartnoise-synth venv: MST and AIM (mbi), DP-CTGAN and PATE-CTGAN (opacus
#: 0.14 with torch 2.13 CPU installed there; smartnoise-synth pins opacus < 0.15)
PEER_SYSTEMS = {"mst", "aim", "dpctgan", "patectgan"}
#: the audit's attacks for scoring (the full panel is not needed for these figures)
ATTACKS = ["exact_copy", "dcr", "mia"]
#: integer columns spanning at most this many values get one bin per value
MAX_EXACT_VALUES = 32
#: uniform bins over the declared bounds for every other numeric column
NUMERIC_BINS = 24

#: the worker run inside the smartnoise-synth venv: fits MST/AIM on integer codes whose
#: cardinalities are given (no value of the data is read to build the domain) and writes codes
WORKER = r'''
import json, sys, time
from importlib import metadata
if sys.argv[1] == "--versions":
    names = ["smartnoise-synth", "smartnoise-sql", "mbi", "jax", "jaxlib", "numpy", "pandas",
             "opendp", "torch", "opacus"]
    print(json.dumps({n: metadata.version(n) for n in names}))
    raise SystemExit(0)
import pandas as pd
from snsynth import Synthesizer
from snsynth.transform.base import ColumnTransformer
from snsynth.transform.definitions import ColumnType
from snsynth.transform.table import TableTransformer

class Coded(ColumnTransformer):
    """A column already coded 0..card-1 (card: public)."""
    def __init__(self, card):
        super().__init__()
        self.card = int(card)
    @property
    def output_type(self):
        return ColumnType.CATEGORICAL
    @property
    def cardinality(self):
        return [self.card]
    def _fit(self, val):
        pass
    def _clear_fit(self):
        self._fit_complete = True
        self.output_width = 1
    def _transform(self, val):
        return int(val)
    def _inverse_transform(self, val):
        return int(val)

job = json.loads(open(sys.argv[1]).read())
codes = pd.read_csv(job["codes"])
kwargs = {"epsilon": float(job["epsilon"]), "delta": float(job["delta"])}
if job["system"] == "aim" and job.get("rounds"):
    kwargs["rounds"] = int(job["rounds"])
if job["system"] in ("dpctgan", "patectgan"):
    kwargs["verbose"] = False
    # one-hot over the public cardinalities: the transformer is fitted on a frame holding every
    # code 0..card-1 (public), never on the data, so no preprocessor ε is needed
    domain = pd.DataFrame({c: [i % k for i in range(max(job["cards"]))]
                           for c, k in zip(codes.columns, job["cards"])})
    transformer = TableTransformer.create(domain, style="gan",
                                          categorical_columns=list(codes.columns))
    transformer.fit(domain, epsilon=0.0)
else:
    transformer = TableTransformer([Coded(c) for c in job["cards"]])
start = time.perf_counter()
synth = Synthesizer.create(job["system"], **kwargs)
synth.fit(codes, transformer=transformer, preprocessor_eps=0.0)
fit_s = time.perf_counter() - start
out = synth.sample(int(job["rows"]))
out = pd.DataFrame(out, columns=codes.columns) if not isinstance(out, pd.DataFrame) else out
out.columns = codes.columns
out.to_csv(job["out"], index=False)
import resource
json.dump({"fit_s": fit_s, "sample_s": time.perf_counter() - start - fit_s,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
          open(job["out"] + ".json", "w"))
'''


#: the worker run inside the SDV venv: a NON-PRIVATE reference (metadata detected from the
#: training half, default settings); reads the training half, writes the synthetic table
SDV_WORKER = r'''
import json, sys, time
from importlib import metadata
if sys.argv[1] == "--versions":
    print(json.dumps({n: metadata.version(n) for n in ["sdv", "ctgan", "rdt", "torch"]}))
    raise SystemExit(0)
import pandas as pd
from sdv.metadata import Metadata
from sdv.single_table import CTGANSynthesizer, TVAESynthesizer
job = json.loads(open(sys.argv[1]).read())
data = pd.read_csv(job["train"], keep_default_na=True)
for name in job["categorical"]:
    data[name] = data[name].astype("string")
meta = Metadata.detect_from_dataframe(data)
for name in job["categorical"]:
    meta.update_column(column_name=name, sdtype="categorical")
cls = {"sdv-ctgan": CTGANSynthesizer, "sdv-tvae": TVAESynthesizer}[job["system"]]
start = time.perf_counter()
synth = cls(meta, **({"epochs": int(job["epochs"])} if job.get("epochs") else {}))
synth.fit(data)
fit_s = time.perf_counter() - start
synth.sample(int(job["rows"])).to_csv(job["out"], index=False)
import resource
json.dump({"fit_s": fit_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
           / 1024}, open(job["out"] + ".json", "w"))
'''
SDV_VENV = PEERS / "sdv"
SDV_PYTHON = SDV_VENV / "bin" / "python"


# ----------------------------------------------------------------------------- setup
def _run(cmd: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def peer_versions() -> dict[str, str] | None:
    """Package versions in the smartnoise-synth venv (None: the venv is not usable)."""
    if not SN_PYTHON.exists():
        return None
    done = _run([str(SN_PYTHON), "-c", WORKER, "--versions"], timeout=300)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def setup_peers() -> dict[str, str]:
    """Create ``benchmarks/.peers/snsynth`` (idempotent): smartnoise-synth 1.0.8 without its
    pinned deps, then what MST and AIM import (mbi 1.x pulls jax/jaxlib for CPU), then torch
    2.13 CPU and opacus 0.14 for DP-CTGAN and PATE-CTGAN (pac-synth is not installed)."""
    versions = peer_versions()
    if versions is not None:
        return versions
    PEERS.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", "--clear", str(SN_VENV)],
             [str(SN_PYTHON), "-m", "pip", "install", "-q", "--upgrade", "pip"],
             [str(SN_PYTHON), "-m", "pip", "install", "-q", "--no-deps",
              "smartnoise-synth==1.0.8"],
             [str(SN_PYTHON), "-m", "pip", "install", "-q", *SN_PACKAGES],
             # DP-CTGAN / PATE-CTGAN: torch's CPU build first (local disk), then the opacus
             # smartnoise-synth pins
             [str(SN_PYTHON), "-m", "pip", "install", "-q", "torch==2.13.0"],
             [str(SN_PYTHON), "-m", "pip", "install", "-q", "opacus<0.15", "packaging"]]
    for cmd in steps:
        print("setup:", shlex.join(cmd), flush=True)
        done = _run(cmd, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"setup failed ({done.returncode}): {done.stderr[-2000:]}")
    versions = peer_versions()
    if versions is None:
        raise SystemExit("setup: the smartnoise-synth venv does not import")
    return versions


# ----------------------------------------------------------------------------- policies
_POLICY_TEXT: dict[str, str] = {}


def policy_spec(table: str) -> dict:
    """The reviewed policy of ``table`` as read the first time this run asked for it: a policy
    edited while a long benchmark runs does not change (or break) the rows still to come."""
    if table not in _POLICY_TEXT:
        _POLICY_TEXT[table] = (POLICIES / f"{table}.yaml").read_text()
    return yaml.safe_load(_POLICY_TEXT[table])


def scoring_policy(table: str, epsilon: float):  # noqa: ANN201
    """The reviewed policy as the scorer: attacks restricted to ``ATTACKS``, seed 0 (only the
    audit's own randomness: every system is scored by the same TSTR model and attacks)."""
    from privsynth.policy.loader import parse_policy

    spec = policy_spec(table)
    spec["privacy"]["epsilon"] = float(epsilon)
    spec["audit"]["attacks"] = list(ATTACKS)
    spec["seed"] = 0
    return parse_policy(yaml.safe_dump(spec, sort_keys=False), f"{table}-peers-scorer")


# ----------------------------------------------------------------------------- codes
def _column_codes(rule: dict) -> dict:
    """How one column is coded, from the policy alone (kind, public bounds, declared domain).
    Every column gets one extra code for a missing cell (the policies declare ``""`` missing)."""
    kind = rule.get("kind", "categorical")
    if kind in ("integer", "numeric"):
        lo, hi = (float(b) for b in rule["bounds"])
        if kind == "integer" and hi - lo + 1 <= MAX_EXACT_VALUES:
            edges = np.arange(lo - 0.5, hi + 1.0, 1.0)
            return {"kind": kind, "lo": lo, "hi": hi, "edges": edges, "exact": True,
                    "card": len(edges)}  # len(edges) - 1 values + missing
        edges = np.linspace(lo, hi, NUMERIC_BINS + 1)
        return {"kind": kind, "lo": lo, "hi": hi, "edges": edges, "exact": False,
                "card": NUMERIC_BINS + 1}
    domain = rule.get("domain")
    return {"kind": "categorical", "domain": None if domain is None else
            [str(v) for v in domain], "card": None if domain is None else len(domain) + 1}


def encode(train: pd.DataFrame, spec: dict) -> tuple[pd.DataFrame, dict]:
    """Integer codes for MST/AIM. Numeric columns: clamped to the policy's public bounds, then
    one bin per value (integers spanning ≤ 32 values) or 24 uniform bins over the bounds;
    categorical columns: the declared domain (a value outside it is coded missing). The last
    code of every column is "missing". Dropped columns are not modelled."""
    codes, layout = {}, {}
    for name, rule in spec["columns"].items():
        if rule.get("rule") == "drop":
            continue
        info = _column_codes(rule)
        raw = train[name].astype(str).str.strip()
        if info["kind"] == "categorical":
            if info["domain"] is None:  # no declared domain: values of the data (not DP)
                info["domain"] = sorted(set(raw) - {""})
                info["card"] = len(info["domain"]) + 1
                info["from_data"] = True
            index = {v: i for i, v in enumerate(info["domain"])}
            col = raw.map(index).fillna(len(index))
        else:
            x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
            missing = np.isnan(x)
            x = np.clip(np.nan_to_num(x, nan=info["lo"]), info["lo"], info["hi"])
            bins = len(info["edges"]) - 1
            if info["exact"]:
                code = np.rint(x - info["lo"]).astype(int)
            else:
                code = np.floor((x - info["lo"]) / (info["hi"] - info["lo"]) * bins).astype(int)
            code = np.clip(code, 0, bins - 1)
            col = pd.Series(np.where(missing, bins, code), index=train.index)
        codes[name] = col.astype(int)
        layout[name] = info
    return pd.DataFrame(codes), layout


def _number_text(value: float, integer: bool) -> str:
    return str(int(value)) if integer else repr(round(float(value), 6))


def decode(codes: pd.DataFrame, layout: dict, spec: dict, rng: np.random.Generator
           ) -> pd.DataFrame:
    """Codes back to a string table: a numeric bin becomes a uniform draw inside the bin (an
    integer drawn uniformly among the bin's integers), a category its label, missing ``""``."""
    out = {}
    n = len(codes)
    for name, rule in spec["columns"].items():
        if rule.get("rule") == "drop":
            out[name] = [""] * n
            continue
        info = layout[name]
        code = codes[name].to_numpy(dtype=int)
        if info["kind"] == "categorical":
            labels = np.array(info["domain"] + [""], dtype=object)
            out[name] = labels[np.clip(code, 0, len(labels) - 1)]
            continue
        edges = info["edges"]
        bins = len(edges) - 1
        missing = code >= bins
        k = np.clip(code, 0, bins - 1)
        if info["exact"]:
            values = info["lo"] + k
        elif info["kind"] == "integer":
            low = np.ceil(edges[k])
            high = np.where(k == bins - 1, edges[-1], np.ceil(edges[k + 1]) - 1)
            values = rng.integers(low.astype(np.int64), np.maximum(high, low).astype(np.int64)
                                  + 1)
        else:
            values = rng.uniform(edges[k], edges[k + 1])
        integer = info["kind"] == "integer"
        out[name] = np.array(["" if m else _number_text(v, integer)
                              for v, m in zip(values, missing, strict=True)], dtype=object)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- systems
class PeakRss:
    """Peak resident memory of this process while the block runs (MiB), polled every 20 ms
    from ``/proc/self/statm``: privsynth fits in the benchmark's own process, so the kernel's
    lifetime peak (``ru_maxrss``) would carry earlier runs. Includes the interpreter and its
    imports, as the peers' workers' ``ru_maxrss`` does."""

    def __enter__(self) -> PeakRss:
        self.mb, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        while True:
            try:
                rss = int(Path("/proc/self/statm").read_text().split()[1]) * page_mb
            except (OSError, ValueError, IndexError):
                return
            self.mb = max(self.mb, rss)
            if self._stop.wait(0.02):
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_privsynth(table: str, train: pd.DataFrame, epsilon: float, backend: str = "vae"
                  ) -> tuple[pd.DataFrame, float, dict]:
    """privsynth through its public API: the reviewed policy at ε, epochs and batch size
    ``auto``, no seed; for the GAN, the policy's generator block replaced by the GAN's
    defaults (the reviewed settings are the VAE's)."""
    import privsynth as ps
    from privsynth.policy.loader import parse_policy

    spec = policy_spec(table)
    spec["privacy"]["epsilon"] = float(epsilon)
    spec.pop("seed", None)
    spec["generator"].pop("epochs", None)
    spec["generator"].pop("batch_size", None)
    if backend == "tuned":
        spec["generator"]["tuning"] = TUNING
    elif backend != "vae":
        spec["generator"] = {"backend": backend, "device": spec["generator"].get("device", "cpu")}
    # scored by the shared scorer, not by the release's own utility floor: pre-flight's
    # target_unlearnable refusal (which protects a user's budget) does not apply to a comparison
    spec["audit"].setdefault("utility", {})["tstr"] = False
    policy = parse_policy(yaml.safe_dump(spec, sort_keys=False), f"{table}-peers-{backend}")
    with scratch_ledger(policy, train, officer="peers") as ledger, PeakRss() as peak:
        start = time.perf_counter()
        model = ps.Synthesizer(policy, ledger=ledger).fit(train)
        fit_s = time.perf_counter() - start
        synthetic = model.sample(len(train))
    plan = next((c for c in model.charges_ if c.get("mechanism") == "dp_sgd"), {})
    params = plan.get("params") or {}
    tuned = next((c["params"] for c in model.charges_ if c.get("mechanism") == "dp_sgd_tuned"),
                 None)
    if tuned:  # the kept candidate's plan (its index is public; the number of runs is not)
        sigma, _, steps = tuned["runs"][tuned["selected"]]
        params = {"sigma": sigma, "steps": steps, "selected": tuned["selected"]}
    marginals = sum(c["epsilon"] for c in model.charges_ if c.get("stage") == "marginals")
    return synthetic, fit_s, {"steps": params.get("steps"), "sigma": params.get("sigma"),
                              **({"selected": params["selected"]} if tuned else {}),
                              "marginals_epsilon": round(marginals, 6),
                              "peak_rss_mb": round(peak.mb)}


def run_peer(system: str, table: str, train: pd.DataFrame, epsilon: float, timeout: float,
             aim_rounds: int | None, rng: np.random.Generator
             ) -> tuple[pd.DataFrame, float, dict]:
    """MST or AIM in the smartnoise-synth venv, on codes of the training half."""
    spec = policy_spec(table)
    codes, layout = encode(train, spec)
    delta = float(spec["privacy"]["delta"])
    with tempfile.TemporaryDirectory() as tmp:
        job = {"system": system, "codes": str(Path(tmp) / "codes.csv"),
               "out": str(Path(tmp) / "synthetic.csv"), "epsilon": float(epsilon),
               "delta": delta, "rows": len(train),
               "cards": [layout[c]["card"] for c in codes.columns],
               "rounds": aim_rounds if system == "aim" else None}
        codes.to_csv(job["codes"], index=False)
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        done = subprocess.run([str(SN_PYTHON), "-c", WORKER, str(Path(tmp) / "job.json")],
                              capture_output=True, text=True, timeout=timeout, env=env)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
            raise RuntimeError(f"worker exited {done.returncode}: {tail[0][:300]}")
        out = pd.read_csv(job["out"])
        timing = json.loads(Path(job["out"] + ".json").read_text())
    extra = {"delta": delta, "cards": int(sum(job["cards"])),
             "sample_s": round(timing["sample_s"], 1),
             "peak_rss_mb": round(timing["peak_rss_mb"])}
    if system == "aim":
        extra["rounds"] = aim_rounds or 16 * len(codes.columns)
    return decode(out, layout, spec, rng), timing["fit_s"], extra


def setup_sdv() -> dict[str, str]:
    """Create ``benchmarks/.peers/sdv`` (idempotent): torch 2.13.0 first (the CPU build this
    machine installs from local disk), then SDV 1.x, whose CTGAN and TVAE are the non-private
    references."""
    if not SDV_PYTHON.exists():
        _run([sys.executable, "-m", "venv", str(SDV_VENV)], timeout=600)
        _run([str(SDV_PYTHON), "-m", "pip", "install", "-q", "torch==2.13.0"], timeout=1800)
        _run([str(SDV_PYTHON), "-m", "pip", "install", "-q", "sdv==1.*"], timeout=1800)
    done = _run([str(SDV_PYTHON), "-c", SDV_WORKER, "--versions"], timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"the SDV venv does not work: {done.stderr[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_sdv(system: str, table: str, train: pd.DataFrame, timeout: float,
            epochs: int | None) -> tuple[pd.DataFrame, float, dict]:
    """NON-PRIVATE reference: SDV's CTGAN or TVAE on the training half, numbers as numbers
    (by the policy's kinds), categories as text, missing cells as missing."""
    spec = policy_spec(table)
    frame, categorical = {}, []
    for name, rule in spec["columns"].items():
        if rule.get("rule") == "drop":
            continue
        raw = train[name].astype(str).str.strip().replace("", np.nan)
        if rule.get("kind") in ("numeric", "integer"):
            frame[name] = pd.to_numeric(raw, errors="coerce")
        else:
            frame[name] = raw
            categorical.append(name)
    with tempfile.TemporaryDirectory() as tmp:
        job = {"system": system, "train": str(Path(tmp) / "train.csv"),
               "out": str(Path(tmp) / "synthetic.csv"), "rows": len(train),
               "categorical": categorical, "epochs": epochs}
        pd.DataFrame(frame).to_csv(job["train"], index=False)
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        done = subprocess.run([str(SDV_PYTHON), "-c", SDV_WORKER, str(Path(tmp) / "job.json")],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-400:])
        out = pd.read_csv(job["out"], dtype=str, keep_default_na=False)
        timing = json.loads(Path(job["out"] + ".json").read_text())
    for name, rule in spec["columns"].items():  # whole numbers back to integer text
        if rule.get("kind") == "integer" and name in out.columns:
            values = pd.to_numeric(out[name], errors="coerce").round()
            out[name] = [("" if math.isnan(v) else str(int(v))) for v in values]
    return out, timing["fit_s"], {"epochs": epochs or "default",
                                  "peak_rss_mb": round(timing["peak_rss_mb"])}


def run_independent(table: str, train: pd.DataFrame, rng: np.random.Generator
                    ) -> tuple[pd.DataFrame, float, dict]:
    """NON-PRIVATE control: each column drawn independently from its exact training marginal
    (dropped columns left empty)."""
    spec = policy_spec(table)
    start = time.perf_counter()
    out = {}
    for name in train.columns:
        rule = spec["columns"].get(name, {})
        values = train[name].to_numpy(dtype=object)
        out[name] = ([""] * len(train) if rule.get("rule") == "drop"
                     else rng.choice(values, size=len(train), replace=True))
    return pd.DataFrame(out), time.perf_counter() - start, {}


# ----------------------------------------------------------------------------- scoring
def as_text(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A synthetic table as strings (missing: ``""``), with every policy column present."""
    out = {}
    for name in columns:
        if name not in frame.columns:
            out[name] = [""] * len(frame)
            continue
        col = frame[name]
        out[name] = [("" if v is None or (isinstance(v, float) and math.isnan(v))
                      else str(v)) for v in col.tolist()]
    return pd.DataFrame(out)


def score(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, policy) -> dict:  # noqa: ANN001
    from privsynth.audit.external import audit_tables

    result = audit_tables(train, holdout, synthetic, policy, label="peers").audit
    util = result.utility or {}
    tstr = util.get("tstr") or {}
    real = tstr.get("real") or {}
    metric = "roc_auc" if "roc_auc" in real else (tstr.get("metric") or "accuracy")
    mia = [r.value for r in result.risks if re.fullmatch(r"mia_.*_auc", r.name)]
    dcr = [r.value for r in result.risks if r.name == "dcr_share"]
    return {"metric": metric, "tstr": (tstr.get("synthetic") or {}).get(metric),
            "real": real.get(metric), "tvd": util.get("marginal_tvd_mean"),
            "tvd_2way": util.get("pairwise_tvd_mean"),
            "association_difference": util.get("association_difference_mean"),
            "mia_auc": max(mia) if mia else None, "dcr_share": dcr[0] if dcr else None,
            "audit_errors": [e.attack for e in result.errors]}


def one_run(system: str, table: str, epsilon: float, seed: int, args: argparse.Namespace
            ) -> dict:
    train, holdout = _split(table)
    row = {"table": table, "system": system, "epsilon": epsilon, "seed": seed,
           "rows_train": len(train), "status": "ok"}
    rng = np.random.default_rng()
    start = time.perf_counter()
    try:
        if system.startswith("privsynth-"):
            synthetic, fit_s, extra = run_privsynth(table, train, epsilon,
                                                    system.removeprefix("privsynth-"))
        elif system in PEER_SYSTEMS:
            synthetic, fit_s, extra = run_peer(system, table, train, epsilon, args.timeout,
                                               args.aim_rounds, rng)
        elif system in REFERENCE_SYSTEMS:
            synthetic, fit_s, extra = run_sdv(system, table, train, args.timeout,
                                              args.sdv_epochs)
        elif system == "independent":
            synthetic, fit_s, extra = run_independent(table, train, rng)
        else:
            raise ValueError(f"unknown system {system}")
    except subprocess.TimeoutExpired:
        row.update(status="timeout", fit_s=round(time.perf_counter() - start, 1))
        return row
    except Exception as exc:  # noqa: BLE001 - a failed system is a row, not a stop
        row.update(status="failed", error=f"{type(exc).__name__}: {str(exc)[:300]}",
                   fit_s=round(time.perf_counter() - start, 1))
        return row
    row.update(fit_s=round(fit_s, 1), rows_synthetic=len(synthetic), **extra)
    try:
        policy = scoring_policy(table, epsilon)
        columns = list(policy_spec(table)["columns"])
        row.update(score(train, holdout, as_text(synthetic, columns), policy))
    except Exception as exc:  # noqa: BLE001
        row.update(status="audit failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
    return row


# ----------------------------------------------------------------------------- output
def _fmt(value: object, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{float(value):.{digits}f}"


def _mean(values: list) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def tstr_tables(rows: list[dict], systems: list[str], tables: list[str],
                epsilons: list[float]) -> str:
    out = []
    for eps in epsilons:
        out += [f"\n### TSTR at ε = {eps:g} (mean over seeds)\n",
                "| table | metric | real | " + " | ".join(systems) + " |",
                "|---|---|---|" + "---|" * len(systems)]
        for table in tables:
            part = [r for r in rows if r["table"] == table and r["epsilon"] == eps]
            if not part:
                continue
            metric = next((r["metric"] for r in part if r.get("metric")), "-")
            cells = []
            for s in systems:
                runs = [r for r in part if r["system"] == s]
                ok = [r["tstr"] for r in runs if r["status"] == "ok"]
                bad = sorted({r["status"] for r in runs if r["status"] != "ok"})
                cell = _fmt(_mean(ok)) if ok else "-"
                if bad:
                    cell = (cell + " (" if ok else "") + "/".join(bad) + (")" if ok else "")
                cells.append(cell)
            real = _mean([r.get("real") for r in part])
            out.append(f"| {table} | {metric} | {_fmt(real)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f} (1)"
    return f"{np.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}] ({len(values)})"


def verdict_table(rows: list[dict], tables: list[str], epsilons: list[float]) -> str:
    """Per table and ε: privsynth's best backend against the best DP peer and the
    independent-marginals control, by mean TSTR over seeds (mean [min, max] (seeds))."""
    out = ["\n### privsynth's best backend against the best DP peer (mean TSTR over seeds)\n",
           "| table | ε | metric | privsynth (backend) | best DP peer | independent | ahead |",
           "|---|---|---|---|---|---|---|"]
    for table in tables:
        for eps in epsilons:
            part = [r for r in rows if r["table"] == table and float(r["epsilon"]) == eps
                    and r["status"] == "ok" and r.get("tstr") is not None]
            if not part:
                continue

            def runs(system: str, part: list[dict] = part) -> list[float]:
                return [float(r["tstr"]) for r in part if r["system"] == system]

            def best(systems: list[str]) -> tuple[str | None, list[float]]:
                scored = [(np.mean(runs(x)), x) for x in systems if runs(x)]
                return (max(scored)[1], runs(max(scored)[1])) if scored else (None, [])

            ours, ours_runs = best([x for x in SYSTEMS if x.startswith("privsynth-")])
            peer, peer_runs = best(sorted(PEER_SYSTEMS))
            if ours is None:
                continue
            ahead = "-" if peer is None else (
                "privsynth" if np.mean(ours_runs) >= np.mean(peer_runs) else peer)
            out.append(f"| {table} | {eps:g} | {part[0].get('metric', '-')} | "
                       f"{_spread(ours_runs)} {ours.removeprefix('privsynth-')} | "
                       f"{_spread(peer_runs)} {peer or ''} | "
                       f"{_spread(runs('independent'))} | {ahead} |")
    return "\n".join(out)


#: the per-figure tables printed after TSTR: (row key, title, digits)
FIGURE_TABLES = [
    ("tvd", "1-way TVD (mean over columns; 20 bins per number)", 3),
    ("tvd_2way", "2-way TVD (mean over column pairs; 10 bins per number)", 3),
    ("association_difference", "Association difference (mean over column pairs)", 3),
    ("fit_s", "Fit seconds (mean over seeds; peers: fit inside the worker)", 1),
    ("peak_rss_mb", "Peak memory, MiB (the fitting process's resident peak, fit and sample)",
     0),
]


def metric_table(rows: list[dict], systems: list[str], tables: list[str],
                 epsilons: list[float], key: str, title: str, digits: int = 1) -> str:
    """One figure (``key`` of each run) per table, ε and system, as the mean over seeds; a
    system with no successful run shows its failure status."""
    out = [f"\n### {title}\n",
           "| table | ε | " + " | ".join(systems) + " |", "|---|---|" + "---|" * len(systems)]
    for table in tables:
        for eps in epsilons:
            part = [r for r in rows if r["table"] == table and r["epsilon"] == eps]
            if not part:
                continue
            cells = []
            for s in systems:
                runs = [r for r in part if r["system"] == s]
                val = _mean([r.get(key) for r in runs if r["status"] == "ok"])
                bad = sorted({r["status"] for r in runs if r["status"] != "ok"})
                cells.append(_fmt(val, digits) if val is not None else "/".join(bad) or "-")
            out.append(f"| {table} | {eps:g} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def detail_table(rows: list[dict]) -> str:
    out = ["\n### Every run\n",
           "| table | ε | system | seed | status | TSTR | real | marginal TVD | MIA AUC (max) "
           "| DCR share | fit s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['table']} | {r['epsilon']:g} | {r['system']} | {r['seed']} | "
                   f"{r['status']} | {_fmt(r.get('tstr'))} | {_fmt(r.get('real'))} | "
                   f"{_fmt(r.get('tvd'))} | {_fmt(r.get('mia_auc'))} | "
                   f"{_fmt(r.get('dcr_share'))} | {_fmt(r.get('fit_s'), 1)} |")
    return "\n".join(out)


def _source() -> str:
    """The privsynth tree measured: its git commit (``-dirty``: uncommitted edits), if any."""
    try:
        done = _run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
                    timeout=30)
    except OSError:
        return f"{ROOT} (no git)"
    label = os.environ.get("PEERS_SOURCE", "unknown commit")
    return done.stdout.strip() or f"{ROOT} (not a git checkout: {label})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=TABLES)
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 10.0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds per peer fit (MST/AIM) before it is recorded as timeout")
    parser.add_argument("--aim-rounds", type=int, default=None,
                        help="AIM's rounds T (default: AIM's own 16 × columns)")
    parser.add_argument("--sdv-epochs", type=int, default=None,
                        help="epochs for SDV's CTGAN/TVAE (default: SDV's own, 300)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--resume", type=Path,
                        help="a previous --json file: its runs are kept, not run again")
    parser.add_argument("--setup-only", action="store_true",
                        help="create the peers' virtual environment and exit")
    args = parser.parse_args(argv)

    versions = setup_peers() if (args.setup_only or PEER_SYSTEMS & set(args.systems)) else {}
    if REFERENCE_SYSTEMS & set(args.systems):
        versions.update({f"sdv-venv {k}": v for k, v in setup_sdv().items()})
    print("peer versions:", json.dumps(versions), flush=True)
    if args.setup_only:
        return 0
    import privsynth

    command = shlex.join(["python", "benchmarks/peers.py", *(argv or sys.argv[1:])])
    rows: list[dict] = []
    if args.resume:
        rows = json.loads(args.resume.read_text())["rows"]
    done = {(r["table"], r["system"], float(r["epsilon"]), r["seed"]) for r in rows}
    for seed in range(args.seeds):
        for eps in args.epsilons:
            for table in args.tables:
                for system in args.systems:
                    if (table, system, float(eps), seed) in done:
                        continue
                    row = one_run(system, table, eps, seed, args)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if args.json:
                        args.json.write_text(json.dumps(
                            {"command": command, "versions": versions, "rows": rows},
                            indent=1))
    tables = list(dict.fromkeys([r["table"] for r in rows] + args.tables))
    epsilons = sorted({float(r["epsilon"]) for r in rows} | set(args.epsilons))
    systems = list(dict.fromkeys(args.systems + [r["system"] for r in rows]))
    print(f"\ncommand: {command}")
    print(f"privsynth source: {_source()}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPU only; python "
          f"{platform.python_version()}; privsynth {getattr(privsynth, '__version__', '?')}; "
          f"peers: {json.dumps(versions)}; repo {ROOT.name}")
    print(tstr_tables(rows, systems, tables, epsilons))
    print(verdict_table(rows, tables, epsilons))
    for key, title, digits in FIGURE_TABLES:
        print(metric_table(rows, systems, tables, epsilons, key, title, digits))
    print(detail_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
