"""The distillation loss, with its named parts returned separately for logging.

    L = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + beta * L_feat

``L_feat`` is the mean squared error between the student's embedding, projected by a learned
linear map, and the teacher's embedding standardised per dimension on the training split.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(
    student_logits: torch.Tensor,  # (B, C)
    labels: torch.Tensor,  # (B,)
    teacher_logits: torch.Tensor | None = None,  # (B, C)
    temperature: float = 1.0,
    alpha: float = 0.0,
    beta: float = 0.0,
    student_feat: torch.Tensor | None = None,  # (B, D_t), already projected
    teacher_feat: torch.Tensor | None = None,  # (B, D_t)
) -> dict[str, torch.Tensor]:
    ce = F.cross_entropy(student_logits, labels)
    zero = student_logits.new_zeros(())
    kd, feat = zero, zero
    if alpha > 0:
        if teacher_logits is None:
            raise ValueError("alpha > 0 needs teacher logits")
        T = temperature
        kd = (T * T) * F.kl_div(
            F.log_softmax(student_logits / T, dim=-1),
            F.log_softmax(teacher_logits / T, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
    if beta > 0:
        if student_feat is None or teacher_feat is None:
            raise ValueError("beta > 0 needs student and teacher features")
        feat = F.mse_loss(student_feat, teacher_feat)
    total = (1.0 - alpha) * ce + alpha * kd + beta * feat
    return {"loss": total, "ce": ce, "kd": kd, "feat": feat}
