import json
from pathlib import Path

import pytest
import torch

from mmpkd_core.losses import kd_loss

CASES = json.loads((Path(__file__).parents[1] / "fixtures" / "losses.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
def test_kd_loss_golden_values(case):
    def t(k):
        return torch.tensor(case[k], dtype=torch.float64) if k in case else None

    parts = kd_loss(t("student"), torch.tensor(case["labels"]), t("teacher"), case["T"], case["alpha"], case["beta"],
                    t("student_feat"), t("teacher_feat"))
    for k in ("ce", "kd", "feat", "loss"):
        assert parts[k].item() == pytest.approx(case[k], abs=1e-8), k


def test_kd_term_scales_with_temperature_squared_and_gradient_flows():
    s = torch.tensor([[0.3, -0.2], [1.0, 0.5]], requires_grad=True)
    tch = torch.tensor([[-1.0, 1.0], [0.2, 0.1]])
    y = torch.tensor([0, 1])
    p = kd_loss(s, y, tch, temperature=4.0, alpha=1.0)
    manual = 16 * torch.nn.functional.kl_div(torch.log_softmax(s / 4, -1), torch.softmax(tch / 4, -1),
                                             reduction="batchmean")
    assert p["kd"].item() == pytest.approx(manual.item(), rel=1e-5)
    p["loss"].backward()
    assert s.grad.abs().sum() > 0


def test_distillation_without_teacher_is_an_error():
    with pytest.raises(ValueError, match="teacher logits"):
        kd_loss(torch.zeros(1, 2), torch.tensor([0]), alpha=0.5)
