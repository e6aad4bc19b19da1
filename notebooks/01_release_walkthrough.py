# %% [markdown]
# # A first release with privsynth
#
# This walkthrough (percent-format: open it in Jupyter with jupytext, in VS Code, or run it as a
# script) uses only the public API. It releases the bundled UCI Adult table under the demo
# policy, looks at the gate's decision and the privacy charges, and checks the bundle.
# Set `PRIVSYNTH_WALKTHROUGH_ROWS` to run on a sample (CI does, to stay fast).

# %%
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

import privsynth as ps
from privsynth.release.verify import verify_bundle

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
ROOT = HERE.parent
rows = int(os.environ.get("PRIVSYNTH_WALKTHROUGH_ROWS", "0"))
work = Path(tempfile.mkdtemp(prefix="privsynth-walkthrough-"))

# %% [markdown]
# ## 1. The policy: public facts, ε, δ, and the audit gate's thresholds

# %%
policy = ps.load_policy(ROOT / "policies" / "adult-demo.yaml")
print(policy.name, "ε =", policy.privacy.epsilon, "δ =", policy.privacy.delta)
print("columns kept:", [n for n, c in policy.columns.items() if c.modelled])

# %% [markdown]
# ## 2. The private table (never leaves this machine)

# %%
table = pd.read_csv(ROOT / "privsynth" / "demo" / "adult.csv.gz", na_values=["?"])
if rows:
    table = table.sample(rows, random_state=0)
print(table.shape)

# %% [markdown]
# ## 3. Synthesize: reserve ε in the ledger, DP encoding, DP-SGD training, audit, gate

# %%
release = ps.synthesize(table, policy, ledger=work / "ledger.sqlite")
print("passed:", release.passed)
for check in release.decision.checks:
    print(f"  {check.name}: {'pass' if check.passed else 'FAIL'}")
for charge in release.charges:
    print(f"  {charge['stage']:9s} {charge['mechanism']:20s} ε={charge['epsilon']:.4f}")

# %% [markdown]
# ## 4. Write the bundle and verify it as an auditor would

# %%
bundle = release.write(work / "release", audits_dir=work / "audits")
print(json.dumps(release.manifest["privacy"]["stages"], indent=2))
problems = verify_bundle(bundle)
print("verify:", problems or "ok")
assert not problems
release.synthetic.head()
