"""Data steps of the report: each a query over the store returning plain rows (lists of dicts).

These are what the tests check; the render step only draws them.
"""
from __future__ import annotations

import json


def _rows(con, sql: str, params: list) -> list[dict]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def overview(con, names: list[str]) -> list[dict]:
    """One row per study: domain, status, trial counts by status, wall time, the spec."""
    rows = _rows(con, """
        SELECT s.name, s.domain, s.status, s.wall_seconds, s.spec_json,
               count(t.trial_id) AS trials,
               count(*) FILTER (WHERE t.status = 'completed') AS completed,
               count(*) FILTER (WHERE t.status = 'pruned') AS pruned,
               count(*) FILTER (WHERE t.status = 'failed') AS failed,
               count(*) FILTER (WHERE t.status = 'running') AS running
        FROM studies s LEFT JOIN trials t ON t.study = s.name
        WHERE list_contains(?, s.name) GROUP BY ALL ORDER BY s.name""", [names])
    for r in rows:
        r["spec"] = json.loads(r.pop("spec_json"))
    return rows


def trials(con, names: list[str]) -> list[dict]:
    """One row per trial with its sampled params, objectives and AUROC."""
    rows = _rows(con, """
        SELECT study, domain, trial_id, number, status, params_json, val_objective, test_objective,
               val_auroc, test_auroc, epochs_done, trial_seconds
        FROM trials WHERE list_contains(?, study) ORDER BY study, number""", [names])
    for r in rows:
        r["params"] = json.loads(r.pop("params_json"))
    return rows


def metric_by_dimension(con, names: list[str]) -> list[dict]:
    """Per completed trial x searched dimension x method x metric: the dimension's value and the
    trial's mean localization score on the test images."""
    out = []
    rows = _rows(con, """
        SELECT t.study, t.domain, t.number, t.params_json, e.method, e.metric, e.mean
        FROM trials t JOIN evaluation e ON e.study = t.study AND e.trial_id = t.trial_id
        WHERE list_contains(?, t.study) AND t.status = 'completed' AND e.split = 'test'
        ORDER BY t.study, t.number, e.method, e.metric""", [names])
    for r in rows:
        for dim, value in json.loads(r["params_json"]).items():
            out.append({"study": r["study"], "domain": r["domain"], "number": r["number"], "dimension": dim,
                        "value": value, "method": r["method"], "metric": r["metric"], "score": r["mean"]})
    return out


def curves(con, names: list[str]) -> list[dict]:
    """Per trial x epoch: losses and validation metrics, with the trial's final status."""
    return _rows(con, """
        SELECT e.study, t.number, t.status, e.epoch, e.loss, e.ce, e.kd, e.feat, e.val_auroc, e.val_objective
        FROM epochs e JOIN trials t ON t.study = e.study AND t.trial_id = e.trial_id
        WHERE list_contains(?, e.study) ORDER BY e.study, t.number, e.epoch""", [names])
