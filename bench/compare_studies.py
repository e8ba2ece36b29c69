"""Are two stored runs of a study the same numbers? For a change that must not alter what a trial
computes (or to say how much one that does alters): every stored number of one study in database A
against the same study in database B, row matched to row by its keys.

    .venv/bin/python bench/compare_studies.py A.duckdb B.duckdb ddsm-demo [--study-b NAME] [--by-config]

Per table: the rows matched, the rows in one database only, and for each numeric column the rows
that differ and the largest absolute difference. Timings (seconds, timestamps, the teacher's fit time)
are left out; a
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
    "trials": (["trial_id"], ["status", "params_json", "config_hash", "baseline_key", "val_objective", "test_objective",
                              "val_auroc", "test_auroc", "teacher_metrics", "method_params_json", "epochs_done",
                              "science_version"]),
    "epochs": (["trial_id", "epoch"], ["loss", "ce", "kd", "feat", "lr", "val_auroc", "val_objective"]),
    "localization": (["trial_id", "split", "method", "metric", "image_id"], ["value"]),
    "evaluation": (["trial_id", "split", "method", "metric"], ["mean", "n", "n_nan"]),
    "gains": (["trial_id", "method", "metric"], ["n_images", "score", "baseline", "gain", "model_ci_low",
                                                 "model_ci_high", "model_p_value", "model_p_holm"]),
    "recipe_gains": (["number", "method", "metric", "unit"], ["n", "score", "baseline", "gain", "ci_low", "ci_high",
                                                              "p_value", "p_holm"]),
    "maps": (["trial_id", "method", "image_id"], ["map"]),
}


def rows_of(db: str, table: str) -> str:
    """The study's rows of ``table`` in ``db`` (the study's name is the query's one parameter), with its
    matched baselines: the completed baseline rows of the config hash and science version its trials name,
    as ``gains_by_image`` pairs them. Each row carries its trial's config hash as ``ckey``."""
    own = f"{db}.{table}"
    if table == "recipe_gains":
        return f"(SELECT * FROM {own} WHERE study = $study)"
    baselines = (f"SELECT b.study, b.trial_id FROM {db}.trials b WHERE b.is_baseline AND b.status = 'completed' "
                 f"AND EXISTS (SELECT 1 FROM {db}.trials t WHERE t.study = $study AND t.baseline_key = b.config_hash "
                 f"AND t.science_version IS NOT DISTINCT FROM b.science_version)")
    where = ("x.study = $study" if table == "gains" else
             f"x.study = $study OR (x.study, x.trial_id) IN ({baselines})")
    fit_time_out = """json_merge_patch(x.teacher_json, '{"fit_seconds": null}')"""
    extra = f", {fit_time_out} AS teacher_metrics" if table == "trials" else ""
    return (f"(SELECT x.*, t.config_hash AS ckey{extra} FROM {own} x JOIN {db}.trials t ON t.study = x.study "
            f"AND t.trial_id = x.trial_id WHERE {where})")


def compare(a: str, b: str, study: str, study_b: str | None = None, by_config: bool = False) -> list[dict]:
    """Per table: row counts, matched rows, keys held twice on either side (such a key is not compared:
    say so rather than join it), and per column (rows that differ, largest absolute difference)."""
    con = duckdb.connect()
    con.execute("ATTACH ? AS a (READ_ONLY)", [a])
    con.execute("ATTACH ? AS b (READ_ONLY)", [b])
    names = {"sa": study, "sb": study_b or study}
    study_cols = ("status", "data_subset", "planned_trials")
    same = con.execute("SELECT " + ", ".join(f"(x.{c} IS DISTINCT FROM y.{c})::INT" for c in study_cols)
                       + " FROM a.studies x, b.studies y WHERE x.name = $sa AND y.name = $sb", names).fetchone()
    out = [{"table": "studies", "rows_a": 1, "rows_b": 1, "matched": int(same is not None), "twice": 0,
            **{c: (n, None) for c, n in zip(study_cols, same or (0, 0, 0))}}]
    for table, (keys, cols) in TABLES.items():
        if by_config:
            if table == "recipe_gains":
                out.append({"table": table, "skipped": "recipe numbers differ between runs matched by config"})
                continue
            keys = ["ckey" if k == "trial_id" else k for k in keys]
        ra = rows_of("a", table).replace("$study", "$sa")
        rb = rows_of("b", table).replace("$study", "$sb")
        keyed = ", ".join(keys)
        once = {side: f"(SELECT * FROM {r} WHERE ({keyed}) IN (SELECT {keyed} FROM {r} GROUP BY ALL "
                      f"HAVING count(*) = 1))" for side, r in (("a", ra), ("b", rb))}
        on = " AND ".join(f"x.{k} IS NOT DISTINCT FROM y.{k}" for k in keys)
        counts = con.execute(
            f"SELECT (SELECT count(*) FROM {ra}), (SELECT count(*) FROM {rb}), "
            f"(SELECT count(*) FROM {once['a']} x JOIN {once['b']} y ON {on}), "
            f"(SELECT count(*) FROM {ra}) - (SELECT count(*) FROM {once['a']}) "
            f"+ (SELECT count(*) FROM {rb}) - (SELECT count(*) FROM {once['b']})", names).fetchone()
        row = {"table": table, "rows_a": counts[0], "rows_b": counts[1], "matched": counts[2], "twice": counts[3]}
        for c in cols:
            kind = con.execute(f"SELECT typeof(x.{c}) FROM {ra} x LIMIT 1", {"sa": names["sa"]}).fetchone()
            numeric = kind is not None and kind[0] in ("DOUBLE", "INTEGER", "BIGINT", "FLOAT")
            diff = (f"max(abs(x.{c} - y.{c}))" if numeric else "NULL")
            n, worst = con.execute(f"SELECT count(*) FILTER (WHERE x.{c} IS DISTINCT FROM y.{c}), {diff} "
                                   f"FROM {once['a']} x JOIN {once['b']} y ON {on}", names).fetchone()
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
        if "skipped" in row:
            print(f"{row['table']}: not compared ({row['skipped']})")
            continue
        differ = {c: v for c, v in row.items() if isinstance(v, tuple) and v[0]}
        shown = ", ".join(f"{c}: {n} differ" + (f" (max |diff| {w:.3g})" if w is not None else "")
                          for c, (n, w) in differ.items()) or "every compared value equal"
        twice = f"; {row['twice']} rows share a key with another and are not compared" if row["twice"] else ""
        print(f"{row['table']}: {row['matched']} matched of {row['rows_a']} / {row['rows_b']} rows{twice}; {shown}")


if __name__ == "__main__":
    main()
