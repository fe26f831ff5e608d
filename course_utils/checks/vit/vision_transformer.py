"""The check of ``VisionTransformer``'s architecture, images (B, C, H, W) -> logits
(B, num_classes), against a reference ViT of torch layers with the same weights (ViT eq. 1-4)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.runners import run_module
from course_utils.checks.vit._shared import forbidden, module_case
from course_utils.checks.vit.patch_embedding import _ReferencePatchEmbedding
from course_utils.checks.vit.transformer_block import _ReferenceBlock


class _ReferenceViT(nn.Module):
    """Patch embedding → ``depth`` pre-norm blocks → LayerNorm → a linear head on [CLS]
    (ViT eq. 1–4)."""

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int,
                 depth: int, num_heads: int, num_classes: int, mlp_ratio: float = 4.0,
                 pooling: str = "cls", final_norm: bool = True):
        super().__init__()
        self.pooling, self.final_norm = pooling, final_norm
        self.patch_embed = _ReferencePatchEmbedding(image_size, patch_size, in_channels, dim)
        self.blocks = nn.ModuleList(
            _ReferenceBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)  # (B, 1 + N, D)
        for block in self.blocks:
            x = block(x)
        if self.final_norm:
            x = self.norm(x)
        if self.pooling == "mean":
            return self.head(x[:, 1:].mean(dim=1))
        if self.pooling == "last":
            return self.head(x[:, -1])
        return self.head(x[:, 0])  # (B, num_classes), ViT eq. 4: y = LN(z_L^0)


_VIT_INIT = ("image_size", "patch_size", "in_channels", "dim", "depth", "num_heads",
             "num_classes")


def _vit_case(generator, name, config: tuple[int, ...], batch: int,
              dtype=torch.float32) -> Case:
    image_size, _, in_channels = config[:3]
    images = torch.rand((batch, in_channels, image_size, image_size), generator=generator,
                        dtype=torch.float64).to(dtype)  # pixels in [0, 1]
    init = dict(zip(_VIT_INIT, config, strict=True))
    return module_case(generator, name, _ReferenceViT, init, {"images": images}, dtype)


def _vit_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = [
        _vit_case(generator, "8×8 images, P = 4, D = 8, depth 2, 2 heads, 5 classes",
                  (8, 4, 3, 8, 2, 2, 5), 3),
        _vit_case(generator, "batch 1, float64, 6×6 images in 1 channel, P = 3, D = 6, "
                             "depth 1, 3 heads, 4 classes", (6, 3, 1, 6, 1, 3, 4), 1,
                  torch.float64),
    ]
    if hidden:
        cases.append(_vit_case(generator, "16×16 images, P = 4, D = 8, depth 3, 4 heads, "
                                          "15 classes", (16, 4, 3, 8, 3, 4, 15), 2))
    return cases


VisionTransformer = Check(
    exercise="VisionTransformer",
    reference=_ReferenceViT,
    cases=_vit_cases,
    run=run_module,
    mistakes=[
        Mistake("it classifies the mean of the patch tokens; the ViT classifies the [CLS] "
                "token, x[:, 0], after the final LayerNorm.",
                partial(_ReferenceViT, pooling="mean")),
        Mistake("it classifies the last token; [CLS] is token 0: x[:, 0].",
                partial(_ReferenceViT, pooling="last")),
        Mistake("the final LayerNorm (`norm`) is missing: apply it to the tokens after the "
                "last block, before the head (ViT eq. 4).",
                partial(_ReferenceViT, final_norm=False)),
    ],
    forbidden=forbidden(patches=True, conv=True, attention=True,
                        allowed="Build it from your PatchEmbedding and TransformerBlock."),
)

#: The name notebooks before the rename used (``checks.vit_architecture(VisionTransformer)``).
vit_architecture = VisionTransformer
