"""The check of ``PatchEmbedding``, (B, C, H, W) -> (B, 1 + N, D), against a ``Conv2d`` with
kernel = stride = P and the same weights, then [CLS] and the position embedding (ViT, eq. 1)."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.runners import run_module
from course_utils.checks.vit._shared import forbidden, module_case, randn


class _ReferencePatchEmbedding(nn.Module):
    """[CLS] + Conv2d(kernel = stride = P) tokens + position embeddings (ViT, eq. 1)."""

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int,
                 cls_last: bool = False, cls_without_position: bool = False):
        super().__init__()
        if image_size % patch_size:
            raise ValueError("image_size is not divisible by patch_size")
        self.image_size, self.patch_size = image_size, patch_size
        self.cls_last, self.cls_without_position = cls_last, cls_without_position
        num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Linear(in_channels * patch_size * patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, 1 + num_patches, dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError("wrong image size")
        p, dim = self.patch_size, self.proj.out_features
        kernel = self.proj.weight.reshape(dim, -1, p, p)  # (D, C, P, P): a patch flattened (C,P,P)
        # in float64: cuDNN may run float32 convolutions in TF32, ~1e-3 off (Ampere and later)
        x = F.conv2d(images.double(), kernel.double(), self.proj.bias.double(), stride=p)
        x = x.to(images.dtype)  # (B, D, H/P, W/P)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D), row-major
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        if self.cls_last:
            return torch.cat([x, cls], dim=1) + self.pos_embedding
        if self.cls_without_position:
            return torch.cat([cls, x + self.pos_embedding[:, 1:]], dim=1)
        return torch.cat([cls, x], dim=1) + self.pos_embedding  # (B, 1 + N, D)


def _patch_embedding_case(generator, name, image_size, patch_size, in_channels, dim, batch,
                          dtype=torch.float32, images=None, **kwargs) -> Case:
    if images is None:
        images = randn(generator, batch, in_channels, image_size, image_size, dtype=dtype)
    init = {"image_size": image_size, "patch_size": patch_size, "in_channels": in_channels,
            "dim": dim}
    return module_case(generator, name, _ReferencePatchEmbedding, init, {"images": images},
                       dtype, **kwargs)


def _patch_embedding_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = [
        _patch_embedding_case(generator, "8×8 images, P = 4, 3 channels, D = 6", 8, 4, 3, 6, 2),
        _patch_embedding_case(generator, "batch 1, 6×6 images, P = 2, 1 channel, D = 5",
                              6, 2, 1, 5, 1),
        _patch_embedding_case(generator, "9×9 images, P = 3, 2 channels, D = 4, float64",
                              9, 3, 2, 4, 3, dtype=torch.float64),
    ]
    if hidden:
        cases += [
            _patch_embedding_case(generator, "32×32 images, P = 8, D = 16", 32, 8, 3, 16, 2),
            _patch_embedding_case(generator, "one patch: 5×5 images, P = 5", 5, 5, 3, 7, 2),
        ]
    cases.append(_patch_embedding_case(
        generator, "4×8 images into PatchEmbedding(image_size=8), which it must refuse",
        8, 4, 3, 6, 2, images=randn(generator, 2, 3, 4, 8), raises=ValueError))
    return cases


PatchEmbedding = Check(
    exercise="PatchEmbedding",
    reference=_ReferencePatchEmbedding,
    cases=_patch_embedding_cases,
    run=run_module,
    mistakes=[
        Mistake("[CLS] is appended after the patches; it goes first, at position 0: "
                "torch.cat([cls, patches], dim=1).",
                partial(_ReferencePatchEmbedding, cls_last=True)),
        Mistake("the position embedding is added to the patch tokens only; add it to every "
                "token, [CLS] included (pos_embedding has 1 + N rows).",
                partial(_ReferencePatchEmbedding, cls_without_position=True)),
    ],
    forbidden=forbidden(patches=True, conv=True,
                        allowed="Use your patchify and the nn.Linear `proj`."),
)


