"""Plotly reports built from the study database, opened read-only; never imports torch."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import plotly.io as pio

from reports import data, render

CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1400px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
h2{margin-top:32px}"""


def build_report(db_path: str, names: list[str], out_path: str) -> str:
    """Write one self-contained HTML file (plotly.js embedded) for the named studies."""
    from study.errors import StudyError
    from study.store import connect

    con = connect(db_path, read_only=True)
    try:
        known = {r[0] for r in con.execute("SELECT name FROM studies").fetchall()}
        missing = [n for n in names if n not in known]
        if missing:
            raise StudyError(f"no study '{missing[0]}' in {db_path}; stored: {', '.join(sorted(known)) or 'none'}")
        overview = data.overview(con, names)
        metric = overview[0]["spec"]["objective"]["metric"]
        figures = [
            ("Objective per trial", render.objective_figure(data.trials(con, names), metric)),
            ("Localization against each searched dimension", render.dimension_figure(data.metric_by_dimension(con, names))),
            ("Training curves", render.curves_figure(data.curves(con, names))),
        ]
    finally:
        con.close()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{' + '.join(names)}</title>"
             f"<style>{CSS}</style></head><body><h1>Study report: {' + '.join(names)}</h1>",
             "<h2>Overview</h2>", render.overview_html(overview)]
    for i, (title, fig) in enumerate(figures):
        parts.append(f"<h2>{title}</h2>")
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=f"fig{i}"))
    parts.append("</body></html>")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".html.tmp")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(parts))
    os.replace(tmp, out)
    return str(out)


__all__ = ["build_report"]
