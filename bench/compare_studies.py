"""Are two stored runs of a study the same numbers? For a change that must not alter what a trial
computes (or to say how much one that does alters): every stored number of one study in database A
against the same study in database B, row matched to row by its keys.

    .venv/bin/python bench/compare_studies.py A.duckdb B.duckdb ddsm-demo [--study-b NAME] [--by-config]

Per table: the rows matched, the rows in one database only, and for each numeric column the rows
that differ and the largest absolute difference. Timings (seconds, timestamps) are left out; a
baseline is matched by its config hash, so a baseline reused from another study of A counts too.
``--by-config`` matches every trial by its config hash instead of its trial id: for the Ray executor,
whose sampled sequence depends on which results came back first, so that the same recipe may carry
another number (``recipe_gains``, by recipe number, is then left out).
"""
from __future__ import annotations

import argparse

import duckdb

# table -> (the keys that match a row of A to a row of B, the numbers compared)
TABLES = {
    "trials": (["trial_id"], ["status", "params_json", "config_hash", "val_objective", "test_objective",
                              "val_auroc", "test_auroc", "method_params_json", "epochs_done", "science_version"]),
    "epochs": (["trial_id", "epoch"], ["loss", "ce", "kd", "feat", "lr", "val_auroc", "val_objective"]),
    "localization": (["trial_id", "split", "method", "metric", "image_id"], ["value"]),
    "evaluation": (["trial_id", "split", "method", "metric"], ["mean", "n", "n_nan"]),
    "gains": (["trial_id", "method", "metric"], ["n_images", "score", "baseline", "gain", "model_ci_low",
                                                 "model_ci_high", "model_p_value", "model_p_holm"]),
    "recipe_gains": (["number", "method", "metric", "unit"], ["n", "score", "baseline", "gain", "ci_low", "ci_high",
                                                              "p_value", "p_holm"]),
    "maps": (["trial_id", "method", "image_id"], ["map"]),
}


def rows_of(con, db: str, table: str, study: str) -> str:
    """The study's rows of ``table`` in ``db``, baselines included (by the config hash the trials name),
    each with its trial's config hash as ``ckey``."""
    own = f"{db}.{table}"
    if table == "recipe_gains":
        return f"(SELECT * FROM {own} WHERE study = '{study}')"
    baselines = (f"SELECT b.study, b.trial_id FROM {db}.trials b WHERE b.is_baseline AND b.config_hash IN "
                 f"(SELECT baseline_key FROM {db}.trials WHERE study = '{study}')")
    where = (f"x.study = '{study}'" if table == "gains" else
             f"x.study = '{study}' OR (x.study, x.trial_id) IN ({baselines})")
    return (f"(SELECT x.*, t.config_hash AS ckey FROM {own} x JOIN {db}.trials t ON t.study = x.study "
            f"AND t.trial_id = x.trial_id WHERE {where})")


def compare(a: str, b: str, study: str, study_b: str | None = None, by_config: bool = False) -> list[dict]:
    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    out = []
    for table, (keys, cols) in TABLES.items():
        if by_config:
            if table == "recipe_gains":
                continue
            keys = ["ckey" if k == "trial_id" else k for k in keys]
        ra, rb = rows_of(con, "a", table, study), rows_of(con, "b", table, study_b or study)
        on = " AND ".join(f"x.{k} IS NOT DISTINCT FROM y.{k}" for k in keys)
        counts = con.execute(f"SELECT (SELECT count(*) FROM {ra}), (SELECT count(*) FROM {rb}), "
                             f"(SELECT count(*) FROM {ra} x JOIN {rb} y ON {on})").fetchone()
        row = {"table": table, "rows_a": counts[0], "rows_b": counts[1], "matched": counts[2]}
        for c in cols:
            kind = con.execute(f"SELECT typeof(x.{c}) FROM {ra} x LIMIT 1").fetchone()
            numeric = kind is not None and kind[0] in ("DOUBLE", "INTEGER", "BIGINT", "FLOAT")
            diff = (f"max(abs(x.{c} - y.{c}))" if numeric else "NULL")
            n, worst = con.execute(f"SELECT count(*) FILTER (WHERE x.{c} IS DISTINCT FROM y.{c}), {diff} "
                                   f"FROM {ra} x JOIN {rb} y ON {on}").fetchone()
            row[c] = (n, worst)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("study")
    ap.add_argument("--study-b", help="the study's name in B, if another")
    ap.add_argument("--by-config", action="store_true", help="match trials by config hash, not trial id")
    args = ap.parse_args()
    for row in compare(args.a, args.b, args.study, args.study_b, args.by_config):
        differ = {c: v for c, v in row.items() if isinstance(v, tuple) and v[0]}
        shown = ", ".join(f"{c}: {n} differ" + (f" (max |diff| {w:.3g})" if w is not None else "")
                          for c, (n, w) in differ.items()) or "every compared value equal"
        print(f"{row['table']}: {row['matched']} matched of {row['rows_a']} / {row['rows_b']} rows; {shown}")


if __name__ == "__main__":
    main()
