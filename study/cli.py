"""``study``: a thin CLI over the library. Each command opens, calls, and turns the engine's own
errors into one line on stderr with exit code 1 (usage errors: 2), in one place: ``main``."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from mmpkd_core.cache import default_cache_dir
from study.errors import StudyError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sweep distillation recipes, store every trial in DuckDB, report how localization moves.")
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
DB_HELP = "DuckDB file holding the studies"


def _say(msg: str) -> None:
    console.print(msg, markup=False, soft_wrap=True)  # one line per message, however long: logs are grepped


@app.command()
def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="YAML study spec, e.g. search_spaces/ddsm.yaml"),
    db: Path = typer.Option(Path("studies.duckdb"), "--db", help=DB_HELP),
    name: Optional[str] = typer.Option(None, "--name", help="Store the study under this name instead of the spec's"),
    replace: bool = typer.Option(False, "--replace", help="Delete a stored study of the same name first"),
    report: bool = typer.Option(True, "--report/--no-report", help="Write reports/<study>.html at the end"),
    address: Optional[str] = typer.Option(None, "--address",
                                          help="Join an existing Ray cluster (ray://... or HOST:PORT)"),
    cache_dir: Path = typer.Option(default_cache_dir(), "--cache-dir",
                                   help="Prepared data, fitted teachers and Ray results"),
) -> None:
    """Run a study: sample recipes, train and evaluate each trial, store everything, write the report."""
    from study.load import load_specs

    specs = load_specs(spec_path, name=name)
    _run_specs(specs, db, replace, report, address, cache_dir)


def _run_specs(specs, db: Path, replace: bool, report: bool, address, cache_dir: Path) -> None:
    from study.runner import run_study
    from study.store import Store

    if address:  # before anything is opened, prepared or trained
        from study.ray_executor import check_address

        check_address(address)

    store = Store(db)
    plan = []
    for spec in specs:
        row = store.study_row(spec.name)
        if row is None or replace:
            plan.append((spec, "new"))
        elif row["spec_hash"] != spec.spec_hash():
            raise StudyError(f"Study '{spec.name}' exists in {db} with a different spec. "
                             "Use --name NEW, --replace, or --db OTHER.duckdb.")
        else:
            plan.append((spec, "done" if row["status"] == "completed" else "resume"))
    from study.design import plan as design_plan

    for spec, mode in plan:  # a fixed design's reference study must be there before anything is trained
        if mode == "resume":
            _check_science_version(store, spec.name, db)
        if mode != "done":
            design_plan(spec, store)
    for spec, mode in plan:
        if mode == "done":
            _say(f"study {spec.name} is already complete in {db} (--replace to run it again)")
            continue
        if mode == "new" and store.study_exists(spec.name):
            store.delete_study(spec.name)
        if spec.stand_in_for:
            _say(f"data.root is empty: running {spec.domain}, the synthetic stand-in for {spec.stand_in_for} "
                 "(set data.root, or the environment variable the spec names, to run the real data)")
        _say(f"study {spec.name}: {spec.executor.trials} recipes x {len(spec.seed_list())} seed(s) on {spec.domain} "
             f"({spec.executor.kind} executor) -> {db}")
        if console.is_terminal:  # a live progress line at the bottom; a log gets the per-trial lines only
            from study.progress import LiveLine

            live = LiveLine(console, spec.name, spec.objective.mode)
        else:
            from contextlib import nullcontext

            live = nullcontext()
        with live:
            outcome = run_study(spec, store, str(cache_dir), say=_say, address=address, resume=mode == "resume",
                                progress=live if console.is_terminal else None)
        counts = ", ".join(f"{v} {k}" for k, v in outcome.counts.items())
        _say(f"done in {outcome.wall_seconds:.0f} s: {counts}")
        use = store.utilisation(spec.name)
        if use:
            _say(f"slot utilisation {use[0]:.2f}: {use[1]:.0f} s of trials (pruned, failed and baselines "
                 f"included) over {use[2]} slot(s) x {use[3]:.0f} s")
        if outcome.best:
            b = outcome.best
            _say(f"best recipe #{b['recipe']}: {b['params']}  val {spec.objective.metric} {b['val_objective']:.3f}, "
                 f"test {b['test_objective']:.3f}, test AUROC {b['test_auroc']:.3f}")
    store.close()
    _say(f"database: {db.resolve()}")
    if report:
        out = _write_report(db, [s.name for s, _ in plan], None)
        _say(f"report:   {out.resolve()}")
        from study.tracking import log_report

        log_report([s for s, _ in plan], out, _say)  # into each MLflow-tracked study's study-level run


def _check_science_version(store, name: str, db: Path) -> None:
    """A study is continued only by an engine of the science version that made its trials."""
    from mmpkd_core.version import SCIENCE_VERSION, describe, engine_version

    other = store.science_versions(name) - {SCIENCE_VERSION}
    if other:
        made = store.con.execute("SELECT list(DISTINCT engine_version) FROM trials WHERE study = ? AND "
                                 "science_version IS DISTINCT FROM ?", [name, SCIENCE_VERSION]).fetchone()[0]
        packages = ", ".join(sorted(str(m) for m in made if m)) or "unknown"
        raise StudyError(f"study '{name}' in {db} was made by "
                         f"{' and '.join(describe(v) for v in sorted(other, key=str))}; "
                         f"this engine (mmpkd-study {engine_version()}) is science version {SCIENCE_VERSION}. "
                         "Start a new study (--name NEW, or --replace), or install the engine that made it "
                         f"(mmpkd-study {packages})")


@app.command()
def resume(
    name: str = typer.Argument(..., metavar="NAME", help="A stored study that was stopped or killed"),
    db: Path = typer.Option(Path("studies.duckdb"), "--db", help=DB_HELP),
    report: bool = typer.Option(True, "--report/--no-report", help="Write reports/<study>.html at the end"),
    address: Optional[str] = typer.Option(None, "--address", help="Join an existing Ray cluster"),
    cache_dir: Path = typer.Option(default_cache_dir(), "--cache-dir",
                                   help="Prepared data, fitted teachers and Ray results"),
) -> None:
    """Continue a stopped or killed study with the spec it was started with."""
    from study.load import spec_from_dict
    from study.store import Store

    store = Store(db)
    row = store.study_row(name)
    if row is None:
        raise StudyError(f"no study '{name}' in {db}; start it with 'study run SPEC'")
    spec = spec_from_dict(json.loads(row["spec_json"]))
    store.close()
    _run_specs([spec], db, False, report, address, cache_dir)


def _write_report(db: Path, names: list[str], out: Optional[Path], png: Optional[Path] = None,
                  heatmaps: Optional[list[str]] = None) -> Path:
    from reports import build_report

    out = out or Path("reports") / f"{'+'.join(names)}.html"
    pairs = [tuple(h.split(",")) for h in heatmaps or []]
    build_report(str(db), names, str(out), png_dir=str(png) if png else None, heatmaps=pairs)
    return out


@app.command()
def report(
    names: list[str] = typer.Argument(..., metavar="NAME...", help="Stored study name(s)"),
    db: Path = typer.Option(Path("studies.duckdb"), "--db", help=DB_HELP),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="HTML file (default reports/<study>.html)"),
    png: Optional[Path] = typer.Option(None, "--png", help="Also write one PNG per figure into this folder"),
    heatmap: Optional[list[str]] = typer.Option(None, "--heatmap", help="Another ablation heatmap: two factors, "
                                                                        "e.g. temperature_bin,attention_method"),
) -> None:
    """Write the self-contained HTML report of one or more studies (opens offline)."""
    con = _read(db, _say)
    try:
        names = _resolve(con, names)
    finally:
        con.close()
    path = _write_report(db, names, out, png, heatmap)
    _say(f"report: {path.resolve()}")
    if png:
        _say(f"PNGs:   {png.resolve()}")


@app.command()
def status(db: Path = typer.Option(Path("studies.duckdb"), "--db", help=DB_HELP)) -> None:
    """List the stored studies with their trial counts and best objective."""
    from rich.table import Table

    con = _read(db, _say)
    rows = con.execute("""
        SELECT s.name, s.domain, s.status, count(t.trial_id),
               count(*) FILTER (WHERE t.status = 'completed'), count(*) FILTER (WHERE t.status = 'pruned'),
               count(*) FILTER (WHERE t.status = 'failed'), max(t.test_objective), s.wall_seconds
        FROM studies s LEFT JOIN trials t ON t.study = s.name
        GROUP BY s.name, s.domain, s.status, s.wall_seconds, s.created_at ORDER BY s.created_at""").fetchall()
    if not rows:
        _say(f"no studies in {db}")
        return
    table = Table("study", "domain", "status", "trials", "completed", "pruned", "failed", "best test objective",
                  "wall s")
    for r in rows:
        *cells, best, wall = r
        table.add_row(*map(str, cells), "-" if best is None else f"{best:.3f}", "-" if wall is None else f"{wall:.0f}")
    console.print(table)


@app.command()
def methods() -> None:
    """List the attention methods, localization metrics, teachers and domains the engine knows."""
    from mmpkd_core.attention import METHODS
    from mmpkd_core.data import DOMAINS
    from mmpkd_core.localization import METRICS
    from mmpkd_core.teachers import TEACHERS

    _say("attention methods: " + ", ".join(METHODS.names()))
    _say("localization metrics: " + ", ".join(METRICS.names()))
    _say("teachers: " + ", ".join(f"{t} ({TEACHERS.get(t).modality})" for t in TEACHERS.names()))
    _say("domains: " + ", ".join(f"{d} ({DOMAINS.get(d).modality}"
                                 f"{', real: needs data.root' if DOMAINS.get(d).is_real else ''})"
                                 for d in DOMAINS.names()))


def _resolve(con, names: list[str]) -> list[str]:
    """Stored study names: exact names, or the per-domain studies of a cross-domain spec's name."""
    stored = [r[0] for r in con.execute("SELECT name FROM studies ORDER BY name").fetchall()]
    out = []
    for n in names:
        hits = [n] if n in stored else [s for s in stored if s.startswith(f"{n}-")]
        if not hits:
            from mmpkd_core.registry import did_you_mean

            raise StudyError(f"no study '{n}' in the database.{did_you_mean(n, stored)} "
                             f"Stored: {', '.join(stored) or 'none'}")
        out += hits
    return out


def _emit(df, fmt: str) -> None:
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(df.to_json(orient="records", indent=1) + "\n")
    else:
        from rich.table import Table

        table = Table()
        for c in df.columns:
            table.add_column(str(c), overflow="fold")
        for row in df.itertuples(index=False):
            table.add_row(*[("-" if v is None or (isinstance(v, float) and v != v) else
                             f"{v:.3g}" if isinstance(v, float) else str(v)) for v in row])
        console.print(table)


FORMAT = typer.Option("table", "--format", help="table, csv or json")


def _check_format(fmt: str) -> None:
    if fmt not in ("table", "csv", "json"):
        raise StudyError(f"unknown format '{fmt}'; use table, csv or json")


@app.command()
def ablate(
    names: list[str] = typer.Argument(..., metavar="NAME...", help="Stored study name(s)"),
    by: Optional[str] = typer.Option(None, "--by", help="Comma-separated factors to group by (default: teacher,"
                                                          "attention_method; for one ablation study: its cells)"),
    metric: str = typer.Option("pointing_game", "--metric", help="Localization metric"),
    fmt: str = FORMAT,
    db: Path = typer.Option(Path("studies.duckdb"), "--db", help=DB_HELP),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples (rows of a single trained model)"),
) -> None:
    """Print the ablation table: mean gain over the matched baseline per factor level, inferred over
    seeds (or recipes), with a t-interval, an exact sign-flip p-value and Holm's correction. For an
    ablation study: each cell's gain over the baseline and over the reference recipe."""
    from study.ablation import ablation, ablation_path
    from study.stats import PairingError
    _check_format(fmt)
    con = _read(db, _note)
    try:
        studies = _resolve(con, names)
        designs = {json.loads(s).get("design", "optimize") for (s,) in con.execute(
            "SELECT spec_json FROM studies WHERE list_contains(?, name)", [studies]).fetchall()}
        if by is None and len(studies) == 1 and designs == {"ablation"}:
            table = ablation_path(con, studies[0], metric, n_boot)
            _emit(table, fmt)
            (_say if fmt == "table" else _note)(
                "gain: over the no-distillation baseline; over_reference: over the reference recipe (cell #0), "
                "paired by seed and image; intervals: 95% t over seeds (1 seed: the test images only)")
            return
        table = ablation(con, studies, [b.strip() for b in (by or "teacher,attention_method").split(",") if b.strip()],
                         metric, n_boot)
        pruned = con.execute("""SELECT count(DISTINCT (study, number)), list(DISTINCT epochs_done ORDER BY epochs_done)
            FROM trials WHERE list_contains(?, study) AND status = 'pruned'""", [studies]).fetchone()
    except PairingError as err:
        raise StudyError(str(err)) from None
    finally:
        con.close()
    _emit(table, fmt)
    for line in ablation_notes(table, *pruned):
        (_say if fmt == "table" else _note)(line)


def _note(line: str) -> None:
    print(line, file=sys.stderr)


def _read(db: Path, say) -> object:
    """A read-only connection; while a running study holds the file, its last published snapshot,
    and one line (through ``say``) saying how old that state is."""
    from study.store import connect, live_note

    con = connect(str(db), read_only=True)
    note = live_note(db)
    if note:
        say(note)
    return con


def ablation_notes(table, pruned: int = 0, pruned_at=None) -> list[str]:
    """The lines printed under an ablation table: its units, one-seed rows, rows that cannot reach 0.05,
    and the pruned recipes left out."""
    from study.inference import ALPHA, ONE_SEED_NOTE, UNIT_ONE_MODEL

    units = ", ".join(f"{u} ({c} rows)" for u, c in table["unit"].value_counts(sort=False).items())
    lines = [f"unit of inference: {units}; ci_low/ci_high: 95% t-interval over the units (n - 1 df), p_value: "
             "exact sign-flip test over them, p_holm: Holm within this table"]
    one = int((table["unit"] == UNIT_ONE_MODEL).sum())
    if one:
        lines.append(f"{ONE_SEED_NOTE} ({one} of {len(table)} rows; their interval is an image bootstrap and "
                     "they carry no p-value)")
    low = int((~table["reachable"] & (table["unit"] != UNIT_ONE_MODEL)).sum())
    if low:
        lines.append(f"{low} row(s) cannot reach p_holm < {ALPHA} with their number of units (the smallest exact "
                     "p is p_floor = 2/2^n): add seeds (see 'study seeds')")
    if pruned:
        lines.append(f"{pruned} pruned recipe(s) left out: ASHA stopped them after {', '.join(map(str, pruned_at))} "
                     "epoch(s), before any test scoring, so they have no gain to compare (a sensitivity or ablation "
                     "design completes every recipe)")
    return lines


@app.command()
def seeds(
    name: str = typer.Argument(..., metavar="NAME", help="A stored study whose recipes ran with 2 or more seeds"),
    effect: float = typer.Option(0.05, "--effect", help="Smallest gain worth detecting, on the metric's scale"),
    power: float = typer.Option(0.8, "--power", help="Probability of detecting it"),
    metric: Optional[str] = typer.Option(None, "--metric", help="One localization metric (default: all)"),
    confidence: float = typer.Option(0.9, "--confidence", help="Upper confidence bound on the seed spread"),
    fmt: str = FORMAT,
    db: Path = typer.Option(Path("studies.duckdb"), "--db", help=DB_HELP),
) -> None:
    """How many seeds detect a gain of --effect: seed and image variance components of a pilot study,
    an upper confidence bound on the seed spread, then a t-test power analysis."""
    from study.power import SIGN_FLIP_MIN, seed_plan
    _check_format(fmt)
    con = _read(db, _note)
    try:
        found = _resolve(con, [name])
        if len(found) > 1:
            raise StudyError(f"'{name}' names {len(found)} studies ({', '.join(found)}); name one of them")
        table = seed_plan(con, found[0], effect, power, metric, confidence=confidence)
    finally:
        con.close()
    _emit(table, fmt)
    note = _say if fmt == "table" else _note
    note(f"seeds: per recipe, to detect a gain of {effect:g} with power {power:g} at alpha 0.05 (two-sided t over "
         f"per-seed gains), using the {confidence:.0%} upper bound on sd_gain; seeds_point uses the estimate itself. "
         f"The exact sign-flip p-value needs {SIGN_FLIP_MIN} or more seeds to go below 0.05.")


@app.command()
def query(
    sql: str = typer.Argument(..., metavar="SQL", help="A read-only query over the tables and views"),
    fmt: str = FORMAT,
    db: Path = typer.Option(Path("studies.duckdb"), "--db", help=DB_HELP),
) -> None:
    """Run a read-only SQL query (the database is opened read-only: writes are refused)."""
    import duckdb

    _check_format(fmt)
    con = _read(db, _note)
    try:
        df = con.execute(sql).df()
    except duckdb.Error as err:
        msg = str(err).splitlines()[0]
        if "read-only" in msg.lower():
            raise StudyError("study query is read-only; it does not modify the database") from None
        raise StudyError(f"query failed: {msg}") from None
    finally:
        con.close()
    _emit(df, fmt)


@app.command("validate-engine")
def validate_engine(
    db: Path = typer.Option(Path("validation.duckdb"), "--db", help="Database for the validation studies"),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes and 2 seeds (minutes, for a smoke check)"),
    null_repeats: int = typer.Option(0, "--null-repeats", help="Also run the null, at the --quick sizes with 6 seeds, "
                                                                 "for this many other data seeds, and report the share "
                                                                 "of intervals that exclude zero (each repeat gives 18 "
                                                                 "A/A intervals, seeds 0-2 against 3-5 of the report "
                                                                 "teacher's students and of the baselines, 3 methods x "
                                                                 "3 metrics: 3 repeats give 54)"),
    cache_dir: Path = typer.Option(default_cache_dir(), "--cache-dir"),
    fmt: str = FORMAT,
) -> None:
    """Run the planted and the null validation studies and give a verdict on each."""
    import pandas as pd

    from study.validate import REPEAT_EVALUATION, REPEAT_SEEDS, contrast, load, seed_split_contrast, verdict

    _check_format(fmt)
    AA_PRIVILEGED, AA_BASELINE = "A/A: report teacher, seeds 0-2 - 3-5", "A/A: baseline, seeds 0-2 - 3-5"
    plan = [("planted", load("planted", quick)), ("null", load("null", quick))]
    plan += [("repeat", load("null", True, data_seed=r, name=f"validation-null-repeat-data{r}", seeds=REPEAT_SEEDS,
                             evaluation=REPEAT_EVALUATION)) for r in range(1, null_repeats + 1)]
    _run_specs([s for _, s in plan], db, False, False, None, cache_dir)
    con = _read(db, _note)
    try:
        tables = []
        for kind, spec in plan:
            t = contrast(con, spec.name)
            t["expectation"], t["contrast"] = ("null" if kind == "repeat" else kind), "privileged - control"
            tables.append(t)
            if kind == "repeat":
                for models, label in (("privileged", AA_PRIVILEGED), ("baseline", AA_BASELINE)):
                    aa = seed_split_contrast(con, spec.name, models)
                    aa["expectation"], aa["contrast"] = "null", label
                    tables.append(aa)
    finally:
        con.close()
    table = pd.concat(tables, ignore_index=True)
    table["verdict"] = [verdict(e, lo, hi)
                        for e, lo, hi in zip(table["expectation"], table["ci_low"], table["ci_high"])]
    _emit(table, fmt)
    for label, rows in (("privileged - control", table[(table["expectation"] == "null")
                                                       & (table["contrast"] == "privileged - control")]),
                        ("seed halves (A/A)", table[table["contrast"].isin([AA_PRIVILEGED, AA_BASELINE])])):
        if len(rows):
            share = float((rows["verdict"] == "FALSE POSITIVE").mean())
            _say(f"null intervals excluding zero, {label}: {share:.1%} of {len(rows)} (nominal 5%)")


data_app = typer.Typer(no_args_is_help=True, help="Prepare and inspect the real data sets (cbis_ddsm, mimic_cxr).")
app.add_typer(data_app, name="data")


def _real_data_config(domain: str, root: Path, image_size: int, skip_bad: bool, options: list[str]):
    import yaml

    from mmpkd_core.data import DOMAINS, DataConfig

    real = [d for d in DOMAINS.names() if DOMAINS.get(d).is_real]
    if domain not in real:
        raise StudyError(f"'{domain}' is not a real domain; use one of: {', '.join(real)}")
    opts = {}
    for o in options:
        key, eq, value = o.partition("=")
        if not eq:
            raise StudyError(f"--option '{o}': write KEY=VALUE, e.g. --option benign_without_callback=exclude")
        opts[key.strip()] = yaml.safe_load(value)
    from pydantic import ValidationError

    try:
        DOMAINS.get(domain).options.model_validate(opts)
    except ValidationError as err:
        e = err.errors()[0]
        raise StudyError(f"--option {'.'.join(map(str, e['loc']))}: {e['msg']}; {domain} takes: "
                         f"{', '.join(DOMAINS.get(domain).options.model_fields)}") from None
    if not root.expanduser().is_dir():
        raise StudyError(f"--root {root}: does not exist or is not a folder")
    return DataConfig.from_section(root=str(root), image_size=image_size, skip_bad=skip_bad, options=opts)


ROOT_OPT = typer.Option(..., "--root", help="The data set's folder (its CSVs at the top)")
SIZE_OPT = typer.Option(224, "--image-size", help="Side of the square images the students see")
OPTION_OPT = typer.Option([], "--option", help="A domain option KEY=VALUE (as in a spec's data.options); repeatable")
CACHE_OPT = typer.Option(default_cache_dir(), "--cache-dir",
                         help="Where the prepared cache lives (the studies' --cache-dir)")


@data_app.command("prepare")
def data_prepare(
    domain: str = typer.Argument(..., metavar="DOMAIN", help="cbis_ddsm or mimic_cxr"),
    root: Path = ROOT_OPT,
    image_size: int = SIZE_OPT,
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable or missing inputs; they are listed in "
                                                            "the prepared cache's skipped.csv"),
    workers: int = typer.Option(0, "--workers", help="Decoding processes (0: one per core, at most 8)"),
    force: bool = typer.Option(False, "--force", help="Decode again even if the prepared cache exists"),
    options: list[str] = OPTION_OPT,
    cache_dir: Path = CACHE_OPT,
) -> None:
    """Decode, resize and cache a real data set once; every study and Ray worker then reads the cache."""
    from mmpkd_core.data import DOMAINS
    from mmpkd_core.data.prepared import ensure_prepared

    cfg = _real_data_config(domain, root, image_size, skip_bad, options)
    folder = ensure_prepared(DOMAINS.get(domain), cfg, str(cache_dir), workers=workers or None, force=force, say=_say)
    info = json.loads((folder / "prepared.json").read_text())
    _say(f"prepared: {info['images']} images ({info['skipped']} skipped) at {info['image_size']}x{info['image_size']}"
         f" in {info['seconds']:.1f} s ({info['images_per_second']} images/s) -> {folder}")


@data_app.command("info")
def data_info(
    domain: str = typer.Argument(..., metavar="DOMAIN", help="cbis_ddsm or mimic_cxr"),
    root: Path = ROOT_OPT,
    image_size: int = SIZE_OPT,
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Read the cache prepared with --skip-bad"),
    options: list[str] = OPTION_OPT,
    cache_dir: Path = CACHE_OPT,
    fmt: str = FORMAT,
) -> None:
    """Counts per split, label balance and ROI coverage of a prepared real data set, under the options given."""
    import numpy as np
    import pandas as pd

    from mmpkd_core.data import DOMAINS
    from mmpkd_core.data.prepared import open_prepared, prepared_path

    _check_format(fmt)
    cfg = _real_data_config(domain, root, image_size, skip_bad, options)
    folder = prepared_path(DOMAINS.get(domain), cfg, str(cache_dir))
    if not (folder / "prepared.json").exists():
        raise StudyError(f"{domain} at {cfg.root} is not prepared at {image_size}x{image_size}; "
                         f"run: study data prepare {domain} --root {cfg.root} --image-size {image_size}"
                         + (" --skip-bad" if skip_bad else ""))
    d = DOMAINS.get(domain).view(cfg, *open_prepared(folder))
    rows = []
    for split in ("train", "val", "test"):
        idx = d.index(split)
        roi = np.isin(idx, d.roi_index(split))  # the masks are read a chunk at a time; below, only those with an ROI
        rows.append({"split": split, "images": len(idx), "positive": int(d.true_labels[idx].sum()),
                     "positive_share": round(float(d.true_labels[idx].mean()), 3) if len(idx) else None,
                     "with_roi": int(roi.sum()), "roi_share": round(float(roi.mean()), 3) if len(idx) else None,
                     "roi_area_share": round(float(np.asarray(d.masks[idx[roi]]).mean()), 4) if roi.any() else None})
    _emit(pd.DataFrame(rows), fmt)
    info = json.loads((folder / "prepared.json").read_text())
    skipped = f", {info['skipped']} skipped (listed in {folder / 'skipped.csv'})" if info["skipped"] else ""
    _say(f"prepared cache: {folder} ({info['images']} images{skipped}); privileged "
         f"{'report text' if d.text is not None else 'columns: ' + ', '.join(d.table.columns)}; "
         f"{d.images.shape[-1]} px images")
    if d.subset:  # data.options.max_train
        _say(d.subset)


@app.command()
def dashboard(
    db: Path = typer.Option(Path("studies.duckdb"), "--db", help=DB_HELP),
    port: int = typer.Option(8080, "--port", help="Port to serve on, at 127.0.0.1"),
) -> None:
    """Serve the studies of --db in optuna-dashboard (trials, states, values, training curves), live while
    a study runs."""
    from study.dashboard import serve

    serve(db, port, say=_say)


def main() -> None:
    try:
        app()  # click handles usage errors itself (exit code 2)
    except StudyError as err:
        _fail(str(err))
    except Exception as err:  # a database written by another engine version, or not a study database
        if _is_data_error(err):
            _fail(str(err))
        if type(err).__module__.startswith(("duckdb", "_duckdb")):
            _fail(f"database: {str(err).splitlines()[0]} (is it a study database of this engine version?)")
        raise


def _is_data_error(err: Exception) -> bool:
    """A data problem (``mmpkd_core.data.prepared.DataError``), told apart without importing the data
    code (and torch with it) for commands that never load data: if that module is not loaded, the
    error cannot be one."""
    prepared = sys.modules.get("mmpkd_core.data.prepared")
    return prepared is not None and isinstance(err, prepared.DataError)


def _fail(message: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"error: {message}", markup=False)
    sys.exit(1)


if __name__ == "__main__":
    main()
