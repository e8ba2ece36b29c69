"""Tabular teachers for the metadata row: ``lightgbm`` and ``mlp``."""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
from mmpkd_core.data.base import DomainData
from mmpkd_core.teachers.base import TEACHERS, Teacher, no_grad


def encode_table(table: pd.DataFrame) -> np.ndarray:
    """Numeric columns standardised, text columns one-hot (columns in sorted order)."""
    num = table.select_dtypes("number").astype(np.float32)
    num = (num - num.mean()) / (num.std() + 1e-6)
    cat = pd.get_dummies(table.select_dtypes(exclude="number").astype(str), dtype=np.float32)
    enc = pd.concat([num, cat], axis=1)
    return enc[sorted(enc.columns)].to_numpy(np.float32)


@TEACHERS.register("lightgbm")
class LightGBMTeacher(Teacher):
    """Gradient-boosted trees; the embedding is the TreeSHAP contribution of each column."""

    modality = "tabular"
    fits_in_threads = True  # one thread per fit (n_jobs=1), its own seed; lightgbm releases the GIL

    def fit(self, data: DomainData) -> None:
        import lightgbm as lgb

        X = encode_table(data.table)
        tr, va = data.index("train"), data.index("val")
        self.model = lgb.LGBMClassifier(
            n_estimators=300, learning_rate=0.05, num_leaves=15, min_child_samples=10,
            subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=self.seed,
            deterministic=True, n_jobs=1, verbose=-1,
        )
        stop = [lgb.early_stopping(30, verbose=False)]
        if "eval_X" in inspect.signature(lgb.LGBMClassifier.fit).parameters:  # lightgbm >= 4.7
            self.model.fit(X[tr], data.labels[tr], eval_X=(X[va],), eval_y=(data.labels[va],), callbacks=stop)
        else:
            self.model.fit(X[tr], data.labels[tr], eval_set=[(X[va], data.labels[va])], callbacks=stop)

    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        X = encode_table(data.table)
        return self._logits(X), self.model.predict(X, pred_contrib=True)  # embedding: (N, n_features + 1)

    def predict_logits(self, data: DomainData) -> np.ndarray:
        # without TreeSHAP's contributions: a cross-fitting fold's embedding is never used, and they cost about
        # 100 times the raw scores (0.92 against 0.007 CPU-s on the default study's 2,400 images), five folds
        # of them most of the teacher's fit
        return self._logits(encode_table(data.table))

    def _logits(self, X: np.ndarray) -> np.ndarray:
        raw = self.model.predict(X, raw_score=True)  # log-odds of class 1
        return np.stack([np.zeros_like(raw), raw], axis=1)


@TEACHERS.register("mlp")
class MLPTeacher(Teacher):
    """A two-hidden-layer perceptron; the embedding is its last hidden layer."""

    modality = "tabular"
    hidden = 32

    def fit(self, data: DomainData) -> None:
        import torch
        import torch.nn.functional as F
        from torch import nn

        torch.manual_seed(self.seed)
        X = torch.from_numpy(encode_table(data.table))
        y = torch.from_numpy(data.labels)
        tr, va = data.index("train"), data.index("val")
        self.body = nn.Sequential(nn.Linear(X.shape[1], self.hidden), nn.GELU(),
                                  nn.Linear(self.hidden, self.hidden), nn.GELU())
        self.head = nn.Linear(self.hidden, 2)
        params = list(self.body.parameters()) + list(self.head.parameters())
        opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-2)
        best, best_state = float("inf"), None
        for _ in range(300):  # full batch; keep the weights with the lowest validation loss
            opt.zero_grad()
            F.cross_entropy(self.head(self.body(X[tr])), y[tr]).backward()
            opt.step()
            with torch.no_grad():
                val = F.cross_entropy(self.head(self.body(X[va])), y[va]).item()
            if val < best:
                best = val
                best_state = ([p.detach().clone() for p in params])
        with torch.no_grad():
            for p, b in zip(params, best_state):
                p.copy_(b)

    @no_grad
    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        import torch

        h = self.body(torch.from_numpy(encode_table(data.table)))
        return self.head(h).numpy(), h.numpy()
