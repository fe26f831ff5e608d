"""The check of ``MLMHead``: BERT's masked-language-model head (dense, GELU, LayerNorm,
decoder), against a reference after ViLT's ``vilt/modules/heads.py``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks.vilt._heads import check_last_dim, head_check


class ReferenceMLMHead(nn.Module):
    """BERT's masked-LM head: dense, GELU, LayerNorm, then the decoder to the vocabulary."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.dim = dim
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.decoder = nn.Linear(dim, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_last_dim(x, self.dim, "text features (..., D)")
        return self.decoder(self.norm(F.gelu(self.dense(x))))


MLMHead = head_check(ReferenceMLMHead, lambda d: {"dim": d, "vocab_size": 9}, text=True,
                     mistakes=[
    ("BERT's transform is dense → GELU → LayerNorm (LayerNorm last), then the decoder.",
     lambda h, x: h.decoder(F.gelu(h.norm(h.dense(x))))),
    ("the LayerNorm after the GELU is missing: decoder(norm(gelu(dense(x)))).",
     lambda h, x: h.decoder(F.gelu(h.dense(x)))),
    ("the transform (dense → GELU → LayerNorm) before the decoder is missing.",
     lambda h, x: h.decoder(x)),
    ("use the exact GELU (F.gelu / nn.GELU() default), not approximate='tanh'.",
     lambda h, x: h.decoder(h.norm(F.gelu(h.dense(x), approximate="tanh")))),
])
