"""Control teachers that carry no privileged information, so that a gain can be attributed.

Soft targets regularise a student by themselves; a privileged teacher's gain counts only beside
the gain of these controls:

- ``label_smoothing``: soft targets built from the training labels alone (1 - eps on the given
  label, eps spread over the rest), at whatever temperature the recipe uses. Its "predictions" for
  validation and test images read their labels too, so its reported AUROC is 1 by construction.
- ``matched_<teacher>`` (one for each privileged teacher): label smoothing whose sharpness is the
  privileged teacher's, image by image. Each image's soft target puts the teacher's confidence (its
  larger class probability) on the image's given label. For two classes a softmax depends only on
  the logit difference, so the two targets have equal confidence at every temperature; they differ
  only in which class the confidence goes to -- exactly what the privileged modality knows.
- ``image_self``: a teacher that sees only the image (self-distillation): a ViT of the student's
  default shape trained on the training images and labels, its training-image logits cross-fitted
  like every teacher's. Its embedding is its pooled image feature.
"""
from __future__ import annotations

import numpy as np

from mmpkd_core.data.base import DomainData
from mmpkd_core.teachers.base import TEACHERS, Teacher, no_grad


@TEACHERS.register("label_smoothing")
class LabelSmoothingTeacher(Teacher):
    modality = "any"
    folds = 0  # nothing is fitted: no cross-fitting
    reads_labels = True  # its outputs for validation and test images are their labels
    eps = 0.1

    def fit(self, data: DomainData) -> None:
        pass

    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        onehot = np.eye(2, dtype=np.float32)[data.labels]
        probs = (1 - self.eps) * onehot + self.eps / 2
        return np.log(probs), onehot


class MatchedSmoothingTeacher(Teacher):
    """Built from the reference teacher's cached outputs by ``teacher_outputs``; see ``matched_targets``."""

    modality = "any"
    folds = 0  # the reference's training-image logits are cross-fitted already
    reads_labels = True

    @classmethod
    def from_reference(cls, reference_logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return matched_targets(reference_logits, labels)

    def fit(self, data: DomainData) -> None:
        pass

    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        raise TypeError("a matched control is built from its reference teacher's outputs: call teacher_outputs()")


def matched_targets(reference_logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits putting each image's reference confidence on its given label, and a one-hot embedding."""
    margin = np.abs(reference_logits[:, 1] - reference_logits[:, 0])  # log(c / (1 - c)), c the confidence
    logits = np.zeros((len(labels), 2), dtype=np.float32)
    logits[np.arange(len(labels)), labels] = margin
    return logits, np.eye(2, dtype=np.float32)[labels]


def register_controls() -> list[str]:
    """A matched control for every privileged teacher registered so far that has none yet; returns the
    names added. ``mmpkd_core.teachers`` calls it once every teacher module is imported; a module that
    registers a teacher later calls it again."""
    added = []
    for name in TEACHERS.names():
        cls = TEACHERS.get(name)
        if cls.modality == "any" or cls.reference is not None or f"matched_{name}" in TEACHERS:
            continue
        attrs = {"reference": name, "modality": cls.modality}  # fits where its reference fits
        TEACHERS.register(f"matched_{name}")(type(f"Matched_{name}", (MatchedSmoothingTeacher,), attrs))
        added.append(f"matched_{name}")
    return added


@TEACHERS.register("image_self")
class ImageSelfTeacher(Teacher):
    modality = "any"
    folds = 3  # each fold trains a ViT: fewer folds than the cheap teachers
    epochs = 10

    def fit(self, data: DomainData) -> None:
        import torch

        from mmpkd_core.config import StudentConfig, TrialConfig
        from mmpkd_core.trainer import train, trial_inputs

        cfg = TrialConfig(domain=data.domain, student=StudentConfig(epochs=self.epochs), seed=self.seed)
        self.inputs = trial_inputs(data, None, torch.device("cpu"))
        self.model, _ = train(cfg, data, self.inputs)

    @no_grad
    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from mmpkd_core.student import forward_with_features

        self.model.eval()
        every = np.arange(len(data.labels))
        logits, feats = zip(*(forward_with_features(self.model, b) for b in self.inputs.batches(every, 256)))
        return torch.cat(logits).numpy(), torch.cat(feats).numpy()
