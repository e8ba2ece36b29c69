"""The pre-flight memory estimate (mmpkd_core.memory): numbers on hand-set sizes, and the one line."""
import numpy as np
import pytest
import torch

from mmpkd_core import StudentConfig, TrialConfig
from mmpkd_core.data.base import DomainData
from mmpkd_core.memory import MB, RUNTIME_MB, check, estimate, student_numbers
from mmpkd_core.student import build_student

STUDENT = StudentConfig(patch_size=16, embed_dim=64, depth=3, num_heads=4, batch_size=32)


def test_student_numbers_match_the_built_model():
    params, tokens = student_numbers(STUDENT, 224)
    torch.manual_seed(0)
    assert params == sum(p.numel() for p in build_student(STUDENT, 224).parameters())
    assert tokens == 14 * 14 + 1


def test_only_the_per_image_arrays_grow_with_the_data_set():
    cfg = TrialConfig(domain="mimic_cxr", student=STUDENT)
    small, big = estimate(cfg, 5_000, 224, 1500.0), estimate(cfg, 50_000, 224, 1500.0)
    assert small.parts["runtime"] == RUNTIME_MB
    for k in ("runtime", "students", "batches"):
        assert small.parts[k] == big.parts[k]
    per_image = 64 + 1500.0 + (2 + 2 * 768) * 4  # ids and labels, reports, teacher logits and embedding (2 copies)
    assert big.host_mb - small.host_mb == pytest.approx(45_000 * per_image / MB)
    params = student_numbers(STUDENT, 224)[0]
    two = estimate(cfg, 5_000, 224, 1500.0, seeds=2)  # seeds of a recipe train in one process
    assert two.parts["students"] == pytest.approx(2 * small.parts["students"])
    assert small.parts["students"] > params * 16 / MB  # weights, gradients and AdamW's moments, plus activations


def data_of(n: int, size: int) -> DomainData:
    return DomainData("blob", "text", np.zeros((n, 1, size, size), np.float32), np.zeros(n, np.int64),
                      np.zeros(n, np.int64), np.zeros((n, size, size), bool), np.array(["train"] * n),
                      np.arange(n).astype(str), text=["x" * 100] * n)


def test_check_names_the_numbers_and_the_knobs_when_the_trials_cannot_fit():
    cfg = TrialConfig(domain="mimic_cxr", student=STUDENT)
    est, problem = check(cfg, data_of(10, 224), concurrent=4, node_mb=2048.0)
    assert problem == (f"4 trial(s) at once need about {4 * est.host_mb / 1024:,.1f} GB of memory (4 x "
                       f"{est.host_mb:,.0f} MB: {est.describe()}) but this node has 2.0 GB available: lower "
                       "student.batch_size, data.image_size or the student's size, run fewer trials at once "
                       "(executor.max_concurrent) or take a subset (data.options.max_train)")
    assert check(cfg, data_of(10, 224), concurrent=1, node_mb=64 * 1024.0)[1] is None
    _, gpu = check(cfg, data_of(10, 224), concurrent=1, node_mb=64 * 1024.0, gpu_share=0.01, gpu_mb=1024.0)
    assert gpu.startswith("a trial needs about ") and "(executor.resources.gpu 0.01) of a 1 GB GPU is 10 MB" in gpu
