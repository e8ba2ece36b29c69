"""Text teacher for the report: ``bert_scratch``.

A small BERT built from a ``transformers`` config (2 layers, width 64) with a WordPiece
tokenizer trained by ``tokenizers`` on the training reports, fitted from scratch; nothing is
downloaded. The embedding is the final [CLS] hidden state.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mmpkd_core.data.base import DomainData
from mmpkd_core.teachers.base import TEACHERS, Teacher

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: list[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
    )
    return tok


@TEACHERS.register("bert_scratch")
class BertScratchTeacher(Teacher):
    modality = "text"
    max_len, epochs, batch_size = 32, 10, 32

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
        self.tokenizer.enable_truncation(self.max_len)
        enc = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        return ids, torch.tensor([e.attention_mask for e in enc])

    def _forward(self, ids, mask):
        h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]  # (B, D)
        return self.head(h), h

    def fit(self, data: DomainData) -> None:
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

    @torch.no_grad()
    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        self.encoder.eval()
        ids, mask = self._encode(data.text)
        logits, h = self._forward(ids, mask)
        return logits.numpy(), h.numpy()
