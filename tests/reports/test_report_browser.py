"""The generated report opened in headless Chromium with the network off: every figure renders and
no JavaScript error is logged."""
import re
import shutil
import subprocess

import pytest

from reports import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
JS_ERROR = re.compile(r"Uncaught|TypeError|ReferenceError|SyntaxError|RangeError|Error:")


def open_in_chromium(path, tmp_path) -> tuple[str, list[str]]:
    """(DOM after the scripts ran, console lines that report an error)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-unsafe-swiftshader",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",  # no network
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom", f"file://{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    return out.stdout, [line for line in console if JS_ERROR.search(line)]


def test_the_error_check_can_fail(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    _, errors = open_in_chromium(page, tmp_path)
    assert len(errors) == 1 and "undefinedFunction" in errors[0]


def test_every_figure_renders_offline(demo_db, tmp_path):
    out = tmp_path / "report.html"
    build_report(str(demo_db), ["demo"], str(out))
    html = out.read_text()
    assert "<script src=" not in html  # plotly.js is embedded, nothing is fetched
    dom, errors = open_in_chromium(out, tmp_path)
    assert errors == []
    ids = re.findall(r'<div id="(fig\d+)" class="plotly-graph-div', dom)
    assert len(ids) == html.count('class="plotly-graph-div') >= 7
    for i, fig in enumerate(ids):
        start = dom.index(f'id="{fig}"')
        end = dom.index(f'id="{ids[i + 1]}"') if i + 1 < len(ids) else len(dom)
        block = dom[start:end]
        assert 'class="main-svg"' in block, f"{fig} did not render"
        if "importance is not estimated" in block:  # an optimise study: the panel says why instead of drawing bars
            assert 'class="annotation"' in block and 'class="trace' not in block, fig
            continue
        assert re.search(r'class="(point|scatterlayer|heatmaplayer|trace|parcoords)', block), (
            f"{fig} has no plot elements")


def test_png_export_writes_one_image_per_figure(demo_db, tmp_path):
    out = tmp_path / "r.html"
    build_report(str(demo_db), ["demo"], str(out), png_dir=str(tmp_path / "png"))
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == out.read_text().count('class="plotly-graph-div')
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)
