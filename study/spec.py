"""The study spec's pydantic models (unknown keys rejected), their hashes, and pydantic's errors
turned into one line. ``study.load`` reads a YAML file into them and runs the semantic checks.

The ``data`` and ``student`` sections are generated from ``mmpkd_core``'s frozen dataclasses
(``DataConfig``, ``StudentConfig``), where each field is declared once with its bounds beside it; the
search space's valid ranges (``RANGES``) are read from the same bounds.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model
from pydantic.fields import FieldInfo

from mmpkd_core.config import SEARCHABLE, TOP_DIMENSIONS, StudentConfig
from mmpkd_core.data.base import DataConfig
from mmpkd_core.hashing import stable_hash
from study.errors import SpecError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def section_of(config: type, name: str, /, **overrides: tuple[Any, Any]) -> type[Strict]:
    """A spec section's model with the fields of the frozen dataclass ``config``: the same names in the
    same order, the same types with their bounds (``Annotated`` metadata) and the same defaults, except
    ``overrides`` (field name -> (type, default)), the fields that a spec writes in another form."""
    hints = typing.get_type_hints(config, include_extras=True)
    fields = {}
    for f in dataclasses.fields(config):
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{config.__name__}.{f.name} has no plain default")
        fields[f.name] = overrides.pop(f.name) if f.name in overrides else (hints[f.name], f.default)
    if overrides:
        raise TypeError(f"{config.__name__} has no field {', '.join(overrides)}")
    return create_model(name, __base__=Strict, __module__=__name__, **fields)


# A spec's ``data`` section: mmpkd_core's DataConfig. Real domains (cbis_ddsm, mimic_cxr): ``root`` is the
# data set's folder -- ``${VAR}`` reads an environment variable; empty or unset runs the domain's synthetic
# stand-in -- and ``options`` the domain's options, a mapping here (DataConfig holds them as sorted JSON:
# ``DataConfig.from_section``).
DataSpec = section_of(DataConfig, "DataSpec", options=(dict[str, Any], {}))
# A spec's ``student`` section: mmpkd_core's StudentConfig, as it is.
StudentSpec = section_of(StudentConfig, "StudentSpec")


class RecipeSpec(Strict):
    """Values of the recipe dimensions that the search space does not sample."""

    teacher: str | None = None  # default: the first teacher that fits the domain
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    beta: float = Field(0.0, ge=0)
    attention_method: str | None = None  # default: the first evaluation method
    seed: int = 0


Scalar = Union[bool, int, float, str]


class _Dist(Strict):
    when: dict[str, Union[Scalar, list[Scalar]]] | None = None


class FloatDist(_Dist):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None


class IntDist(_Dist):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1


class CategoricalDist(_Dist):
    type: Literal["categorical"]
    choices: list[Scalar]


Dist = Union[FloatDist, IntDist, CategoricalDist]
DIST_TYPES = {"float": FloatDist, "int": IntDist, "categorical": CategoricalDist}


class ObjectiveSpec(Strict):
    metric: str = "pointing_game"
    mode: Literal["max", "min"] = "max"


class EvaluationSpec(Strict):
    methods: list[str] = ["raw_cls", "rollout"]
    metrics: list[str] = ["pointing_game", "relevance_mass"]


class ResourcesSpec(Strict):
    cpu: float = Field(1, gt=0)
    gpu: float = Field(0, ge=0)


class ExecutorSpec(Strict):
    kind: Literal["ray", "local"] = "ray"
    sampler: Literal["tpe", "grid"] = "tpe"  # grid: every combination of the categorical dimensions, once
    trials: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(2, ge=1)  # epochs every trial runs before ASHA may stop it
    # recipes are sampled in batches of this size, each batch from the results of the batches before:
    # the sequence of recipes is then the same whatever max_concurrent is (max_concurrent <= this)
    sample_batch: int = Field(4, ge=1)
    # a batch is sampled once the batches up to this many before it have finished (0: the one just before):
    # 1 lets the next batch start while a batch's slowest recipe still runs, at the price of sampling it
    # without that batch's results; the sequence stays the same whatever max_concurrent is
    sample_lag: int = Field(0, ge=0)
    max_failures: int | None = Field(None, ge=0)  # stop the study once more trials than this have failed
    # a trial whose worker process or node died is run again from its first epoch, this many times (Ray
    # Tune's FailureConfig.max_failures); an error the trial itself raises is recorded, never retried
    max_retries: int = Field(1, ge=0)
    storage: str | None = None  # Ray's trial artifacts; on a cluster, a path every node can reach
    seed: int = 0
    resources: ResourcesSpec = ResourcesSpec()


class MlflowSpec(Strict):
    tracking_uri: str = "sqlite:///mlflow.db"  # a relative SQLite path is taken from the working directory
    experiment: str | None = None  # default: the study's name


class TrackingSpec(Strict):
    """Experiment trackers written beside the store: MLflow runs and TensorBoard event files (the Ray
    executor's own logger callbacks, or the same records from the local executor). Changes no result,
    so it is no part of the spec's hash."""

    mlflow: MlflowSpec | None = None
    tensorboard: bool = False


class AblationSpec(Strict):
    """``design: ablation``: a reference recipe (values, or ``{best_of: STUDY}``: the best completed
    recipe of a stored optimise study) and the factors changed from it, one at a time or crossed."""

    reference: dict[str, Scalar]
    factors: dict[str, list[Scalar]]
    mode: Literal["one_at_a_time", "factorial"] = "one_at_a_time"


class StudySpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    domain: str
    data: DataSpec = DataSpec()
    student: StudentSpec = StudentSpec()
    recipe: RecipeSpec = RecipeSpec()
    search_space: dict[str, dict[str, Any]] = {}
    objective: ObjectiveSpec = ObjectiveSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    executor: ExecutorSpec = ExecutorSpec()
    seeds: list[int] | None = None  # each sampled recipe is trained once per seed (default: recipe.seed)
    baselines: bool = True  # run the matched no-distillation baselines (reused across studies)
    teacher_options: dict[str, dict[str, Any]] = {}  # teacher name -> its options, e.g. hf_encoder: {model_path: DIR}
    # optimize: TPE + ASHA, finds a good recipe; sensitivity: scrambled Sobol recipes, every one completed;
    # ablation: a reference recipe and one change at a time (or a factorial), every cell completed
    design: Literal["optimize", "sensitivity", "ablation"] = "optimize"
    ablation: AblationSpec | None = None
    tracking: TrackingSpec = TrackingSpec()
    _stand_in_for: str | None = PrivateAttr(None)  # the real domain this synthetic one replaces (no data.root)
    _recipes: list[dict] | None = PrivateAttr(None)  # a fixed design's recipes, in order (study.design.resolved)

    @property
    def stand_in_for(self) -> str | None:
        return self._stand_in_for

    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds else [self.recipe.seed]

    @property
    def recipes(self) -> list[dict] | None:
        return self._recipes

    def scheduler(self) -> str:
        """The scheduler that runs: only an optimise study stops recipes early."""
        return self.executor.scheduler if self.design == "optimize" else "fifo"

    def dims(self) -> dict[str, Dist]:
        """The parsed search space (``load_spec`` has validated it)."""
        return {k: DIST_TYPES[v["type"]].model_validate(v) for k, v in self.search_space.items()}

    def spec_hash(self) -> str:
        d = self.model_dump(mode="json")
        del d["tracking"]  # where results are mirrored changes no result: a study resumes under other trackers
        return stable_hash(d, LATER_FIELDS)  # hashed only when set: studies stored before them still resume


def valid_range(field: FieldInfo) -> tuple | None:
    """A field's bounds as (low, high, low inclusive), None where it has none; each bound in the field's
    own type (``[8, inf]`` for an int, ``(0.0, inf]`` for a float), the high bound inclusive."""
    low = high = None
    inclusive = True
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            low = m.ge
        elif isinstance(m, annotated_types.Gt):
            low, inclusive = m.gt, False
        elif isinstance(m, annotated_types.Le):
            high = m.le
        elif isinstance(m, annotated_types.Lt):
            raise TypeError("an exclusive upper bound (lt) has no form in RANGES; use le")
    if low is None and high is None:
        return None
    kind = field.annotation if field.annotation in (int, float) else (lambda v: v)
    return (None if low is None else kind(low), None if high is None else kind(high), inclusive)


# valid range per numeric dimension: (low, high, low inclusive); the recipe's from RecipeSpec, the
# student's from StudentConfig (through StudentSpec)
RANGES = {name: r for name in SEARCHABLE
          if (r := valid_range((RecipeSpec if name in TOP_DIMENSIONS else StudentSpec).model_fields[name]))}


LATER_FIELDS = [("data.shortcut", 0.0), ("data.root", None), ("data.options", {}), ("data.skip_bad", False),
                ("student.pretrained", None), ("teacher_options", {}), ("design", "optimize"), ("ablation", None),
                ("executor.max_retries", 1), ("executor.sample_lag", 0)]


# ---------------------------------------------------------------- pydantic errors -> one line

def nearest(word: str, known) -> str:
    close = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Names of the keys valid at ``loc`` (a path into ``model``)."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            current = field.annotation if field else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        while typing.get_origin(current) in (Union, getattr(__import__("types"), "UnionType", Union)):
            current = next(a for a in typing.get_args(current) if a is not type(None))
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _key(part) -> str:
    """A path element as written in a message: plain names as they are, anything odd quoted."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def translate(err: ValidationError, model: type[BaseModel], prefix: tuple = ()) -> SpecError:
    errors = err.errors()
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])  # a typo explains a "missing"
    loc = prefix + tuple(e["loc"])
    where = ".".join(_key(p) for p in loc)
    if e["type"] == "extra_forbidden":
        return SpecError(where, f"unknown key{nearest(loc[-1], _fields_at(model, tuple(e['loc'])[:-1]))}")
    if e["type"] == "missing":
        return SpecError(where, "missing required key")
    got = e.get("input")
    shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
    return SpecError(where, f"{e['msg'][0].lower()}{e['msg'][1:]}{shown}")


# ---------------------------------------------------------------- loading

def parse_dist(name: str, raw: Any) -> Dist:
    where = f"search_space.{name}"
    if not isinstance(raw, dict):
        raise SpecError(where, "must be a mapping with a 'type' (float, int or categorical)")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in DIST_TYPES:
        raise SpecError(f"{where}.type", f"must be one of float, int, categorical (got {kind!r})")
    model = DIST_TYPES[kind]
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        return _raise(translate(err, model, ("search_space", name)))


def _raise(e: Exception):
    raise e
