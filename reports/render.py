"""Render steps: plain rows in, Plotly figures out."""
from __future__ import annotations

import html
import json
from collections import defaultdict

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.data import trend
from study.inference import ONE_SEED_NOTE, UNIT_ONE_MODEL

LOG_DIMS = ("lr", "temperature", "weight_decay")
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"]


def overview_html(rows: list[dict]) -> str:
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in
                            ["study", "domain", "design", "status", "trials", "seeds", "completed", "pruned", "failed",
                             "baselines run", "wall time", "slot use",
                             "best recipe (by validation objective)"]) + "</tr>"
    body = []
    for r in rows:
        wall = f"{r['wall_seconds']:.0f} s" if r["wall_seconds"] is not None else "-"
        b = r.get("best")
        best = "-" if not b else (", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in b["params"].items())
                                  + f": val {b['val_objective']:.3f}, test {b['test_objective']:.3f}, "
                                    f"AUROC {b['test_auroc']:.3f} ({b['seeds']} seed(s))")
        cells = [r["name"], r["domain"], r["spec"].get("design", "optimize"), r["status"], r["trials"], r["seeds"],
                 r["completed"], r["pruned"], r["failed"], r["baselines"], wall,
                 "-" if r.get("slot_utilisation") is None else f"{r['slot_utilisation']:.2f}", best]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    specs = "".join(f"<details><summary>spec of {html.escape(r['name'])}</summary><pre>"
                    f"{html.escape(json.dumps(r['spec'], indent=2))}</pre></details>" for r in rows)
    pruned = [f"{r['name']} ({r['pruned']})" for r in rows if r["pruned"]]
    left_out = (f"<p class='note'>Pruned recipes, stopped early by ASHA before any test scoring, are left out of "
                f"every gain, figure and table: {html.escape(', '.join(pruned))}.</p>") if pruned else ""
    one = [r["name"] for r in rows if r["seeds"] <= 1]
    note = (f"<p class='note'><b>{html.escape(', '.join(one))}</b>: {ONE_SEED_NOTE}. Add seeds ('seeds: [0, 1, 2]' in "
            "the spec; 'study seeds' says how many) before reading a gain as a recipe effect.</p>") if one else ""
    subsets = "".join(f"<p class='note'><b>{html.escape(r['name'])}</b>: {html.escape(r['data_subset'])}</p>"
                      for r in rows if r.get("data_subset"))
    return f"<table>{head}{''.join(body)}</table>{subsets}{note}{left_out}{specs}"


def objective_figure(rows: list[dict], metric: str) -> go.Figure:
    fig = go.Figure()
    by_study = defaultdict(list)
    for r in rows:
        by_study[r["study"]].append(r)
    for i, (study, rs) in enumerate(by_study.items()):
        done = [r for r in rs if r["status"] == "completed"]
        color = PALETTE[i % len(PALETTE)]
        hover = [json.dumps(r["params"]) for r in done]
        fig.add_scatter(x=[r["trial_id"] for r in done], y=[r["test_objective"] for r in done], mode="markers",
                        name=f"{study}: test", marker=dict(color=color, size=9), hovertext=hover)
        fig.add_scatter(x=[r["trial_id"] for r in rs], y=[r["val_objective"] for r in rs], mode="markers",
                        name=f"{study}: validation", marker=dict(color=color, symbol="circle-open", size=9),
                        hovertext=[f"{r['status']} {json.dumps(r['params'])}" for r in rs])
    fig.update_layout(title=f"Objective ({metric}) per trial", xaxis_title="trial", yaxis_title=metric,
                      xaxis_type="category", height=420, template="plotly_white")
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
                        marker=dict(color=PALETTE[k % len(PALETTE)], symbol=symbols[d % len(symbols)], size=8,
                                    opacity=0.8),
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


def gains_figure(rows: list[dict], metric: str) -> go.Figure:
    """Gain over the matched baseline against each searched dimension, one row of panels per
    domain, a point per recipe with its seed-level interval, for every evaluated method. A recipe
    of one seed is a hollow marker: its interval shows test-set sampling only."""
    rows = [r for r in rows if r["metric"] == metric]
    domains = sorted({r["domain"] for r in rows})
    dims = sorted({k for r in rows for k in r["params"]})
    methods = sorted({r["method"] for r in rows})
    fig = make_subplots(rows=max(1, len(domains)), cols=max(1, len(dims)), shared_yaxes=True,
                        column_titles=dims, row_titles=domains, horizontal_spacing=0.03, vertical_spacing=0.1)
    for i, domain in enumerate(domains):
        for j, dim in enumerate(dims):
            for k, method in enumerate(methods):
                pts = [r for r in rows if r["domain"] == domain and r["method"] == method and dim in r["params"]]
                if not pts:
                    continue
                fig.add_scatter(
                    x=[r["params"][dim] for r in pts], y=[r["gain"] for r in pts], mode="markers",
                    error_y=dict(type="data", symmetric=False, array=[r["ci_high"] - r["gain"] for r in pts],
                                 arrayminus=[r["gain"] - r["ci_low"] for r in pts], thickness=1),
                    marker=dict(color=PALETTE[k % len(PALETTE)], size=9,
                                symbol=["circle-open" if r["unit"] == UNIT_ONE_MODEL else "circle" for r in pts]),
                    name=method, legendgroup=method, showlegend=(i == 0 and j == 0), row=i + 1, col=j + 1,
                    hovertext=[_gain_hover(r) for r in pts])
                numeric = all(isinstance(r["params"][dim], (int, float)) and not isinstance(r["params"][dim], bool)
                              for r in pts)
                t = (trend([r["params"][dim] for r in pts], [r["gain"] for r in pts], log=dim in LOG_DIMS)
                     if numeric else None)
                if t:
                    color = PALETTE[k % len(PALETTE)]
                    fig.add_scatter(x=t["x"] + t["x"][::-1], y=t["high"] + t["low"][::-1], fill="toself", mode="lines",
                                    line=dict(width=0), fillcolor=color, opacity=0.15, hoverinfo="skip",
                                    showlegend=False, legendgroup=method, row=i + 1, col=j + 1)
                    fig.add_scatter(x=t["x"], y=t["y"], mode="lines", line=dict(color=color, width=2),
                                    showlegend=False, legendgroup=method, hoverinfo="skip", row=i + 1, col=j + 1)
            fig.add_hline(y=0, line=dict(color="#888", dash="dash"), row=i + 1, col=j + 1)
            fig.update_xaxes(type="log" if dim in LOG_DIMS else "-", row=i + 1, col=j + 1)
    one = any(r["unit"] == UNIT_ONE_MODEL for r in rows)
    fig.update_layout(title=f"Gain in {metric} over the matched no-distillation baseline, per recipe (95% t-intervals "
                            "over seeds"
                            + ("; hollow: 1 seed, the interval shows test-set sampling only" if one else "")
                            + "; lines: kernel-smoothed trend with a 95% bootstrap band over recipes)",
                      height=320 * max(1, len(domains)) + 120, template="plotly_white")
    return fig


def _gain_hover(r: dict) -> str:
    p = "no seed-level p (1 seed)" if r["unit"] == UNIT_ONE_MODEL else f"Holm p {r['p_holm']:.3g}"
    return (f"recipe {r['number']} ({r['n']} x {r['unit']}): {r['score']:.3f} vs baseline {r['baseline']:.3f}, "
            f"gain {r['gain']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], {p}")


def heatmap_figure(table: list[dict], row_factor: str, col_factor: str, metric: str) -> go.Figure:
    """Ablation heatmap: mean gain per (row level, column level), interval in each cell."""
    rows = sorted({str(r[row_factor]) for r in table})
    cols = sorted({str(r[col_factor]) for r in table})
    z = [[None] * len(cols) for _ in rows]
    text = [[""] * len(cols) for _ in rows]
    for r in table:
        i, j = rows.index(str(r[row_factor])), cols.index(str(r[col_factor]))
        z[i][j] = r["gain"]
        units = "1 model (1 seed)" if r["unit"] == UNIT_ONE_MODEL else f"n={r['n']} {r['unit'].split(' (')[0]}s"
        text[i][j] = f"{r['gain']:+.3f}<br>[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]<br>{units}"
        if "over_control" in r and r["over_control"] == r["over_control"]:  # not NaN: the row has a control
            text[i][j] += f"<br>vs control {r['over_control']:+.3f}"
    bound = max([abs(v) for row in z for v in row if v is not None] + [1e-6])
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=rows, text=text, texttemplate="%{text}", colorscale="RdBu",
                               zmid=0, zmin=-bound, zmax=bound, colorbar=dict(title="gain")))
    chance = (", ".join(f"{k.removeprefix('chance_')} {table[0][k]:.3f}" for k in table[0] if k.startswith("chance_"))
              if table else "")
    one = any(r["unit"] == UNIT_ONE_MODEL for r in table)
    fig.update_layout(title=f"Mean gain in {metric} by {row_factor} x {col_factor}, 95% seed-level intervals "
                            f"(chance levels: {chance})" + (f"<br>cells of 1 model: {ONE_SEED_NOTE}" if one else ""),
                      xaxis_title=col_factor, yaxis_title=row_factor, height=160 + 90 * len(rows),
                      template="plotly_white")
    return fig


def control_figure(table: list[dict], row_factor: str, col_factor: str, metric: str) -> go.Figure:
    """Each privileged teacher's gain over the no-distillation baseline beside its gain over its
    control teacher (soft targets without the privileged modality), with 95% intervals."""
    x = [f"{r[row_factor]} / {r[col_factor]}" for r in table]
    fig = go.Figure()
    for name, key, lo, hi in (("over the baseline", "gain", "ci_low", "ci_high"),
                              ("over its control", "over_control", "over_control_low", "over_control_high")):
        fig.add_trace(go.Bar(
            name=name, x=x, y=[r[key] for r in table],
            error_y=dict(type="data", symmetric=False, array=[r[hi] - r[key] for r in table],
                         arrayminus=[r[key] - r[lo] for r in table]),
            customdata=[r["control"] for r in table],
            hovertemplate="%{x}<br>" + name + " (%{customdata}): %{y:+.3f}<extra></extra>"))
    fig.update_layout(barmode="group", template="plotly_white", height=420, yaxis_title=f"gain in {metric}",
                      title=f"Gain in {metric}: over the baseline, and over the control "
                            f"({', '.join(sorted({r['control'] for r in table}))})")
    return fig


def pareto_figure(rows: list[dict], metric: str, front: set) -> go.Figure:
    fig = go.Figure()
    trials = [(i, r) for i, r in enumerate(rows) if not r["is_baseline"]]
    bases = [r for r in rows if r["is_baseline"]]
    fig.add_scatter(x=[r["test_auroc"] for _, r in trials], y=[r["localization"] for _, r in trials], mode="markers",
                    name="trials",
                    marker=dict(size=9, color=["#d62728" if i in front else "#1f77b4" for i, _ in trials]),
                    hovertext=[f"{r['study']} {r['trial_id']} ({r['method']})" for _, r in trials])
    fig.add_scatter(x=[r["test_auroc"] for r in bases], y=[r["localization"] for r in bases], mode="markers",
                    name="baselines (every method)", marker=dict(size=11, symbol="star", color="#2ca02c"),
                    hovertext=[f"baseline {r['domain']} ({r['method']})" for r in bases])
    fig.update_layout(title=f"Classification against localization ({metric}); red: Pareto front of the trials",
                      xaxis_title="test AUROC", yaxis_title=f"test {metric}", height=420, template="plotly_white")
    return fig


def parallel_figure(rows: list[dict], metric: str) -> go.Figure:
    done = [r for r in rows if r["status"] == "completed" and r["test_objective"] is not None]
    dims = sorted({k for r in done for k in r["params"]})
    columns = []
    for d in dims:
        values = [r["params"].get(d) for r in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None):
            columns.append(dict(label=d, values=[v if v is not None else float("nan") for v in values]))
        else:
            levels = sorted({str(v) for v in values})
            columns.append(dict(label=d, values=[levels.index(str(v)) for v in values],
                                tickvals=list(range(len(levels))), ticktext=levels))
    columns.append(dict(label=f"test {metric}", values=[r["test_objective"] for r in done]))
    fig = go.Figure(go.Parcoords(line=dict(color=[r["test_objective"] for r in done], colorscale="Viridis",
                                           showscale=True), dimensions=columns))
    fig.update_layout(title="All searched dimensions of the completed trials, coloured by the objective",
                      height=420, template="plotly_white")
    return fig


def importance_figure(rows: list[dict], metric: str, notes: list[str] | None = None) -> go.Figure:
    domains = sorted({r["domain"] for r in rows})
    fig = make_subplots(rows=1, cols=max(1, len(domains)), subplot_titles=domains or ["no data"], shared_yaxes=True)
    methods = sorted({r["method"] for r in rows})
    for j, domain in enumerate(domains):
        for k, method in enumerate(methods):
            pts = [r for r in rows if r["domain"] == domain and r["method"] == method]
            if not pts:
                continue
            fig.add_bar(x=[r["dimension"] for r in pts], y=[r["importance"] for r in pts], name=method,
                        legendgroup=method, showlegend=(j == 0), marker_color=PALETTE[k % len(PALETTE)],
                        error_y=dict(type="data", symmetric=False,
                                     array=[(r["high"] or r["importance"]) - r["importance"] for r in pts],
                                     arrayminus=[r["importance"] - (r["low"] or r["importance"]) for r in pts]),
                        row=1, col=j + 1)
    n = max((r["trials"] for r in rows), default=0)
    title = (f"Importance of each dimension for the gain in {metric}, from sensitivity studies (95% bootstrap over "
             f"recipes; up to {n} recipes per domain)" if rows
             else f"Importance of each dimension for the gain in {metric}: not estimated")
    fig.update_layout(title=title, barmode="group", height=420 + 18 * len(notes or []), template="plotly_white")
    if notes:
        fig.add_annotation(text="<br>".join(html.escape(n) for n in notes), xref="paper", yref="paper", x=0, y=1,
                           xanchor="left", yanchor="top", showarrow=False, align="left", font=dict(size=12))
    return fig


def ablation_path_figure(rows: list[dict], metric: str, study: str) -> go.Figure:
    """The reference recipe, then each cell of an ablation study: its gain over the reference recipe
    and over the no-distillation baseline, per attention method, with seed-level intervals."""
    methods = sorted({r["method"] for r in rows})
    fig = make_subplots(rows=1, cols=2, shared_yaxes=False, subplot_titles=["over the reference recipe",
                                                                             "over the no-distillation baseline"])
    for k, method in enumerate(methods):
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["number"])
        x = [f"#{r['number']} {r['cell']}" for r in pts]
        color = PALETTE[k % len(PALETTE)]
        for col, (key, lo, hi) in enumerate((("over_reference", "over_reference_low", "over_reference_high"),
                                             ("gain", "ci_low", "ci_high"))):
            y = [r[key] for r in pts]
            fig.add_scatter(x=x, y=y, mode="markers+lines", line=dict(color=color, width=1), name=method,
                            legendgroup=method, showlegend=col == 0, row=1, col=col + 1,
                            marker=dict(color=color, size=9, symbol=["circle" if r["seeds"] > 1 else "circle-open"
                                                                     for r in pts]),
                            error_y=dict(type="data", symmetric=False,
                                         array=[(r[hi] - r[key]) if r[hi] == r[hi] else 0 for r in pts],
                                         arrayminus=[(r[key] - r[lo]) if r[lo] == r[lo] else 0 for r in pts]))
        fig.add_hline(y=0, line=dict(color="#888", dash="dash"), row=1, col=1)
        fig.add_hline(y=0, line=dict(color="#888", dash="dash"), row=1, col=2)
    one = any(r["seeds"] <= 1 for r in rows)
    fig.update_layout(title=f"Ablation path of {study}: gain in {metric} per cell (95% t-intervals over seeds"
                            + ("; hollow: 1 seed, test-set sampling only" if one else "") + ")",
                      height=460, template="plotly_white")
    return fig


def gallery_figure(rows: list[dict], metric: str, domain: str) -> go.Figure:
    """Image with its ROI outline | baseline map | distilled map, for the most improved and most
    worsened test images of the domain's best trial."""
    rows = [r for r in rows if r["domain"] == domain]
    titles = []
    for r in rows:
        titles += [f"{r['image_id']} (gain {r['gain']:+.2f})", f"baseline: {r['baseline_value']:.2f}",
                   f"{r['trial_id']} {r['method']}: {r['value']:.2f}"]
    fig = make_subplots(rows=max(1, len(rows)), cols=3, subplot_titles=titles or ["no completed trial"],
                        horizontal_spacing=0.02, vertical_spacing=0.04)
    for i, r in enumerate(rows):
        if r["image"] is None:
            continue
        H, W = r["image"].shape
        for c, m in enumerate([None, r["baseline_map"], r["trial_map"]]):
            fig.add_heatmap(z=r["image"], colorscale="gray", showscale=False, hoverinfo="skip", row=i + 1, col=c + 1)
            if m is not None:
                h, w = m.shape
                fig.add_heatmap(z=m, x0=(W / w - 1) / 2, dx=W / w, y0=(H / h - 1) / 2, dy=H / h, colorscale="Inferno",
                                opacity=0.55, showscale=False, row=i + 1, col=c + 1)
            fig.add_contour(z=r["mask"].astype(float), contours=dict(start=0.5, end=0.5, coloring="lines"),
                            colorscale=[[0, "#00e5ff"], [1, "#00e5ff"]], line=dict(width=2), showscale=False,
                            hoverinfo="skip",
                            row=i + 1, col=c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(title=f"{domain}: most improved and most worsened test images in {metric} "
                            "(cyan: ROI; overlay: attention map)", height=260 * max(1, len(rows)) + 80,
                      width=900, template="plotly_white", showlegend=False)
    return fig
