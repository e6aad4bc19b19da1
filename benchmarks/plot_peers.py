"""Plot a ``benchmarks/peers.py --json`` result: TSTR against ε, per table and system.

    python benchmarks/plot_peers.py benchmarks/results/peers_2026-12-04.json -o docs/peers_tstr.png

One panel per table. Each system is a line through its mean TSTR at each ε, with a bar over
its seeds' range (systems are nudged sideways so the bars do not hide each other); the dashed
line is a model trained on the real training rows. The title of each panel gives the metric
and the number of seeds at each ε. Only rows whose status is ``ok`` are drawn.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLOURS = {"privsynth-vae": "tab:blue", "privsynth-gan": "tab:cyan",
           "privsynth-tuned": "tab:olive", "mst": "tab:orange", "aim": "tab:green",
           "dpctgan": "tab:purple", "patectgan": "tab:brown", "independent": "tab:grey",
           "sdv-ctgan": "tab:red", "sdv-tvae": "tab:pink"}
#: NON-PRIVATE references: ε does not apply, drawn as a horizontal line at their mean
REFERENCES = ("sdv-ctgan", "sdv-tvae")


def collect(rows: list[dict]) -> tuple[dict, dict, dict]:
    """(table, system) -> ε -> TSTR values; table -> real TSTR values; table -> metric."""
    tstr: dict = defaultdict(lambda: defaultdict(list))
    real: dict = defaultdict(list)
    metric: dict = {}
    for row in rows:
        if row.get("status") != "ok" or row.get("tstr") is None:
            continue
        tstr[row["table"], row["system"]][float(row["epsilon"])].append(float(row["tstr"]))
        if row.get("real") is not None:
            real[row["table"]].append(float(row["real"]))
        metric[row["table"]] = row.get("metric", "tstr")
    return tstr, real, metric


def plot(result: dict, out: Path) -> None:
    tstr, real, metric = collect(result["rows"])
    tables = sorted(metric)
    systems = sorted({s for _, s in tstr}, key=lambda s: (s != "privsynth-vae", s))
    cols = min(4, len(tables))
    rows_n = int(np.ceil(len(tables) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.6 * cols, 3.3 * rows_n), squeeze=False)
    for ax, table in zip(axes.flat, tables, strict=False):  # spare panels stay empty
        seeds: dict = defaultdict(int)
        for k, system in enumerate(systems):
            points = tstr.get((table, system))
            if not points:
                continue
            if system in REFERENCES:
                values = [v for vals in points.values() for v in vals]
                ax.axhline(np.mean(values), color=COLOURS.get(system), linestyle="-.",
                           linewidth=1, label=f"{system} (not DP)")
                continue
            eps = sorted(points)
            x = np.array(eps) * (1 + 0.06 * (k - (len(systems) - 1) / 2))
            mean = [np.mean(points[e]) for e in eps]
            low = [mean[i] - min(points[e]) for i, e in enumerate(eps)]
            high = [max(points[e]) - mean[i] for i, e in enumerate(eps)]
            for e in eps:
                seeds[e] = max(seeds[e], len(points[e]))
            ax.errorbar(x, mean, yerr=[low, high], marker="o", capsize=3, label=system,
                        color=COLOURS.get(system))
        if real[table]:
            ax.axhline(np.mean(real[table]), color="black", linestyle="--", linewidth=1,
                       label="real data")
        ax.set_xscale("log")
        ax.set_xlabel("ε")
        per_eps = " ".join(f"{e:g}:{n}" for e, n in sorted(seeds.items()))
        ax.set_title(f"{table}\n{metric[table]}; seeds per ε {per_eps}", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tables):]:
        ax.axis("off")
    legend: dict = {}
    for ax in axes.flat:  # every system that appears in some panel, once
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="lower right", fontsize=8)
    fig.suptitle("TSTR on the real holdout, mean and range over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", type=Path, help="a peers.py --json file")
    parser.add_argument("-o", "--out", type=Path, default=Path("peers_tstr.png"))
    args = parser.parse_args(argv)
    plot(json.loads(args.result.read_text()), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
