"""A small U-Net for denoising diffusion, conditioned on one embedding vector per image.

The architecture of Ho et al. (2020, appendix B), shrunk for 16 x 16 images: a U-Net
(Ronneberger et al. 2015) of residual blocks with group normalisation, in which every block
is told the conditioning (timestep and caption, already embedded into one vector) through a
per-channel scale and shift of its features (FiLM, Perez et al. 2018) — what diffusers'
``UNet2DModel`` calls ``resnet_time_scale_shift="scale_shift"``.

Shape legend: ``B`` batch, ``C`` channels, ``H, W`` image size, ``D`` embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FiLMResBlock(nn.Module):
    """``x + conv(SiLU(FiLM(norm(conv(SiLU(norm(x)))), emb)))``, with a 1x1 skip when the
    width changes.

    FiLM: ``h * (1 + scale) + shift``, where ``(scale, shift)`` is a linear function of the
    embedding, one pair per channel.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                     else nn.Identity())

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)  # each (B, C_out, 1, 1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return h + self.skip(x)


class UNet(nn.Module):
    """A U-Net: ``(B, C, H, W)`` images and ``(B, D)`` embeddings -> ``(B, C, H, W)``.

    ``channels=(32, 64)`` makes two levels, 32 channels at H x W and 64 at H/2 x W/2, and a
    bottleneck at H/4 x W/4; each level has one residual block on the way down and one on the
    way up, which sees the upsampled features concatenated with the level's skip connection.
    H and W must be divisible by ``2 ** len(channels)``.
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (32, 64),
                 emb_dim: int = 128, groups: int = 8):
        super().__init__()
        channels = list(channels)
        self.levels = len(channels)
        self.inp = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        width = channels[0]
        for c in channels:
            self.down_blocks.append(FiLMResBlock(width, c, emb_dim, groups))
            self.downsamples.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            width = c
        self.middle = FiLMResBlock(width, width, emb_dim, groups)
        self.up_blocks = nn.ModuleList()
        for c in reversed(channels):
            self.up_blocks.append(FiLMResBlock(width + c, c, emb_dim, groups))
            width = c
        self.out = nn.Conv2d(width, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        size = 2 ** self.levels
        if x.ndim != 4 or x.shape[-1] % size or x.shape[-2] % size:
            raise ValueError(f"expected images (B, C, H, W) with H and W divisible by {size}, "
                             f"got {tuple(x.shape)}")
        h = self.inp(x)  # (B, C0, H, W)
        skips = []
        for block, down in zip(self.down_blocks, self.downsamples, strict=True):
            h = block(h, emb)
            skips.append(h)  # (B, C_i, H / 2^i, W / 2^i)
            h = down(h)  # halves H and W
        h = self.middle(h, emb)
        for block in self.up_blocks:
            h = F.interpolate(h, scale_factor=2, mode="nearest")  # doubles H and W
            h = block(torch.cat([h, skips.pop()], dim=1), emb)  # (B, C_i, ...)
        return self.out(F.silu(h))  # (B, C, H, W)
