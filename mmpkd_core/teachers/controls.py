"""Control teachers that carry no privileged information, so that a gain can be attributed.

Soft targets regularise a student by themselves; a privileged teacher's gain counts only beside
the gain of these controls:

- ``label_smoothing``: soft targets built from the training labels alone (1 - eps on the given
  label, eps spread over the rest), at whatever temperature the recipe uses. Its "predictions" for
  validation and test images read their labels too, so its reported AUROC is 1 by construction.
- ``image_self``: a teacher that sees only the image (self-distillation): a ViT of the student's
  default shape trained on the training images and labels, its training-image logits cross-fitted
  like every teacher's. Its embedding is its pooled image feature.
"""
from __future__ import annotations

import numpy as np
import torch

from mmpkd_core.data.base import DomainData
from mmpkd_core.teachers.base import TEACHERS, Teacher


@TEACHERS.register("label_smoothing")
class LabelSmoothingTeacher(Teacher):
    modality = "any"
    folds = 0  # nothing is fitted: no cross-fitting
    eps = 0.1

    def fit(self, data: DomainData) -> None:
        pass

    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        onehot = np.eye(2, dtype=np.float32)[data.labels]
        probs = (1 - self.eps) * onehot + self.eps / 2
        return np.log(probs), onehot


@TEACHERS.register("image_self")
class ImageSelfTeacher(Teacher):
    modality = "any"
    folds = 3  # each fold trains a ViT: fewer folds than the cheap teachers
    epochs = 10

    def fit(self, data: DomainData) -> None:
        from mmpkd_core.config import StudentConfig, TrialConfig
        from mmpkd_core.trainer import to_tensors, train

        cfg = TrialConfig(domain=data.domain, student=StudentConfig(epochs=self.epochs), seed=self.seed)
        self.tensors = to_tensors(data, None, torch.device("cpu"))
        self.model, _ = train(cfg, data, self.tensors)

    @torch.no_grad()
    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        from mmpkd_core.student import forward_with_features

        self.model.eval()
        logits, feats = zip(*(forward_with_features(self.model, b) for b in self.tensors.x.split(256)))
        return torch.cat(logits).numpy(), torch.cat(feats).numpy()
