"""The real-data path through the CLI: ``study data prepare``, ``study data info`` and 1-epoch studies
on tiny CBIS-DDSM and MIMIC-CXR data sets written in their real layouts."""
import io
import os
import subprocess
import sys
import textwrap

import duckdb
import pandas as pd
import pytest
import real_layouts

STUDY = [sys.executable, "-m", "study.cli"]
SPEC = textwrap.dedent("""\
    name: {name}
    domain: {domain}
    data: {{root: "${{{var}}}", image_size: 32{options}}}
    student: {{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, epochs: 1, batch_size: 8}}
    search_space:
      teacher: {{type: categorical, choices: [{teachers}]}}
    evaluation: {{methods: [rollout], metrics: [pointing_game, relevance_mass]}}
    executor: {{kind: {kind}, trials: {trials}, max_concurrent: 1, scheduler: fifo, seed: 0}}
    """)


def cli(args, cwd, cache, **env):
    return subprocess.run(STUDY + args, cwd=cwd, env=dict(os.environ, MMPKD_CACHE=str(cache), **env),
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    return real_layouts.cbis_ddsm(base / "ddsm"), real_layouts.mimic_cxr(base / "cxr")


@pytest.mark.trains
@pytest.mark.slow
def test_cbis_ddsm_prepare_info_and_two_studies_that_share_the_cache(roots, tmp_path):
    ddsm, _ = roots
    cache = tmp_path / "cache"
    out = cli(["data", "prepare", "cbis_ddsm", "--root", str(ddsm), "--image-size", "32"], tmp_path, cache)
    assert out.returncode == 0, out.stderr
    assert "preparing cbis_ddsm: 24 images" in out.stdout and "prepared: 24 images (0 skipped) at 32x32" in out.stdout
    info = cli(["data", "info", "cbis_ddsm", "--root", str(ddsm), "--image-size", "32", "--format", "csv"], tmp_path,
               cache)
    assert info.returncode == 0, info.stderr
    table = pd.read_csv(io.StringIO(info.stdout.split("prepared cache:")[0])).set_index("split")
    assert table["images"].sum() == 24 and table.loc["test", "images"] == 8
    assert (table["roi_share"] == 1.0).all() and table["positive"].sum() == 12

    (tmp_path / "ddsm.yaml").write_text(SPEC.format(name="real-ddsm", domain="cbis_ddsm", var="TEST_DDSM_ROOT",
                                                    options="", teachers="lightgbm, matched_lightgbm", kind="local",
                                                    trials=2))
    run = cli(["run", "ddsm.yaml", "--db", "s.duckdb", "--no-report"], tmp_path, cache, TEST_DDSM_ROOT=str(ddsm))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "preparing" not in run.stdout  # `data prepare` made the cache: the study decodes nothing
    again = cli(["run", "ddsm.yaml", "--db", "s.duckdb", "--name", "real-ddsm-2", "--no-report"], tmp_path, cache,
                TEST_DDSM_ROOT=str(ddsm))
    assert again.returncode == 0 and "preparing" not in again.stdout and "baselines: 1 reused" in again.stdout
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    rows = con.execute("SELECT domain, status, count(*) FROM trials GROUP BY ALL").fetchall()
    n_test = con.execute("SELECT count(DISTINCT image_id) FROM localization WHERE study = 'real-ddsm'").fetchone()[0]
    con.close()
    assert rows == [("cbis_ddsm", "completed", 5)]  # 2 + 2 recipes and one shared baseline
    assert n_test == 8  # every official test image has a lesion outline

    # without the variable, the same spec runs the synthetic stand-in, and says so
    (tmp_path / "ddsm.yaml").write_text((tmp_path / "ddsm.yaml").read_text().replace("image_size: 32",
                                        "image_size: 32, n_train: 60, n_val: 20, n_test: 20"))
    synth = cli(["run", "ddsm.yaml", "--db", "t.duckdb", "--no-report"], tmp_path, cache)
    assert synth.returncode == 0, synth.stderr[-2000:]
    assert "running synthetic_ddsm, the synthetic stand-in for cbis_ddsm" in synth.stdout


@pytest.mark.trains
@pytest.mark.slow
def test_mimic_cxr_study_on_ray_with_the_minilm_teacher_and_a_report(roots, tmp_path):
    _, cxr = roots
    cache = tmp_path / "cache"
    (tmp_path / "cxr.yaml").write_text(SPEC.format(
        name="real-cxr", domain="mimic_cxr", var="TEST_CXR_ROOT", options=", options: {uncertain: positive}",
        teachers="minilm", kind="ray", trials=1))
    run = cli(["run", "cxr.yaml", "--db", "s.duckdb"], tmp_path, cache, TEST_CXR_ROOT=str(cxr))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "preparing mimic_cxr: 32 images" in run.stdout  # no `data prepare`: the study prepares once
    assert "teacher minilm (seed 0): test AUROC 1.000" in run.stdout  # the reports state the finding
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    scored = con.execute("SELECT DISTINCT image_id FROM localization WHERE study = 'real-cxr'").fetchall()
    con.close()
    boxes = pd.read_csv(cxr / "MS_CXR_Local_Alignment_v1.1.0.csv")
    split = pd.read_csv(cxr / "mimic-cxr-2.0.0-split.csv")
    assert {i for (i,) in scored} <= set(boxes["dicom_id"]) and len(scored) >= 1  # only images with a box
    assert len(split) == 32
    html = (tmp_path / "reports" / "real-cxr.html").read_text()
    assert "mimic_cxr" in html


@pytest.mark.parametrize("args, message", [
    (["data", "prepare", "cbis_ddsm", "--root", "/nonexistent/x"],
     "error: --root /nonexistent/x: does not exist or is not a folder"),
    (["data", "prepare", "synthetic_ddsm", "--root", "."],
     "error: 'synthetic_ddsm' is not a real domain; use one of: cbis_ddsm, mimic_cxr"),
    (["data", "prepare", "cbis_ddsm", "--root", ".", "--option", "colour=red"],
     "error: --option colour: Extra inputs are not permitted; cbis_ddsm takes: abnormality, "),
    (["data", "prepare", "cbis_ddsm", "--root", ".", "--option", "abnormality"],
     "error: --option 'abnormality': write KEY=VALUE"),
])
def test_data_command_bad_input_is_one_line(tmp_path, args, message):
    out = cli(args, tmp_path, tmp_path / "cache")
    assert out.returncode == 1 and out.stderr.startswith(message) and out.stderr.count("\n") == 1, out.stderr


def test_info_before_prepare_names_the_command(roots, tmp_path):
    ddsm, _ = roots
    out = cli(["data", "info", "cbis_ddsm", "--root", str(ddsm), "--image-size", "32"], tmp_path, tmp_path / "cache")
    assert out.returncode == 1
    assert out.stderr == (f"error: cbis_ddsm at {ddsm} is not prepared at 32x32; run: study data prepare cbis_ddsm "
                          f"--root {ddsm} --image-size 32\n")
