"""How long the ledger's check takes: ``verify`` and a ``reserve`` (which verifies first) on a
SQLite ledger of N entries, and the keyed MAC chain against schema 2's unkeyed SHA-256 chain.

    python benchmarks/ledger_verify.py [--entries 10000] [--repeat 5]

Uses a temporary ledger and a temporary key store (``$PRIVSYNTH_KEY_DIR``); prints the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Build an N-entry ledger, then time verify, reserve and the two chain links."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="privsynth-ledger-bench-") as tmp:
        os.environ["PRIVSYNTH_KEY_DIR"] = str(Path(tmp) / "keys")
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from ledger_helpers import people

        from privsynth.privacy.events import Charge
        from privsynth.privacy.ledger import Ledger, entry_hash

        where = str(Path(tmp) / "ledger.sqlite")
        with Ledger.open(where) as ledger:
            ledger.register("bench", total_epsilon=1e6, total_delta=0.5,
                            sketch=ledger.sketch(people(0)), officer="bench")
            res = ledger.reserve(population="bench", release_id="r", epsilon=1.0, delta=1e-6)
            ledger.record_charges(res, [Charge("training", "laplace", 1e-4, 0.0)]
                                  * max(0, args.entries - 2))
        times: dict[str, list[float]] = {"verify": [], "reserve": [], "MAC chain": [],
                                         "schema-2 SHA-256 chain": []}
        for i in range(args.repeat):
            with Ledger.open(where, create=False) as ledger:
                with ledger._db.read() as tx:
                    rows = tx.entries(None)
                calls = {
                    "verify": ledger.verify,
                    "MAC chain": lambda rows=rows, seal=ledger._seal: [seal(r) for r in rows],
                    "schema-2 SHA-256 chain": lambda rows=rows: [entry_hash(r) for r in rows],
                    "reserve": lambda book=ledger, rid=f"x{i}": book.reserve(
                        population="bench", release_id=rid, epsilon=0.01, delta=1e-9),
                }
                for name, call in calls.items():
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
                count = ledger.head()["count"]
        print(f"ledger of ~{count} entries, median of {args.repeat}:")
        for name, values in times.items():
            print(f"  {name:<24} {statistics.median(values) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
