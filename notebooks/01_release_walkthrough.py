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
# Every cell as text: the policy says which texts mean "missing" (Adult writes "?").
table = pd.read_csv(ROOT / "privsynth" / "demo" / "adult.csv.gz", dtype=str,
                    keep_default_na=False, skipinitialspace=True)
if rows:
    table = table.sample(rows, random_state=0)
print(table.shape)

# %% [markdown]
# ## 3. The privacy officer registers the population once, with its total budget
#
# The budget belongs to the population, never to a policy. The ledger keeps a keyed sketch of
# the table (hashes only) so that a near-copy released under another name is charged too.

# %%
ledger = work / "ledger.sqlite"
with ps.Ledger.open(ledger) as book:
    book.register(policy.dataset.id, total_epsilon=10, total_delta=1e-5,
                  sketch=book.sketch(table), officer="walkthrough")

# %% [markdown]
# ## 4. Synthesize: reserve ε in the ledger, DP encoding, DP-SGD training, audit, gate
#
# No `seed:` in the policy, so every noise draw comes from OS entropy: a seeded run would be a
# development run, never released.

# %%
release = ps.synthesize(table, policy, ledger=ledger)
print("passed:", release.passed)
for check in release.decision.checks:
    print(f"  {check.name}: {'pass' if check.passed else 'FAIL'}")
for charge in release.charges:
    print(f"  {charge['stage']:9s} {charge['mechanism']:20s} ε={charge['epsilon']:.4f}")

# %% [markdown]
# ## 5. Write the bundle and verify it as an auditor would

# %%
bundle = release.write(work / "release", audits_dir=work / "audits")
print(release.manifest["privacy"]["claim"], "|", release.manifest["privacy"]["unit"], "|",
      release.manifest["privacy"]["neighbouring_relation"])
print(json.dumps(release.manifest["privacy"]["stages"], indent=2))
problems = verify_bundle(bundle)
print("verify:", problems or "ok")
assert not problems
release.synthetic.head()
