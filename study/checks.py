"""Semantic checks of a parsed spec against what the engine knows (domains, teachers, methods,
metrics, models). Each failure is one ``SpecError`` naming the key and the fix."""
from __future__ import annotations

from pathlib import Path

from study.errors import SpecError
from study.space import dependency_order
from study.spec import RANGES, CategoricalDist, Dist, FloatDist, IntDist, StudySpec, nearest, parse_dist

def _known(registry, name: str, where: str) -> None:
    if name not in registry:
        raise SpecError(where, f"unknown {registry.kind} '{name}'{nearest(name, registry.names())}; "
                               f"known: {', '.join(registry.names())}")


def _check_range(name: str, dist: Dist) -> None:
    where = f"search_space.{name}"
    if isinstance(dist, (FloatDist, IntDist)):
        if dist.low > dist.high:
            raise SpecError(where, f"low ({dist.low}) is greater than high ({dist.high}); swap them")
        if dist.log and dist.low <= 0:
            raise SpecError(f"{where}.low", f"log: true needs low > 0 (got {dist.low})")
        if dist.step is not None and dist.step <= 0:
            raise SpecError(f"{where}.step", f"step must be positive (got {dist.step})")
        values = [dist.low, dist.high]
    else:
        if not dist.choices:
            raise SpecError(f"{where}.choices", "is empty; list at least one choice")
        values = [c for c in dist.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
    lo, hi, inclusive = RANGES.get(name, (None, None, True))
    for v in values:
        if (lo is not None and (v < lo if inclusive else v <= lo)) or (hi is not None and v > hi):
            bound = f"{'[' if inclusive else '('}{lo}, {hi if hi is not None else 'inf'}]"
            raise SpecError(where, f"{name} must lie in {bound} (got {v})")


def check_spec(spec: StudySpec) -> None:
    from mmpkd_core.attention import METHODS
    from mmpkd_core.config import SEARCHABLE
    from mmpkd_core.data import DOMAINS
    from mmpkd_core.localization import METRICS
    from mmpkd_core.teachers import TEACHERS

    _known(DOMAINS, spec.domain, "domain")
    modality = DOMAINS.get(spec.domain).modality
    _check_data(spec, DOMAINS.get(spec.domain))

    dims: dict[str, Dist] = {}
    for name, raw in spec.search_space.items():
        if name not in SEARCHABLE:
            raise SpecError(f"search_space.{name}", f"unknown dimension{nearest(name, SEARCHABLE)}; "
                                                    f"known: {', '.join(SEARCHABLE)}")
        dims[name] = parse_dist(name, raw)
        _check_range(name, dims[name])

    def fits(name: str, where: str) -> None:
        _known(TEACHERS, name, where)
        if TEACHERS.get(name).modality not in ("any", modality):
            fitting = [t for t in TEACHERS.names() if TEACHERS.get(t).modality in ("any", modality)]
            raise SpecError(where, f"teacher '{name}' reads {TEACHERS.get(name).modality} but domain "
                                   f"'{spec.domain}' has {modality}; use one of: {', '.join(fitting)}")

    if "teacher" in dims:
        if not isinstance(dims["teacher"], CategoricalDist):
            raise SpecError("search_space.teacher.type", "must be categorical")
        for i, t in enumerate(dims["teacher"].choices):
            fits(str(t), f"search_space.teacher.choices[{i}]")
    if spec.recipe.teacher is not None:
        fits(spec.recipe.teacher, "recipe.teacher")
    for name, opts in spec.teacher_options.items():
        _known(TEACHERS, name, f"teacher_options.{name}")
        _check_teacher_options(name, TEACHERS.get(name), opts)
    chosen = dims["teacher"].choices if "teacher" in dims else [spec.recipe.teacher] if spec.recipe.teacher else []
    for t in chosen:
        name = TEACHERS.get(str(t)).reference or str(t)  # a matched control reads its reference's options
        if TEACHERS.get(name).Options is not None and name not in spec.teacher_options:
            _check_teacher_options(name, TEACHERS.get(name), {})  # required options missing
    for i, m in enumerate(spec.evaluation.methods):
        _known(METHODS, m, f"evaluation.methods[{i}]")
    if not spec.evaluation.methods:
        raise SpecError("evaluation.methods", "is empty; list at least one attention method")
    for i, m in enumerate(spec.evaluation.metrics):
        _known(METRICS, m, f"evaluation.metrics[{i}]")
    if "attention_method" in dims:
        if not isinstance(dims["attention_method"], CategoricalDist):
            raise SpecError("search_space.attention_method.type", "must be categorical")
        for i, m in enumerate(dims["attention_method"].choices):
            _known(METHODS, str(m), f"search_space.attention_method.choices[{i}]")
    if spec.recipe.attention_method is not None:
        _known(METHODS, spec.recipe.attention_method, "recipe.attention_method")
    _known(METRICS, spec.objective.metric, "objective.metric")
    if spec.objective.metric not in spec.evaluation.metrics:
        raise SpecError("objective.metric", f"'{spec.objective.metric}' is not in evaluation.metrics; add it there")
    for name, dist in dims.items():
        for dep, val in (dist.when or {}).items():
            where = f"search_space.{name}.when.{dep}"
            if dep not in dims or dep == name:
                raise SpecError(where, f"'{dep}' is not a searched dimension"
                                       f"{nearest(dep, [d for d in dims if d != name])}")
            wanted = val if isinstance(val, list) else [val]
            if isinstance(dims[dep], CategoricalDist):
                bad = [w for w in wanted if w not in dims[dep].choices]
                if bad:
                    raise SpecError(where, f"{bad[0]!r} is not among the choices of '{dep}': {dims[dep].choices}")
    dependency_order(dims)
    if spec.executor.sampler == "grid":
        size = 1
        for name, dist in dims.items():
            if not isinstance(dist, CategoricalDist) or dist.when:
                raise SpecError(f"search_space.{name}", "a grid sampler needs categorical dimensions without 'when:'")
            size *= len(dist.choices)
        if spec.executor.trials != size:
            raise SpecError("executor.trials", f"a grid over {', '.join(dims) or 'nothing'} has {size} points; "
                                               f"set trials: {size}")
    from study.design import check_design

    check_design(spec, fits)
    if spec.seeds is not None and (not spec.seeds or len(set(spec.seeds)) != len(spec.seeds)):
        raise SpecError("seeds", "must list distinct seeds, at least one (e.g. seeds: [0, 1, 2])")
    if spec.seeds and "seed" in dims:
        raise SpecError("search_space.seed", "cannot be searched when 'seeds:' is given; keep one of them")
    _check_student(spec)


def _check_student(spec: StudySpec) -> None:
    import timm

    s = spec.student
    if not timm.is_model(s.model):
        close = nearest(s.model, timm.list_models("vit_*"))
        raise SpecError("student.model", f"unknown timm model '{s.model}'{close}")
    if s.pretrained and not Path(s.pretrained).expanduser().is_file():
        raise SpecError("student.pretrained", f"{s.pretrained} does not exist (a local timm checkpoint: nothing is "
                                              "downloaded)")
    if spec.data.image_size % s.patch_size:
        raise SpecError("student.patch_size", f"{s.patch_size} does not divide data.image_size {spec.data.image_size}")
    if s.embed_dim % s.num_heads:
        raise SpecError("student.num_heads", f"{s.num_heads} does not divide student.embed_dim {s.embed_dim}")


def _check_data(spec, domain) -> None:
    """A real domain's root exists and its options are the domain's; a synthetic one takes none."""
    d = spec.data
    if not domain.is_real:
        for key in ("options", "root"):
            if getattr(d, key):
                raise SpecError(f"data.{key}", f"applies to the real domains only; {spec.domain} is synthetic")
        return
    root = Path(d.root).expanduser()
    if not root.is_dir():
        raise SpecError("data.root", f"{root} does not exist or is not a folder")
    _check_options(domain.options, d.options, "data.options", spec.domain, spec.domain)


def _check_teacher_options(name: str, cls, opts: dict) -> None:
    if cls.Options is None:
        raise SpecError(f"teacher_options.{name}", f"teacher '{name}' takes no options")
    _check_options(cls.Options, opts, f"teacher_options.{name}", name, f"teacher '{name}'")


def _check_options(model, opts: dict, where: str, owner: str, needer: str) -> None:
    """``opts`` against an options model, the first problem as one line at ``where.<key>``."""
    from pydantic import ValidationError

    try:
        model.model_validate(opts)
    except ValidationError as err:
        e = err.errors()[0]
        at = ".".join([where, *map(str, e["loc"])])
        if e["type"] == "extra_forbidden":
            raise SpecError(at, f"unknown option; {owner} takes: {', '.join(model.model_fields)}") from None
        if e["type"] == "missing":
            raise SpecError(at, f"missing: {needer} needs it") from None
        raise SpecError(at, f"{e['msg'][0].lower()}{e['msg'][1:]}") from None
