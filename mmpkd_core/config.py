"""The typed, frozen config between a spec and the science; stored with every result."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Ge, Gt

from mmpkd_core.data.base import DataConfig
from mmpkd_core.hashing import stable_hash


@dataclass(frozen=True)
class StudentConfig:
    """The student and its training. Each field is declared here once, with its bounds (``annotated_types``)
    beside it: a study spec's ``student`` section (``study.spec.StudentSpec``) is generated from these
    fields, and a search space's range check (``study.spec.RANGES``) reads the same bounds."""

    model: str = "vit_tiny_patch16_224"  # a timm model name; the fields below override its shape
    patch_size: Annotated[int, Ge(1)] = 8
    embed_dim: Annotated[int, Ge(8)] = 64
    depth: Annotated[int, Ge(1)] = 3
    num_heads: Annotated[int, Ge(1)] = 4
    epochs: Annotated[int, Ge(1)] = 10
    batch_size: Annotated[int, Ge(1)] = 32
    lr: Annotated[float, Gt(0)] = 1e-3
    weight_decay: Annotated[float, Ge(0)] = 0.05
    warmup_epochs: Annotated[int, Ge(0)] = 1
    precision: Literal["fp32", "bf16"] = "fp32"  # "bf16": autocast on a GPU (the CPU trains in fp32)
    pretrained: str | None = None  # a local timm checkpoint (.pth / .safetensors) to start from


@dataclass(frozen=True)
class TrialConfig:
    """One recipe on one domain with one seed."""

    domain: str
    data: DataConfig = field(default_factory=DataConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: str = "none"
    temperature: float = 4.0
    alpha: float = 0.0  # weight of logit distillation; 0 with beta 0 is the no-distillation baseline
    beta: float = 0.0  # weight of feature distillation
    attention_method: str = "rollout"  # decides the objective; every eval method is scored anyway
    seed: int = 0
    eval_methods: tuple[str, ...] = ("raw_cls", "rollout")
    eval_metrics: tuple[str, ...] = ("pointing_game", "relevance_mass")
    objective_metric: str = "pointing_game"
    teacher_options: str = "{}"  # sorted JSON: teacher name -> its options (a spec's teacher_options)
    cache_dir: str | None = None  # where prepared data and fitted teachers live (not part of the hash)
    threads: int | None = None  # torch CPU threads in this trial (not part of the hash)

    @property
    def is_baseline(self) -> bool:
        return self.alpha == 0.0 and self.beta == 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrialConfig":
        d = dict(d)
        d["data"] = DataConfig(**d.get("data", {}))
        d["student"] = StudentConfig(**d.get("student", {}))
        for k in ("eval_methods", "eval_metrics"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def config_hash(self) -> str:
        d = self.to_dict()
        d.pop("cache_dir"), d.pop("threads")
        d["data"] = self.data.identity()  # fields added later hash only when set: stored baselines stay matched
        return stable_hash(d, [("teacher_options", "{}"), ("student.pretrained", None)])

    def with_params(self, params: dict) -> "TrialConfig":
        """A copy with search dimensions set; student fields are addressed by their own names."""
        student_fields = {f.name for f in dataclasses.fields(StudentConfig)}
        top = {k: v for k, v in params.items() if k not in student_fields}
        stu = {k: v for k, v in params.items() if k in student_fields}
        return dataclasses.replace(self, student=dataclasses.replace(self.student, **stu), **top)


TOP_DIMENSIONS = ("teacher", "temperature", "alpha", "beta", "attention_method", "seed")
STUDENT_DIMENSIONS = tuple(f.name for f in dataclasses.fields(StudentConfig)
                           if f.name not in ("model", "precision", "pretrained"))
SEARCHABLE = TOP_DIMENSIONS + STUDENT_DIMENSIONS
