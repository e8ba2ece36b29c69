"""Data steps of the report: each a query over the store returning plain rows (lists of dicts).

These are what the tests check; the render step only draws them.
"""
from __future__ import annotations

import json
from pathlib import Path

from study.store import has_column


def _rows(con, sql: str, params: list) -> list[dict]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def overview(con, names: list[str]) -> list[dict]:
    """One row per study: domain, status, trial counts by status, wall time, the spec."""
    rows = _rows(con, """
        SELECT s.name, s.domain, s.status, s.wall_seconds, {use} AS slot_utilisation, {subset} AS data_subset,
               s.spec_json,
               count(t.trial_id) FILTER (WHERE NOT t.is_baseline) AS trials,
               count(t.trial_id) FILTER (WHERE t.is_baseline) AS baselines,
               count(*) FILTER (WHERE t.status = 'completed' AND NOT t.is_baseline) AS completed,
               count(*) FILTER (WHERE t.status = 'pruned' AND NOT t.is_baseline) AS pruned,
               count(*) FILTER (WHERE t.status = 'failed' AND NOT t.is_baseline) AS failed,
               count(*) FILTER (WHERE t.status = 'running' AND NOT t.is_baseline) AS running,
               count(DISTINCT t.seed) FILTER (WHERE NOT t.is_baseline) AS seeds
        FROM studies s LEFT JOIN trials t ON t.study = s.name
        WHERE list_contains(?, s.name) GROUP BY ALL ORDER BY s.name""".format(
        use="s.slot_utilisation" if has_column(con, "studies", "slot_utilisation") else "NULL",
        subset="s.data_subset" if has_column(con, "studies", "data_subset") else "NULL"), [names])
    for r in rows:
        r["spec"] = json.loads(r.pop("spec_json"))
        mode = "DESC" if r["spec"].get("objective", {}).get("mode", "max") == "max" else "ASC"
        best = con.execute(f"""
            SELECT any_value(params_json), avg(val_objective) AS v, avg(test_objective), avg(test_auroc), count(*)
            FROM trials WHERE study = ? AND status = 'completed' AND NOT is_baseline GROUP BY number
            ORDER BY v {mode} NULLS LAST LIMIT 1""", [r["name"]]).fetchone()
        r["best"] = None if best is None else dict(zip(["params", "val_objective", "test_objective", "test_auroc",
                                                        "seeds"], best), params=json.loads(best[0]))
    return rows


def trials(con, names: list[str]) -> list[dict]:
    """One row per trial with its sampled params, objectives and AUROC."""
    rows = _rows(con, """
        SELECT study, domain, trial_id, number, status, params_json, val_objective, test_objective,
               val_auroc, test_auroc, epochs_done, trial_seconds
        FROM trials WHERE list_contains(?, study) AND NOT is_baseline ORDER BY study, number, trial_id""", [names])
    for r in rows:
        r["params"] = json.loads(r.pop("params_json"))
    return rows


def metric_by_dimension(con, names: list[str], metric: str) -> list[dict]:
    """Per completed trial x searched dimension x method: the dimension's value and the trial's mean
    ``metric`` on the test images."""
    out = []
    rows = _rows(con, """
        SELECT t.study, t.domain, t.number, t.params_json, e.method, e.metric, e.mean
        FROM trials t JOIN evaluation e ON e.study = t.study AND e.trial_id = t.trial_id
        WHERE list_contains(?, t.study) AND t.status = 'completed' AND NOT t.is_baseline AND e.split = 'test'
          AND e.metric = ?
        ORDER BY t.study, t.number, t.trial_id, e.method""", [names, metric])
    for r in rows:
        for dim, value in json.loads(r["params_json"]).items():
            out.append({"study": r["study"], "domain": r["domain"], "number": r["number"], "dimension": dim,
                        "value": value, "method": r["method"], "metric": r["metric"], "score": r["mean"]})
    return out


def curves(con, names: list[str]) -> list[dict]:
    """Per trial x epoch: losses and validation metrics, with the trial's final status."""
    return _rows(con, """
        SELECT e.study, t.trial_id AS number, t.status, e.epoch, e.loss, e.ce, e.kd, e.feat, e.val_auroc,
               e.val_objective
        FROM epochs e JOIN trials t ON t.study = e.study AND t.trial_id = e.trial_id
        WHERE list_contains(?, e.study) AND NOT t.is_baseline ORDER BY e.study, t.number, e.epoch""", [names])


def gains(con, names: list[str], metric: str | None = None) -> list[dict]:
    """Per recipe x method (x metric, or only ``metric``): the gain over the matched baselines inferred
    over the recipe's seeds (``study.ablation.recipe_gains``: unit, n, t-interval, sign-flip p, Holm;
    a recipe of one seed has only its test images' interval and says so), with the recipe's params."""
    from study.ablation import recipe_gains

    table = recipe_gains(con, names, metric, n_boot=300)
    params = {(s, n): json.loads(p) for s, n, p in con.execute("""
        SELECT study, number, any_value(params_json) FROM trials
        WHERE list_contains(?, study) AND NOT is_baseline GROUP BY ALL""", [names]).fetchall()}
    rows = []
    for r in table.to_dict("records"):
        r["number"] = None if r["number"] is None or r["number"] != r["number"] else int(r["number"])
        r["params"] = params.get((r["study"], r["number"]), {})
        rows.append(r)
    return rows


def pareto(con, names: list[str], metric: str) -> list[dict]:
    """Per completed trial (and baseline): test AUROC against the mean test localization of its
    sampled method (baselines: every method they were scored with)."""
    return _rows(con, """
        SELECT t.study, t.domain, t.trial_id, t.is_baseline, coalesce(t.attention_method, e.method) AS method,
               t.test_auroc, e.mean AS localization
        FROM trials t JOIN evaluation e ON e.study = t.study AND e.trial_id = t.trial_id
        WHERE t.status = 'completed' AND e.metric = ? AND e.method NOT IN ('uniform', 'centre', 'random')
          AND (t.is_baseline AND (list_contains(?, t.study) OR t.config_hash IN
                 (SELECT baseline_key FROM trials WHERE list_contains(?, study)))
               OR NOT t.is_baseline AND list_contains(?, t.study) AND e.method = t.attention_method)
        ORDER BY t.study, t.trial_id, method""", [metric, names, names, names])


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (both maximised)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for x2, y2 in points):
            front.append(i)
    return front


def trend(x, y, log: bool = False, points: int = 40, n_boot: int = 100, seed: int = 0) -> dict | None:
    """A Gaussian-kernel (Nadaraya-Watson) smooth of y against x with a 95% bootstrap band over the
    points; bandwidth a fifth of the x range (on a log scale for log dimensions). None below 4 points."""
    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log else True)
    x, y = x[ok], y[ok]
    if len(x) < 4 or np.ptp(x) == 0:
        return None
    u = np.log(x) if log else x
    grid = np.linspace(u.min(), u.max(), points)
    h = np.ptp(u) / 5

    def smooth(uu, yy):
        w = np.exp(-0.5 * ((grid[:, None] - uu[None, :]) / h) ** 2)
        return (w @ yy) / w.sum(axis=1)

    rng = np.random.default_rng(seed)
    boots = np.array([smooth(u[i], y[i]) for i in (rng.integers(0, len(u), len(u)) for _ in range(n_boot))])
    xs = np.exp(grid) if log else grid
    return {"x": xs.tolist(), "y": smooth(u, y).tolist(), "low": np.quantile(boots, 0.025, axis=0).tolist(),
            "high": np.quantile(boots, 0.975, axis=0).tolist()}


def gallery(con, names: list[str], metric: str, k: int = 3) -> list[dict]:
    """Per domain, the best completed trial (by test objective): its k most improved and k most worsened
    test images in ``metric`` under its sampled method, each with the image, its ROI mask, the
    baseline's map and the distilled student's map. Images are read from the prepared-data cache the
    scores refer to (numpy only); where that cache is gone, ``image`` is None."""
    import numpy as np

    best = _rows(con, """
        SELECT DISTINCT ON (domain) t.study, t.domain, t.trial_id, t.attention_method AS method, t.data_path,
               t.test_objective, b.study AS base_study, b.trial_id AS base_trial
        FROM trials t JOIN (SELECT config_hash, science_version, any_value(study) AS study,
                                   any_value(trial_id) AS trial_id FROM trials
                            WHERE is_baseline AND status = 'completed' GROUP BY config_hash, science_version) b
             ON b.config_hash = t.baseline_key AND b.science_version IS NOT DISTINCT FROM t.science_version
        WHERE list_contains(?, t.study) AND t.status = 'completed' AND NOT t.is_baseline
        ORDER BY domain, t.test_objective DESC NULLS LAST, t.trial_id""", [names])
    out = []
    for tr in best:
        pairs = _rows(con, """
            SELECT l.image_id, l.value, bl.value AS baseline_value, l.value - bl.value AS gain
            FROM localization l JOIN localization bl ON bl.study = ? AND bl.trial_id = ? AND bl.method = l.method
                 AND bl.metric = l.metric AND bl.image_id = l.image_id
            WHERE l.study = ? AND l.trial_id = ? AND l.method = ? AND l.metric = ? AND l.value IS NOT NULL
            ORDER BY gain DESC, l.image_id""",
                      [tr["base_study"], tr["base_trial"], tr["study"], tr["trial_id"], tr["method"], metric])
        picks = pairs[:k] + [p for p in pairs[-k:] if p not in pairs[:k]]
        maps = {(r["trial_id"], r["image_id"]): np.array(r["map"]).reshape(r["h"], r["w"]) for r in _rows(con, """
            SELECT trial_id, image_id, h, w, map FROM maps WHERE method = ? AND list_contains(?, image_id)
              AND ((study = ? AND trial_id = ?) OR (study = ? AND trial_id = ?))""",
            [tr["method"], [p["image_id"] for p in picks], tr["study"], tr["trial_id"], tr["base_study"],
             tr["base_trial"]])}
        images = _load_images(tr["data_path"], [p["image_id"] for p in picks])
        for p in picks:
            img, mask = images.get(p["image_id"], (None, None))
            out.append({"domain": tr["domain"], "study": tr["study"], "trial_id": tr["trial_id"],
                        "method": tr["method"],
                        "image_id": p["image_id"], "value": p["value"], "baseline_value": p["baseline_value"],
                        "gain": p["gain"], "image": img, "mask": mask,
                        "baseline_map": maps.get((tr["base_trial"], p["image_id"])),
                        "trial_map": maps.get((tr["trial_id"], p["image_id"]))})
    return out


def _load_images(data_path: str | None, ids: list[str]) -> dict:
    import os

    import numpy as np

    if data_path and os.path.exists(os.path.join(data_path, "meta.parquet")):  # a real data set's prepared cache
        from mmpkd_core.data.prepared import open_prepared

        images, masks, meta = open_prepared(Path(data_path))
        index = {str(i): n for n, i in enumerate(meta["image_id"])}
        found = [i for i in ids if i in index]
        return {i: (images[index[i], 0] / 255.0, np.asarray(masks[index[i]])) for i in found}
    path = os.path.join(data_path or "", "arrays.npz")
    if not data_path or not os.path.exists(path):
        return {}
    with np.load(path) as z:
        index = {str(i): n for n, i in enumerate(z["image_ids"])}
        rows = [index[i] for i in ids if i in index]
        if "images" in z.files:  # a synthetic cache from before images were streamed from their own files
            images, masks = z["images"][rows, 0], z["masks"][rows]
        else:  # images.npy and masks.npy beside it, read a few rows at a time
            images = np.load(os.path.join(data_path, "images.npy"), mmap_mode="r")[rows, 0]
            masks = np.load(os.path.join(data_path, "masks.npy"), mmap_mode="r")[rows]
            if images.dtype == np.uint8:
                images = images / 255.0
    return {i: (np.asarray(images[n]), np.asarray(masks[n])) for n, i in enumerate(i for i in ids if i in index)}
