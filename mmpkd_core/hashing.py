"""One hash for every stored key (a spec, a trial config, a data set, a teacher's outputs), and the one
rule for a field added after records were stored under the old keys: it is left out of the hash while
it holds the value that the records made before it implicitly had, so those keep their key."""
from __future__ import annotations

import hashlib
import json


def without_defaults(d: dict, later: list[tuple[str, object]]) -> dict:
    """A copy of ``d`` without each field of ``later`` (a dotted path, the value it had before it was
    added) that holds that value."""
    out = json.loads(json.dumps(d))  # a deep copy of plain data
    for path, default in later:
        *parents, key = path.split(".")
        where = out
        for p in parents:
            where = where.get(p) if isinstance(where, dict) else None
        if isinstance(where, dict) and key in where and where[key] == default:
            del where[key]
    return out


def stable_hash(d, later: list[tuple[str, object]] = (), suffix: str = "") -> str:
    """The first 16 hex digits of the SHA-256 of ``d`` as JSON with sorted keys, the fields of ``later``
    left out while they hold their earlier value (see ``without_defaults``), and ``suffix`` appended to
    that JSON text (a real data set's fingerprint: ``DataConfig.key``)."""
    blob = without_defaults(d, list(later)) if later else d
    return hashlib.sha256((json.dumps(blob, sort_keys=True) + suffix).encode()).hexdigest()[:16]
