"""Render steps: plain rows in, Plotly figures out."""
from __future__ import annotations

import html
import json
from collections import defaultdict

import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"]


def overview_html(rows: list[dict]) -> str:
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in
                            ["study", "domain", "status", "trials", "completed", "pruned", "failed", "wall time"]) + "</tr>"
    body = []
    for r in rows:
        wall = f"{r['wall_seconds']:.0f} s" if r["wall_seconds"] is not None else "-"
        cells = [r["name"], r["domain"], r["status"], r["trials"], r["completed"], r["pruned"], r["failed"], wall]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    specs = "".join(f"<details><summary>spec of {html.escape(r['name'])}</summary><pre>"
                    f"{html.escape(json.dumps(r['spec'], indent=2))}</pre></details>" for r in rows)
    return f"<table>{head}{''.join(body)}</table>{specs}"


def objective_figure(rows: list[dict], metric: str) -> go.Figure:
    fig = go.Figure()
    by_study = defaultdict(list)
    for r in rows:
        by_study[r["study"]].append(r)
    for i, (study, rs) in enumerate(by_study.items()):
        done = [r for r in rs if r["status"] == "completed"]
        color = PALETTE[i % len(PALETTE)]
        hover = [json.dumps(r["params"]) for r in done]
        fig.add_scatter(x=[r["number"] for r in done], y=[r["test_objective"] for r in done], mode="markers",
                        name=f"{study}: test", marker=dict(color=color, size=9), hovertext=hover)
        fig.add_scatter(x=[r["number"] for r in rs], y=[r["val_objective"] for r in rs], mode="markers",
                        name=f"{study}: validation", marker=dict(color=color, symbol="circle-open", size=9),
                        hovertext=[f"{r['status']} {json.dumps(r['params'])}" for r in rs])
    fig.update_layout(title=f"Objective ({metric}) per trial", xaxis_title="trial", yaxis_title=metric,
                      height=420, template="plotly_white")
    return fig


def dimension_figure(rows: list[dict]) -> go.Figure:
    dims = sorted({r["dimension"] for r in rows})
    metrics = sorted({r["metric"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    domains = sorted({r["domain"] for r in rows})
    fig = make_subplots(rows=max(1, len(metrics)), cols=max(1, len(dims)), shared_yaxes=True,
                        column_titles=dims, row_titles=metrics, horizontal_spacing=0.03, vertical_spacing=0.08)
    symbols = ["circle", "diamond", "square", "x"]
    for (i, metric) in enumerate(metrics):
        for j, dim in enumerate(dims):
            for k, method in enumerate(methods):
                for d, domain in enumerate(domains):
                    pts = [r for r in rows if r["metric"] == metric and r["dimension"] == dim
                           and r["method"] == method and r["domain"] == domain]
                    if not pts:
                        continue
                    fig.add_scatter(
                        x=[r["value"] for r in pts], y=[r["score"] for r in pts], mode="markers",
                        marker=dict(color=PALETTE[k % len(PALETTE)], symbol=symbols[d % len(symbols)], size=8, opacity=0.8),
                        name=f"{method} · {domain}", legendgroup=f"{method}{domain}",
                        showlegend=(i == 0 and j == 0), hovertext=[f"trial {r['number']}" for r in pts],
                        row=i + 1, col=j + 1)
            fig.update_xaxes(type="log" if dim in ("lr", "temperature", "weight_decay") else "-", row=i + 1, col=j + 1)
    fig.update_layout(title="Localization on test images against each searched dimension (one point per trial)",
                      height=300 * max(1, len(metrics)) + 120, template="plotly_white")
    return fig


def curves_figure(rows: list[dict]) -> go.Figure:
    fig = make_subplots(rows=1, cols=3, subplot_titles=["training loss", "validation AUROC", "validation objective"])
    by_trial = defaultdict(list)
    for r in rows:
        by_trial[(r["study"], r["number"], r["status"])].append(r)
    for n, ((study, number, status), rs) in enumerate(by_trial.items()):
        color = PALETTE[n % len(PALETTE)]
        dash = "dot" if status != "completed" else "solid"
        for c, key in enumerate(["loss", "val_auroc", "val_objective"]):
            fig.add_scatter(x=[r["epoch"] for r in rs], y=[r[key] for r in rs], mode="lines+markers",
                            line=dict(color=color, dash=dash), name=f"{study} #{number} ({status})",
                            legendgroup=f"{study}{number}", showlegend=(c == 0), row=1, col=c + 1)
    fig.update_layout(title="Training curves (dotted: pruned or failed)", height=420, template="plotly_white")
    return fig
