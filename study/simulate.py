"""Write a simulated study straight into a store, without training: for scale tests and benchmarks
of the store, the views and the report (``bench/store_scale.py``). Scores are random, seeded."""
from __future__ import annotations

import json
import time

from study.store import Store

METHODS = ("raw_cls", "rollout", "grad_rollout", "gradcam_tokens", "attnlrp")
METRICS = ("pointing_game", "relevance_mass", "relevance_rank", "iou_top_k", "pixel_auroc", "pixel_auprc", "cnr")


def simulate_study(path: str, name: str = "simulated", trials: int = 1000, images: int = 500,
                   methods=METHODS, metrics=METRICS, epochs: int = 5, seed: int = 0) -> dict:
    """A completed study of ``trials`` recipes plus its baseline, every method x metric x image scored.
    Returns the seconds each part took and the row count."""
    store = Store(path, publish=False)  # no live snapshot: nothing reads the file while it is written
    con = store.con
    t0 = time.perf_counter()
    spec = {"name": name, "domain": "synthetic_ddsm", "objective": {"metric": "pointing_game", "mode": "max"},
            "search_space": {"teacher": {}, "temperature": {}, "alpha": {}, "attention_method": {}}}
    store.create_study(name, "synthetic_ddsm", json.dumps(spec), "simulated")
    con.execute(f"SELECT setseed({(seed % 1000) / 1000})")
    methods_sql = ", ".join(f"('{m}')" for m in (*methods, "uniform", "centre"))
    metrics_sql = ", ".join(f"('{k}')" for k in metrics)
    method_list = "[" + ", ".join(f"'{m}'" for m in methods) + "]"
    with store.transaction():
        con.execute(f"""
            INSERT INTO trials (study, trial_id, number, status, is_baseline, domain, teacher, temperature, alpha,
                beta, attention_method, lr, weight_decay, epochs, seed, params_json, config_json, config_hash,
                baseline_key, val_objective, test_objective, val_auroc, test_auroc, epochs_done, trial_seconds)
            SELECT ?, CASE WHEN n < 0 THEN 'baseline-sim' ELSE lpad(n::VARCHAR, 4, '0') END,
                   CASE WHEN n < 0 THEN NULL ELSE n END, 'completed', n < 0, 'synthetic_ddsm',
                   CASE WHEN n < 0 THEN NULL WHEN n % 2 = 0 THEN 'lightgbm' ELSE 'mlp' END,
                   1 + 7 * random(), random(), 0.0, ({method_list})[1 + n % {len(methods)}],
                   1e-3, 0.05, {epochs}, 0,
                   json_object('teacher', CASE WHEN n % 2 = 0 THEN 'lightgbm' ELSE 'mlp' END,
                               'temperature', 1 + 7 * random(), 'alpha', random(),
                               'attention_method', ({method_list})[1 + n % {len(methods)}]),
                   '{{}}', CASE WHEN n < 0 THEN 'sim' ELSE 'h' || n END, CASE WHEN n < 0 THEN NULL ELSE 'sim' END,
                   random(), random(), 0.8 + 0.2 * random(), 0.8 + 0.2 * random(), {epochs}, 30 * random()
            FROM range(-1, {trials}) r(n)""", [name])
        con.execute(f"""
            INSERT INTO epochs SELECT ?, t.trial_id, e, 1.0 / e, 0.5, 0.3, 0.1, 1e-3, random(), random(), 1.0
            FROM trials t, range(1, {epochs + 1}) r(e) WHERE t.study = ?""", [name, name])
        t1 = time.perf_counter()
        con.execute(f"""
            INSERT INTO localization
            SELECT ?, t.trial_id, 'test', m.method, k.metric, 'img' || lpad(i::VARCHAR, 5, '0'),
                   CASE WHEN k.metric = 'pointing_game' THEN (random() < 0.5)::INTEGER::DOUBLE ELSE random() END
            FROM trials t, (VALUES {methods_sql}) m(method), (VALUES {metrics_sql}) k(metric), range({images}) r(i)
            WHERE t.study = ?""", [name, name])
        t2 = time.perf_counter()
        con.execute("""
            INSERT INTO evaluation SELECT study, trial_id, split, method, metric, avg(value), count(*), 0
            FROM localization WHERE study = ? GROUP BY ALL""", [name])
    store.finish_study(name, "completed", time.perf_counter() - t0)
    rows = con.execute("SELECT count(*) FROM localization WHERE study = ?", [name]).fetchone()[0]
    store.close()
    return {"rows": rows, "insert_localization_s": t2 - t1, "total_s": time.perf_counter() - t0}
