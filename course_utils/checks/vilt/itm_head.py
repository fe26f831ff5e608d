"""The check of ``ITMHead``: ViLT's pooler (Linear + tanh on [CLS]) and its 2-way
image-text-matching classifier, against a reference after ViLT's ``vilt/modules/heads.py``."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.checks.vilt._heads import check_last_dim, head_check


class ReferenceITMHead(nn.Module):
    """ViLT's pooler (Linear + tanh on [CLS]) and its 2-way ITM classifier."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.pooler = nn.Linear(dim, dim)
        self.fc = nn.Linear(dim, 2)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        check_last_dim(cls, self.dim, "[CLS] features (B, D)")
        return self.fc(torch.tanh(self.pooler(cls)))


ITMHead = head_check(ReferenceITMHead, lambda d: {"dim": d}, text=False, mistakes=[
    ("the pooler is Linear then tanh (ViLT's Pooler, as BERT's): fc(tanh(pooler(cls))).",
     lambda h, cls: h.fc(h.pooler(cls))),
    ("apply the pooler's Linear before the tanh: fc(tanh(pooler(cls))).",
     lambda h, cls: h.fc(torch.tanh(cls))),
    ("the pooler's activation is tanh, not ReLU.",
     lambda h, cls: h.fc(torch.relu(h.pooler(cls)))),
])
