"""The spec's fixed part as the trainer's ``TrialConfig``: what every trial of a study starts from
before its sampled recipe is applied."""
from __future__ import annotations

import json
from pathlib import Path

from study.spec import StudySpec


def base_config(spec: StudySpec, cache_dir: str):
    from mmpkd_core import DataConfig, StudentConfig, TrialConfig
    from mmpkd_core.data import DOMAINS
    from mmpkd_core.teachers import TEACHERS

    modality = DOMAINS.get(spec.domain).modality
    student = spec.student.model_dump()
    if student["pretrained"]:  # absolute: Ray workers run elsewhere
        student["pretrained"] = str(Path(student["pretrained"]).expanduser().resolve())
    teacher = spec.recipe.teacher or next(t for t in TEACHERS.names() if TEACHERS.get(t).modality == modality)
    return TrialConfig(
        domain=spec.domain, data=DataConfig.from_section(**spec.data.model_dump()), student=StudentConfig(**student),
        teacher=teacher, temperature=spec.recipe.temperature, alpha=spec.recipe.alpha, beta=spec.recipe.beta,
        attention_method=spec.recipe.attention_method or spec.evaluation.methods[0], seed=spec.recipe.seed,
        eval_methods=tuple(spec.evaluation.methods), eval_metrics=tuple(spec.evaluation.metrics),
        objective_metric=spec.objective.metric, teacher_options=json.dumps(teacher_options(spec), sort_keys=True),
        cache_dir=cache_dir, threads=max(1, int(spec.executor.resources.cpu)),
    )


def teacher_options(spec: StudySpec) -> dict:
    """The spec's teacher options with local paths made absolute (Ray workers run elsewhere)."""
    out = {}
    for name, opts in spec.teacher_options.items():
        out[name] = {k: str(Path(v).expanduser().resolve()) if k.endswith("_path") and v else v
                     for k, v in opts.items()}
    return out
