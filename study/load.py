"""Loading a study spec: YAML -> environment and real-data resolution -> the pydantic models of
``study.spec`` (unknown keys rejected) -> the semantic checks of ``study.checks`` and
``study.design``. Every error is a ``SpecError`` naming the dotted path of the offending key,
raised before any data is prepared or any trial is trained.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from study.checks import check_spec
from study.errors import SpecError
from study.spec import StudySpec, translate


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise SpecError("", f"spec file '{path}' not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError("", f"YAML syntax error at {line}{problem}", source=str(path)) from None


def load_spec(path: str | Path) -> StudySpec:
    """A single-domain spec (see ``load_specs`` for cross-domain ones)."""
    specs = load_specs(path)
    if len(specs) != 1:
        raise SpecError("domain", "is a list; load it with load_specs", source=str(path))
    return specs[0]


def load_specs(path: str | Path, name: str | None = None) -> list[StudySpec]:
    """One spec per domain: a spec whose ``domain`` is a list (a cross-domain study) expands into
    one study per domain, named ``<name>-<domain>``, each with the teacher choices that
    ``teachers: {domain: [...]}`` gives it; all are validated before any is run. ``name``
    replaces the spec's name."""
    path = Path(path)
    raw = _read_yaml(path)
    if name is not None and isinstance(raw, dict):
        raw = {**raw, "name": name}
    try:
        return [spec_from_dict(r) for r in expand_domains(raw)]
    except SpecError as err:
        raise SpecError(err.where, err.message, source=str(path)) from None


def expand_domains(raw: Any) -> list[Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("domain"), list):
        if isinstance(raw, dict) and "teachers" in raw:
            raise SpecError("teachers", "per-domain teachers need a list of domains (domain: [a, b])")
        return [raw]
    domains, teachers = raw["domain"], raw.get("teachers") or {}
    if not domains or not all(isinstance(d, str) for d in domains):
        raise SpecError("domain", "must be a domain name or a non-empty list of domain names")
    if not isinstance(teachers, dict) or set(teachers) - set(domains):
        extra = sorted(set(teachers) - set(domains)) if isinstance(teachers, dict) else ["?"]
        raise SpecError(f"teachers.{extra[0]}", f"is not one of the study's domains: {', '.join(domains)}")
    out = []
    for d in domains:
        one = {k: v for k, v in raw.items() if k != "teachers"}
        one["domain"] = d
        one["name"] = f"{raw.get('name')}-{d.removeprefix('synthetic_')}"
        if d in teachers:
            space = dict(one.get("search_space") or {})
            space["teacher"] = {"type": "categorical", "choices": teachers[d]}
            one["search_space"] = space
        out.append(one)
    return out


ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(text: str) -> str:
    """``${VAR}`` -> the variable's value ("" when unset)."""
    return ENV_VAR.sub(lambda m: os.environ.get(m.group(1), ""), text)


def resolve_real_domain(raw: dict) -> tuple[dict, str | None]:
    """Expand ``data.root``; a real domain without a root becomes its synthetic stand-in, with the
    spec's ``stand_in`` sections (e.g. smaller images and student) merged over its own."""
    from mmpkd_core.data import DOMAINS

    raw = dict(raw)
    stand_in = raw.pop("stand_in", None)
    if stand_in is not None and (not isinstance(stand_in, dict) or
                                 not all(isinstance(v, dict) for v in stand_in.values())):
        raise SpecError("stand_in",
                        "must be a mapping of spec sections (data:, student:, ...) for the synthetic stand-in")
    data = raw.get("data")
    root = data.get("root") if isinstance(data, dict) else None
    if isinstance(root, str):
        root = expand_env(root).strip() or None
        raw["data"] = {**data, "root": root}
    domain = raw.get("domain")
    if not (isinstance(domain, str) and domain in DOMAINS and DOMAINS.get(domain).is_real and root is None):
        return raw, None
    if isinstance(raw.get("data"), dict):
        raw["data"] = {k: v for k, v in raw["data"].items() if k not in ("root", "options", "skip_bad")}
    for section, values in (stand_in or {}).items():
        raw[section] = {**raw[section], **values} if isinstance(raw.get(section), dict) else values
    raw["domain"] = DOMAINS.get(domain).synthetic
    return raw, domain


def spec_from_dict(raw: Any) -> StudySpec:
    if not isinstance(raw, dict):
        raise SpecError("", "the spec must be a YAML mapping (name:, domain:, search_space:, ...)")
    raw, stand_in_for = resolve_real_domain(raw)
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as err:
        raise translate(err, StudySpec) from None
    check_spec(spec)
    spec._stand_in_for = stand_in_for
    return spec
