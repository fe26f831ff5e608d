"""The check of ``ViLT``: the single-stream encoder (embeddings, pre-norm blocks with the padding
mask, a final LayerNorm), against a reference built on the course's ``TransformerBlock``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from course_utils.blocks import TransformerBlock
from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden
from course_utils.checks.runners import run_module
from course_utils.checks.vilt._tokens import module_case, random_tokens
from course_utils.checks.vilt.vilt_embeddings import (
    CLS_FIRST,
    ReferenceViLTEmbeddings,
    _NoTypes,
    _TextFirst,
)


class ReferenceViLT(nn.Module):
    """The single-stream encoder: embeddings, ``depth`` pre-norm blocks with the padding mask,
    a final LayerNorm. Output: every position's features ``(B, 1 + N + L, D)``."""

    embeddings_class: type[nn.Module] = ReferenceViLTEmbeddings  # the mistakes swap in others

    def __init__(self, vocab_size: int, max_text_len: int, image_size: int = 32,
                 patch_size: int = 8, in_channels: int = 3, dim: int = 64, depth: int = 4,
                 num_heads: int = 4, mlp_ratio: float = 4.0, overlap: int = 0):
        super().__init__()
        self.embeddings = self.embeddings_class(vocab_size, max_text_len, image_size,
                                                patch_size, in_channels, dim, overlap)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x, mask = self.embeddings(images, tokens)  # (B, S, D), (B, S)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


class _NoMask(ReferenceViLT):
    def forward(self, images, tokens):
        x, _ = self.embeddings(images, tokens)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class _NoFinalNorm(ReferenceViLT):
    def forward(self, images, tokens):
        x, mask = self.embeddings(images, tokens)
        for block in self.blocks:
            x = block(x, mask)
        return x


class _OnlyCls(ReferenceViLT):
    def forward(self, images, tokens):
        return super().forward(images, tokens)[:, 0]


class _NoTypesViLT(ReferenceViLT):
    embeddings_class = _NoTypes


class _TextFirstViLT(ReferenceViLT):
    embeddings_class = _TextFirst


VILT_MISTAKES = [
    Mistake("pass the padding mask to every block (block(x, mask)): without it the image "
            "and the [CLS] attend to <pad> tokens, and the output changes with the amount of "
            "padding.", _NoMask),
    Mistake("apply the final LayerNorm (self.norm) after the last block: pre-norm blocks leave "
            "the residual stream unnormalised.", _NoFinalNorm),
    Mistake("return the features of every position (B, 1 + N + L, D); the heads pick [CLS] "
            "(position 0) or the text positions themselves.", _OnlyCls),
    Mistake("your ViLTEmbeddings adds no modality-type embedding; its own test says more.",
            _NoTypesViLT),
    Mistake("your ViLTEmbeddings puts the text first; " + CLS_FIRST, _TextFirstViLT),
]


def _vilt_case(name: str, generator: torch.Generator, *, batch: int, lengths: Sequence[int],
               length: int, depth: int = 2, dtype: torch.dtype = torch.float32,
               image_size: int = 8, patch_size: int = 4, dim: int = 8, heads: int = 2,
               vocab_size: int = 11, max_len: int = 6) -> Case:
    init = {"vocab_size": vocab_size, "max_text_len": max_len, "image_size": image_size,
            "patch_size": patch_size, "in_channels": 3, "dim": dim, "depth": depth,
            "num_heads": heads, "mlp_ratio": 2.0}
    images = torch.rand(batch, 3, image_size, image_size, generator=generator,
                        dtype=torch.float64).to(dtype)
    tokens = random_tokens(generator, batch, length, vocab_size, lengths)
    return module_case(name, generator, ReferenceViLT, init,
                       {"images": images, "tokens": tokens}, dtype)


def _vilt_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = [
        _vilt_case("batch 3, 8×8 images in 4×4 patches, depth 2, texts of 6, 3 and 2 tokens",
                   generator, batch=3, lengths=[6, 3, 2], length=6),
        _vilt_case("batch 1, depth 1, 5 tokens of at most 6, no padding", generator, batch=1,
                   lengths=[5], length=5, depth=1),
        _vilt_case("float64, batch 2, depth 2", generator, batch=2, lengths=[4, 6], length=6,
                   dtype=torch.float64),
    ]
    if hidden:
        cases += [
            _vilt_case("batch 2, 16×16 images in 8×8 patches, depth 3, width 12, 3 heads",
                       generator, batch=2, lengths=[2, 7], length=8, depth=3, image_size=16,
                       patch_size=8, dim=12, heads=3, max_len=8),
        ]
    return cases


ViLT = Check(
    exercise="ViLT",
    reference=ReferenceViLT,
    cases=_vilt_cases,
    run=run_module,
    mistakes=VILT_MISTAKES,
    forbidden=Forbidden(
        attributes=["torch.nn.TransformerEncoderLayer", "torch.nn.TransformerEncoder",
                    "torch.nn.modules.transformer.TransformerEncoderLayer",
                    "torch.nn.modules.transformer.TransformerEncoder"],
        allowed="Stack course_utils.blocks.TransformerBlock (notebook 02's block).",
    ),
)
