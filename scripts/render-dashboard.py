#!/usr/bin/env python3
"""Plots the dashboard's panels from a Prometheus dump: docs/dashboard.png in the README.

There is no Grafana here, so this is matplotlib drawing the same queries the Grafana dashboard runs
(src/monitoring.rs), as Prometheus answered them during tests/e2e/monitoring.rs's scenario:

    ROUTERO_DASHBOARD_DATA=/tmp/dash.json cargo nextest run prometheus_evaluates
    python3 -m venv /var/tmp/routero-plot-venv && /var/tmp/routero-plot-venv/bin/pip install matplotlib
    /var/tmp/routero-plot-venv/bin/python scripts/render-dashboard.py /tmp/dash.json docs/dashboard.png
"""
import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

UNITS = {"currencyUSD": "USD", "percent": "%", "s": "seconds", "short": "", "reqps": "per second"}


def legend(template, metric):
    return re.sub(r"\{\{(\w+)\}\}", lambda m: metric.get(m.group(1), ""), template)


def short(name):
    # Test namespaces and team ids carry a random suffix: drop it so the legend reads like a real workspace.
    return re.sub(r"-[0-9a-f]{8}", "", name)


def main(data_path, out_path):
    panels = json.load(open(data_path))["panels"]
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.2 * rows))
    fig.suptitle(
        "Routero: spend, budgets and keys — the dashboard's queries, plotted from Prometheus during the test scenario",
        fontsize=12,
    )
    for ax, panel in zip(axes.flat, panels):
        ax.set_title(panel["title"], fontsize=10)
        ax.set_ylabel(UNITS.get(panel["unit"], ""), fontsize=8)
        ax.tick_params(labelsize=7)
        bars = []
        for q in panel["queries"]:
            for series in q["result"]:
                name = short(legend(q["legend"], series["metric"]))
                points = [(float(t), float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
                if not points:
                    continue
                if panel["kind"] == "timeseries":
                    t0 = points[0][0]
                    ax.plot([t - t0 for t, _ in points], [v for _, v in points], label=name)
                    ax.set_xlabel("seconds into the scenario", fontsize=7)
                else:
                    bars.append((name, points[-1][1]))
        if bars:
            names = [n for n, _ in bars]
            ax.barh(names, [v for _, v in bars], color="tab:blue")
            for i, (_, v) in enumerate(bars):
                ax.text(v, i, f" {v:,.1f}", va="center", fontsize=7)
            ax.invert_yaxis()
            if panel["unit"] == "percent":
                ax.axvline(80, color="orange", linestyle="--", linewidth=1)
                ax.axvline(100, color="red", linestyle="--", linewidth=1)
        elif ax.lines:
            ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out_path, dpi=80)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
