"""Transformer encoders for images (ViT, Dosovitskiy et al. 2021) and text (CLIP's text
tower, Radford et al. 2021), small enough to train on a laptop CPU.

Shape legend: ``B`` batch, ``C`` channels, ``H, W`` image size, ``P`` patch size,
``N`` tokens, ``D`` width, ``h`` heads, ``L`` context length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sincos_position_embedding(grid_size: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes of a ``grid_size × grid_size`` patch grid.

    Returns ``(grid_size², dim)``, patches in row-major order: the first ``dim / 2``
    features code the row, the last ``dim / 2`` the column, each as Vaswani et al.'s 1-D
    codes ``sin(p·ω_k), cos(p·ω_k)`` with ``ω_k = 10000^(-k / (dim/4))``. MAE (He et al.
    2022) and MoCo v3 (Chen et al. 2021) use them for ViTs; as an *initial value* of learned
    position embeddings they make each patch's row and column readable from the start.

    Raises:
        ValueError: ``dim`` is not a multiple of 4.
    """
    if dim % 4:
        raise ValueError("dim must be a multiple of 4 (sin and cos of rows and columns), "
                         f"got {dim}")
    omega = 10000.0 ** (-torch.arange(dim // 4) / (dim // 4))  # (D/4,)
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")

    def code(positions: torch.Tensor) -> torch.Tensor:  # (G²,) -> (G², D/2)
        angles = positions.flatten().float()[:, None] * omega  # (G², D/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([code(rows), code(cols)], dim=1)  # (G², D)


class PatchEmbedding(nn.Module):
    """Image -> [CLS] + one token per ``P×P`` patch, plus learned position embeddings.

    ``proj`` is a convolution with kernel = stride = P: the same as flattening each patch
    and applying one linear layer (notebook 02).
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by {patch_size}")
        self.num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, 1 + self.num_patches, dim) * 0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.proj(images)  # (B, D, H/P, W/P)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D), patches in row-major order
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        return torch.cat([cls, x], dim=1) + self.pos_embedding  # (B, 1 + N, D)


class Attention(nn.Module):
    """Multi-head self-attention with one ``qkv`` projection (Vaswani et al. 2017).

    ``mask`` is boolean, True where a query may attend to a key, broadcastable to
    ``(B, h, N, N)``; a ``(B, N)`` mask is a key-padding mask, and any other 2-D mask raises a
    ValueError (a causal ``(N, N)`` mask must be given as ``(1, 1, N, N)``).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, h, N, D/h)
        if mask is not None and mask.ndim == 2:
            if tuple(mask.shape) != (batch, tokens):
                raise ValueError(
                    f"a 2-D mask is read as a (B, N) = ({batch}, {tokens}) key-padding mask, "
                    f"but this one has shape {tuple(mask.shape)}. A mask over query and key "
                    f"pairs, such as a causal (N, N) mask, needs the shape (1, 1, N, N): "
                    f"mask[None, None]")
            mask = mask[:, None, None, :]  # (B, 1, 1, N): padding keys are never attended
        if return_weights:
            scores = q @ k.transpose(-2, -1) / (q.shape[-1] ** 0.5)  # (B, h, N, N)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = weights @ v  # (B, h, N, D/h)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))  # (B, N, D)
        return (out, weights) if return_weights else out


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        attended = self.attn(self.norm1(x), mask, return_weights)
        if return_weights:
            attended, weights = attended
        x = x + attended
        x = x + self.mlp(self.norm2(x))
        return (x, weights) if return_weights else x


class VisionTransformer(nn.Module):
    """ViT: patch tokens + [CLS] through ``depth`` blocks; the [CLS] token is the image.

    ``forward`` returns class logits ``(B, num_classes)``, or the [CLS] features ``(B, D)``
    when ``num_classes`` is 0. ``attention_maps`` returns each block's attention weights.
    """

    def __init__(self, image_size: int = 32, patch_size: int = 8, in_channels: int = 3,
                 dim: int = 64, depth: int = 2, num_heads: int = 4, num_classes: int = 0,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_embed = PatchEmbedding(image_size, patch_size, in_channels, dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes) if num_classes else nn.Identity()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)  # (B, 1 + N, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)  # (B, 1 + N, D)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(images)[:, 0])  # (B, num_classes) or (B, D)

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every block's attention weights, each ``(B, h, 1 + N, 1 + N)``."""
        x, maps = self.patch_embed(images), []
        for block in self.blocks:
            x, weights = block(x, return_weights=True)
            maps.append(weights)
        return maps


class TextTransformer(nn.Module):
    """A causal text encoder that reads out the features at the end token (CLIP).

    Input: token ids ``(B, L)`` made of ``<start>``, words, ``<end>``, then padding 0. The end
    token is the last non-padding token; causal attention means it has read the whole text.
    Output: ``(B, D)``.
    """

    def __init__(self, vocab_size: int, context_length: int, dim: int = 64, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, context_length, dim) * 0.01)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        causal = torch.ones(context_length, context_length, dtype=torch.bool).tril()
        self.register_buffer("causal_mask", causal, persistent=False)  # (L, L)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.pos_embedding[:, :length]  # (B, L, D)
        mask = self.causal_mask[:length, :length][None, None]  # (1, 1, L, L)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        end = (tokens != 0).sum(dim=1) - 1  # (B,): index of the end token
        return x[torch.arange(len(tokens), device=tokens.device), end]  # (B, D)
