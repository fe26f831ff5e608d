"""The check of ``VQAHead``: ViLT's VQA classifier on [CLS] (Linear, LayerNorm, GELU,
Linear), against a reference after the authors' code (github.com/dandelin/ViLT)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks.vilt._heads import check_last_dim, head_check


class ReferenceVQAHead(nn.Module):
    """ViLT's VQA classifier: Linear(D, 2D), LayerNorm, GELU, Linear(2D, num_answers)."""

    def __init__(self, dim: int, num_answers: int):
        super().__init__()
        self.dim = dim
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(2 * dim)
        self.fc2 = nn.Linear(2 * dim, num_answers)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        check_last_dim(cls, self.dim, "[CLS] features (B, D)")
        return self.fc2(F.gelu(self.norm(self.fc1(cls))))


VQAHead = head_check(ReferenceVQAHead, lambda d: {"dim": d, "num_answers": 15}, text=False,
                     mistakes=[
    ("ViLT's VQA classifier is fc1 → LayerNorm → GELU → fc2 (LayerNorm before the GELU, "
     "unlike the MLM head).",
     lambda h, cls: h.fc2(h.norm(F.gelu(h.fc1(cls))))),
    ("the LayerNorm between fc1 and the GELU is missing.",
     lambda h, cls: h.fc2(F.gelu(h.fc1(cls)))),
    ("the activation is GELU, not ReLU.",
     lambda h, cls: h.fc2(torch.relu(h.norm(h.fc1(cls))))),
    ("return logits, not probabilities: cross_entropy applies the softmax itself.",
     lambda h, cls: ReferenceVQAHead.forward(h, cls).softmax(dim=-1)),
])
