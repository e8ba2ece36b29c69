"""Plotly reports built from the study database, opened read-only; never imports torch."""
from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path

import plotly.io as pio

from reports import data, render
from reports.importance import importance_notes, importance_rows
from study.errors import StudyError

CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1400px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
h2{margin-top:32px}"""


def _heatmaps(con, names: list[str], metric: str, pairs: list[tuple[str, str]]) -> list:
    """Ablation heatmaps per domain, one per pair of factors, when the studies have gains."""
    from study.ablation import ablation
    from study.stats import PairingError

    out = []
    for rows_by, cols_by in pairs:
        try:
            table = ablation(con, names, ["domain", rows_by, cols_by], metric, n_boot=300)
        except (PairingError, StudyError):
            continue
        for domain in sorted(table["domain"].unique()):
            rows = table[table["domain"] == domain].to_dict("records")
            out.append((f"Ablation: {domain}, {rows_by} x {cols_by}",
                        render.heatmap_figure(rows, rows_by, cols_by, metric)))
            controlled = [r for r in rows if "over_control" in r and r["over_control"] == r["over_control"]]
            if controlled:
                out.append((f"Privileged teacher over its control: {domain}",
                            render.control_figure(controlled, rows_by, cols_by, metric)))
    return out


def _ablation_paths(con, overview: list[dict], metric: str) -> list:
    """The ablation-path figure of each ablation study."""
    from study.ablation import ablation_path

    out = []
    for r in overview:
        if r["spec"].get("design") == "ablation" and r["completed"]:
            rows = ablation_path(con, r["name"], metric, n_boot=300).to_dict("records")
            out.append((f"Ablation path: {r['name']}", render.ablation_path_figure(rows, metric, r["name"])))
    return out


def chromium_path() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def build_report(db_path: str, names: list[str], out_path: str, png_dir: str | None = None,
                 heatmaps: list[tuple[str, str]] | None = None) -> str:
    """Write one self-contained HTML file (plotly.js embedded) for the named studies; with
    ``png_dir``, also one PNG per figure through kaleido (which drives a local Chromium).
    ``heatmaps``: pairs of factors for ablation heatmaps beyond teacher x attention method."""
    if png_dir is not None and chromium_path() is None:
        raise StudyError("--png needs Chromium for kaleido to draw with, and none was found; install it "
                         "(Debian: apt-get install -y chromium) or drop --png")
    from study.gains import FACTORS
    from study.store import connect, live_note

    for pair in heatmaps or []:
        bad = [f for f in pair if f not in FACTORS]
        if len(pair) != 2 or bad:
            raise StudyError(f"a heatmap needs two factors among: {', '.join(FACTORS)} (got {', '.join(pair)})")
    con = connect(db_path, read_only=True)
    live = live_note(db_path)
    try:
        known = {r[0] for r in con.execute("SELECT name FROM studies").fetchall()}
        missing = [n for n in names if n not in known]
        if missing:
            raise StudyError(f"no study '{missing[0]}' in {db_path}; stored: {', '.join(sorted(known)) or 'none'}")
        overview = data.overview(con, names)
        metric = overview[0]["spec"]["objective"]["metric"]
        trials = data.trials(con, names)
        pareto = data.pareto(con, names, metric)
        front = set(data.pareto_front([(r["test_auroc"], r["localization"]) for r in pareto if not r["is_baseline"]]))
        figures = [
            ("Objective per trial", render.objective_figure(trials, metric)),
            ("Gain over the matched baseline", render.gains_figure(data.gains(con, names, metric), metric)),
            *_heatmaps(con, names, metric, [("teacher", "attention_method"), *(heatmaps or [])]),
            *_ablation_paths(con, overview, metric),
            ("Importance per domain", render.importance_figure(importance_rows(con, names, metric), metric,
                                                               importance_notes(con, names))),
            ("Localization against each searched dimension",
             render.dimension_figure(data.metric_by_dimension(con, names, metric))),
            ("Classification against localization", render.pareto_figure(pareto, metric, front)),
            ("Training curves", render.curves_figure(data.curves(con, names))),
            ("All dimensions", render.parallel_figure(trials, metric)),
        ]
        shots = data.gallery(con, names, metric)
        figures += [(f"Attention gallery: {d}", render.gallery_figure(shots, metric, d))
                    for d in sorted({r["domain"] for r in shots if r["image"] is not None})]
    finally:
        con.close()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{' + '.join(names)}</title>"
             f"<style>{CSS}</style></head><body><h1>Study report: {' + '.join(names)}</h1>",
             *([f"<p class='note'>Live: {html.escape(live)}</p>"] if live else []),
             "<h2>Overview</h2>", render.overview_html(overview)]
    for i, (title, fig) in enumerate(figures):
        parts.append(f"<h2>{title}</h2>")
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=f"fig{i}"))
    parts.append("</body></html>")
    if png_dir is not None:
        _write_pngs(figures, Path(png_dir))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".html.tmp")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(parts))
    os.replace(tmp, out)
    return str(out)


__all__ = ["build_report"]


def _write_pngs(figures, folder: Path) -> list[str]:
    import re

    os.environ.setdefault("BROWSER_PATH", chromium_path() or "")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (title, fig) in enumerate(figures):
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        path = folder / f"{i:02d}-{slug}.png"
        fig.write_image(str(path), width=fig.layout.width or 1400, height=fig.layout.height or 500)
        written.append(str(path))
    return written
