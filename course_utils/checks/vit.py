"""Checks of notebook 02_vision_transformer: patches as tokens, attention, the ViT.

References (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"; Vaswani et al. 2017):

- ``patchify`` / ``unpatchify``: ``F.unfold`` / ``F.fold`` with kernel = stride = P;
- ``PatchEmbedding``: a ``Conv2d`` with kernel = stride = P and the same weights, then [CLS]
  and the position embedding;
- ``scaled_dot_product_attention``: ``F.scaled_dot_product_attention`` (the weights by the
  formula of Vaswani et al., eq. 1);
- ``MultiHeadSelfAttention``: ``nn.MultiheadAttention(batch_first=True)`` sharing the same
  ``qkv`` and ``proj`` weights;
- ``TransformerBlock`` and ``vit_architecture``: pre-norm references built from those torch
  layers;
- ``VisionTransformer``: a quality check of the trained model on held-out Shapes images the
  check renders itself.

Module exercises are run by ``run_module``: build the student's module, copy the case's
weights into its parameters (by the names COURSE_SPEC §4 gives them), run forward, backpropagate
a fixed upstream gradient, and return the outputs and the gradients of the input and of every
parameter: tensors in, tensors out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.core import Check, QualityCheck
from course_utils.checks.forbid import Forbidden
from course_utils.checks.runners import backpropagate, clone_inputs, collect

__all__ = [
    "MultiHeadSelfAttention", "PatchEmbedding", "TransformerBlock", "VisionTransformer",
    "WrongParameters", "patchify", "run_module", "scaled_dot_product_attention", "unpatchify",
    "vit_architecture",
]

# --- what the student's code may not call ---------------------------------------------------

#: torch's fused attention, as a function and as the kernels it dispatches to (CPU and CUDA).
ATTENTION_FUNCTIONS = (
    "torch.nn.functional.scaled_dot_product_attention",
    "torch.nn.functional.multi_head_attention_forward",
    "torch._native_multi_head_attention",
    "torch._transformer_encoder_layer_fwd",
)
ATTENTION_KERNELS = (
    "scaled_dot_product_attention",
    "_scaled_dot_product_attention_math",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
    "_scaled_dot_product_attention_math_for_mps",
    "_flash_attention_forward",
    "_efficient_attention_forward",
    "_native_multi_head_attention",
    "_transformer_encoder_layer_fwd",
)
#: The library modules that would do an exercise's work (refused when constructed).
LIBRARY_MODULES = (
    "torch.nn.MultiheadAttention",
    "torch.nn.TransformerEncoderLayer",
    "torch.nn.TransformerEncoder",
    "torch.nn.Transformer",
    "course_utils.blocks.Attention",
    "course_utils.blocks.TransformerBlock",
    "course_utils.blocks.VisionTransformer",
    "course_utils.blocks.PatchEmbedding",
    "course_utils.blocks.transformer.Attention",
    "course_utils.blocks.transformer.TransformerBlock",
    "course_utils.blocks.transformer.VisionTransformer",
    "course_utils.blocks.transformer.PatchEmbedding",
)
PATCH_FUNCTIONS = ("torch.nn.functional.unfold", "torch.nn.functional.fold")
PATCH_KERNELS = ("im2col", "col2im")
CONV_FUNCTIONS = ("torch.nn.functional.conv2d",)  # the same object as torch.conv2d
CONV_KERNELS = ("convolution", "_convolution", "conv2d", "mkldnn_convolution")


def _forbidden(patches: bool = False, conv: bool = False, attention: bool = False,
               allowed: str = "") -> Forbidden:
    functions: list[str] = []
    kernels: list[str] = []
    if patches:
        functions += PATCH_FUNCTIONS
        kernels += PATCH_KERNELS
    if conv:
        functions += CONV_FUNCTIONS
        kernels += CONV_KERNELS
    if attention:
        functions += ATTENTION_FUNCTIONS
        kernels += ATTENTION_KERNELS
    return Forbidden(functions=functions, aten=kernels, attributes=LIBRARY_MODULES,
                     allowed=allowed)


# --- running module exercises ---------------------------------------------------------------


class WrongParameters(Exception):
    """The student's module lacks a parameter the exercise names, or has it in another shape.

    Deliberately not a ValueError: a case that expects a ValueError must not pass because of it.
    """


def _load_parameters(module: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy ``weights`` (name -> tensor) into the module's parameters of those names."""
    kind = type(module).__name__
    for name, value in weights.items():
        try:
            parameter = module.get_parameter(name)
        except AttributeError:
            raise WrongParameters(
                f"{kind} has no parameter `{name}`: the exercise names its parameters "
                f"(see the docstring), so that the check can load the same weights into "
                f"yours and into the reference") from None
        if parameter.shape != value.shape:
            raise WrongParameters(f"{kind}.{name} has shape {tuple(parameter.shape)}, "
                                  f"expected {tuple(value.shape)}")
        with torch.no_grad():
            parameter.copy_(value)


def run_module(implementation: Callable, case: Case, init: Sequence[str],
               forward: Sequence[str]) -> Outputs:
    """Outputs of a module exercise on ``case``.

    ``case.inputs`` holds the constructor's arguments (names in ``init``, in order), the
    forward's arguments (``forward``: the first positional, the rest by keyword when present)
    and, under every other name, a parameter of the module (``"qkv.weight"``). The module is
    built, moved to the input's device and dtype, loaded with the case's weights and run;
    gradients are taken with respect to the names in ``case.grad``: inputs and parameters.
    """
    inputs = clone_inputs(case)
    first = inputs[forward[0]]
    weights = {k: v for k, v in inputs.items() if k not in init and k not in forward}
    try:
        module = implementation(*[inputs[name] for name in init])
        if not isinstance(module, nn.Module):
            raise WrongParameters(f"{getattr(implementation, '__name__', 'it')}(...) made "
                                  f"a {type(module).__name__}, expected an nn.Module")
        module.to(device=first.device, dtype=first.dtype)
        _load_parameters(module, {k: v.detach() for k, v in weights.items()})
        kwargs = {name: inputs[name] for name in forward[1:] if name in inputs}
        result = module(first, **kwargs)
    except Exception as error:
        if case.raises is not None and isinstance(error, case.raises):
            return {"raised": type(error).__name__}
        raise
    if case.raises is not None:
        return {"raised": None}
    outputs = collect(result)
    if case.grad:
        targets = {name: first if name == forward[0] else module.get_parameter(name)
                   for name in case.grad}
        outputs.update(backpropagate(outputs, targets, case))
    return outputs


def _module_runner(init: Sequence[str], forward: Sequence[str]):
    def run(implementation: Callable, case: Case) -> Outputs:
        return run_module(implementation, case, init, forward)

    return run


def _random_weights(module: nn.Module, generator: torch.Generator,
                    dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Seeded random values for every parameter of ``module``, at sizes that keep activations
    of order one (LayerNorm gains around 1, so that norm1 and norm2 can be told apart)."""
    weights = {}
    for name, parameter in module.named_parameters():
        shape = tuple(parameter.shape)
        values = torch.randn(shape, generator=generator, dtype=torch.float64)
        if name.startswith("norm") or ".norm" in name:
            values = 1 + 0.3 * values if name.endswith("weight") else 0.3 * values
        elif name.endswith("bias") or "cls_token" in name or "pos_embedding" in name:
            values = 0.5 * values
        else:  # a Linear weight (out, in): unit-variance outputs
            values = values / math.sqrt(shape[-1])
        weights[name] = values.to(dtype)
    return weights


def _randn(generator: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


# --- patchify: (B, C, H, W) -> (B, N, C·P·P) ---------------------------------------------------


def _check_images(images: torch.Tensor, patch_size: int) -> None:
    if images.ndim != 4:
        raise ValueError("expected images (B, C, H, W)")
    if images.shape[-2] % patch_size or images.shape[-1] % patch_size:
        raise ValueError("the image size is not divisible by the patch size")


def _reference_patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    _check_images(images, patch_size)
    return F.unfold(images, patch_size, stride=patch_size).transpose(1, 2)  # (B, N, C·P·P)


def _patchify_in_order(images: torch.Tensor, patch_size: int, order: tuple[int, ...]):
    """Patches by reshape + permute; ``order`` permutes (B, H/P, W/P, C, P_row, P_col)."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)  # (B, C, H/P, P, W/P, P)
    x = x.permute(0, 2, 4, 1, 3, 5).permute(order)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def _patchify_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def images(*shape, dtype=torch.float32):
        return _randn(generator, *shape, dtype=dtype)

    shapes = [((2, 3, 8, 8), 4, torch.float32), ((1, 1, 6, 9), 3, torch.float32),
              ((2, 4, 4, 6), 2, torch.float64), ((3, 3, 5, 5), 5, torch.float32)]
    if hidden:
        shapes += [((2, 3, 12, 8), 4, torch.float32), ((1, 2, 3, 2), 1, torch.float64),
                   ((2, 3, 32, 32), 8, torch.float32)]
    cases = [Case(f"images {shape} ({'non-square, ' if shape[2] != shape[3] else ''}"
                  f"{dtype.__repr__().removeprefix('torch.')}), patch size {p}",
                  {"images": images(*shape, dtype=dtype), "patch_size": p}, grad=["images"])
             for shape, p, dtype in shapes]
    cases.append(Case("a 7×8 image with patch size 4, which it must refuse",
                      {"images": images(1, 3, 7, 8), "patch_size": 4}, raises=ValueError))
    if hidden:
        cases.append(Case("a (C, H, W) image without a batch axis, which it must refuse",
                          {"images": images(3, 8, 8), "patch_size": 4}, raises=ValueError))
    return cases


patchify = Check(
    exercise="patchify",
    reference=_reference_patchify,
    cases=_patchify_cases,
    mistakes=[
        Mistake("each patch is flattened in the order (P, P, C); flatten it as (C, P, P), the "
                "order of F.unfold and of a Conv2d weight: permute to (B, H/P, W/P, C, P, P) "
                "before the last reshape.",
                lambda images, p: _patchify_in_order(images, p, (0, 1, 2, 4, 5, 3))),
        Mistake("the patches are in column-major order (down the first column first); number "
                "them row by row: the grid-row axis H/P comes before the grid-column axis W/P.",
                lambda images, p: _patchify_in_order(images, p, (0, 2, 1, 3, 4, 5))),
        Mistake("each patch is transposed (its columns flattened before its rows): keep the "
                "pixel-row axis before the pixel-column axis.",
                lambda images, p: _patchify_in_order(images, p, (0, 1, 2, 3, 5, 4))),
        Mistake("a single reshape keeps the memory order (C, H, W) and cuts rows of pixels, "
                "not patches: reshape to (B, C, H/P, P, W/P, P) and permute first.",
                lambda images, p: images.reshape(
                    images.shape[0], -1, images.shape[1] * p * p)),
    ],
    forbidden=_forbidden(patches=True, allowed="Use reshape and permute."),
    tolerance=(0.0, 0.0),  # pure data movement: exactly equal
)


# --- unpatchify: (B, N, C·P·P) -> (B, C, H, W) -------------------------------------------------


def _reference_unpatchify(patches: torch.Tensor, patch_size: int, height: int,
                          width: int) -> torch.Tensor:
    if patches.ndim != 3 or patches.shape[-1] % (patch_size * patch_size):
        raise ValueError("expected patches (B, N, C·P·P)")
    if height % patch_size or width % patch_size or \
            patches.shape[1] != (height // patch_size) * (width // patch_size):
        raise ValueError("N does not match the image size")
    return F.fold(patches.transpose(1, 2), (height, width), patch_size, stride=patch_size)


def _unpatchify_in_order(patches, patch_size, height, width, order):
    """The inverse of ``_patchify_in_order`` with the same ``order``."""
    b, _, d = patches.shape
    p = patch_size
    c = d // (p * p)
    grid = (b, height // p, width // p, c, p, p)  # (B, H/P, W/P, C, P, P) in patchify's order
    x = patches.reshape(tuple(grid[i] for i in order))
    x = x.permute([order.index(i) for i in range(6)])  # (B, H/P, W/P, C, P, P)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, c, height, width)


def _unpatchify_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    shapes = [((2, 3, 8, 8), 4, torch.float32), ((1, 1, 6, 9), 3, torch.float32),
              ((2, 4, 4, 6), 2, torch.float64)]
    if hidden:
        shapes += [((3, 3, 5, 5), 5, torch.float32), ((2, 3, 12, 8), 4, torch.float32),
                   ((1, 2, 3, 2), 1, torch.float64)]
    cases = []
    for shape, p, dtype in shapes:
        images = _randn(generator, *shape, dtype=dtype)
        patches = F.unfold(images, p, stride=p).transpose(1, 2).contiguous()
        cases.append(Case(f"the patches {tuple(patches.shape)} of images {shape}, patch size {p}",
                          {"patches": patches, "patch_size": p, "height": shape[2],
                           "width": shape[3]}, grad=["patches"]))
    patches = _randn(generator, 2, 4, 12)
    cases.append(Case("4 patches of 3·2·2 values for a 4×6 image (6 patches), which it must "
                      "refuse", {"patches": patches, "patch_size": 2, "height": 4, "width": 6},
                      raises=ValueError))
    if hidden:
        cases.append(Case("patches of 10 values with patch size 2 (not C·2·2), which it must "
                          "refuse", {"patches": _randn(generator, 1, 4, 10), "patch_size": 2,
                                     "height": 4, "width": 4}, raises=ValueError))
    return cases


unpatchify = Check(
    exercise="unpatchify",
    reference=_reference_unpatchify,
    cases=_unpatchify_cases,
    mistakes=[
        Mistake("it reads each patch as (P, P, C); patchify flattened it as (C, P, P).",
                lambda x, p, h, w: _unpatchify_in_order(x, p, h, w, (0, 1, 2, 4, 5, 3))),
        Mistake("it places the patches in column-major order; patch n sits in grid row "
                "n // (W/P), column n % (W/P).",
                lambda x, p, h, w: _unpatchify_in_order(x, p, h, w, (0, 2, 1, 3, 4, 5))),
        Mistake("a single reshape does not undo the permute of patchify: reshape to "
                "(B, H/P, W/P, C, P, P), permute to (B, C, H/P, P, W/P, P), then reshape.",
                lambda x, p, h, w: x.reshape(x.shape[0], -1, h, w)),
    ],
    forbidden=_forbidden(patches=True, allowed="Use reshape and permute."),
    tolerance=(0.0, 0.0),
)


# --- PatchEmbedding: (B, C, H, W) -> (B, 1 + N, D) ---------------------------------------------


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


_PATCH_INIT = ("image_size", "patch_size", "in_channels", "dim")


def _patch_embedding_case(generator, name, image_size, patch_size, in_channels, dim, batch,
                          dtype=torch.float32, images=None, **kwargs) -> Case:
    reference = _ReferencePatchEmbedding(image_size, patch_size, in_channels, dim)
    weights = _random_weights(reference, generator, dtype)
    if images is None:
        images = _randn(generator, batch, in_channels, image_size, image_size, dtype=dtype)
    inputs = {"image_size": image_size, "patch_size": patch_size, "in_channels": in_channels,
              "dim": dim, "images": images, **weights}
    grad = () if kwargs.get("raises") else ["images", *weights]
    return Case(name, inputs, grad=grad, **kwargs)


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
        8, 4, 3, 6, 2, images=_randn(generator, 2, 3, 4, 8), raises=ValueError))
    return cases


PatchEmbedding = Check(
    exercise="PatchEmbedding",
    reference=_ReferencePatchEmbedding,
    cases=_patch_embedding_cases,
    run=_module_runner(_PATCH_INIT, ("images",)),
    mistakes=[
        Mistake("[CLS] is appended after the patches; it goes first, at position 0: "
                "torch.cat([cls, patches], dim=1).",
                lambda *a: _ReferencePatchEmbedding(*a, cls_last=True)),
        Mistake("the position embedding is added to the patch tokens only; add it to every "
                "token, [CLS] included (pos_embedding has 1 + N rows).",
                lambda *a: _ReferencePatchEmbedding(*a, cls_without_position=True)),
    ],
    forbidden=_forbidden(patches=True, conv=True,
                         allowed="Use your patchify and the nn.Linear `proj`."),
)


# --- scaled_dot_product_attention: softmax(q kᵀ / √d) v ----------------------------------------


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2 or q.shape[-1] != k.shape[-1] \
            or k.shape[-2] != v.shape[-2]:
        raise ValueError("expected q (..., Nq, d), k (..., Nk, d), v (..., Nk, dv)")


def _attention(q, k, v, mask=None, scale=None, softmax_dim=-1, fill=-math.inf, invert=False):
    """Attention by the formula, with the knobs that make the common mistakes."""
    _check_qkv(q, k, v)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., Nq, Nk)
    if mask is not None:
        scores = scores.masked_fill(mask if invert else ~mask, fill)
    weights = scores.softmax(dim=softmax_dim)
    return weights @ v, weights  # (..., Nq, dv), (..., Nq, Nk)


def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         mask: torch.Tensor | None = None):
    _check_qkv(q, k, v)
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (..., Nq, dv)
    return output, _attention(q, k, v, mask)[1]  # weights (..., Nq, Nk), Vaswani et al. eq. 1


def _attention_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def t(*shape, dtype=torch.float32):
        return _randn(generator, *shape, dtype=dtype)

    def keep_one(mask):  # every query may attend to at least one key (no all-False rows)
        mask = mask.clone()
        mask[..., 0] = True
        return mask

    def case(name, q, k, v, mask=None, **kwargs):
        inputs = {"q": q, "k": k, "v": v}
        if mask is not None:
            inputs["mask"] = mask
        return Case(name, inputs, grad=["q", "k", "v"], **kwargs)

    causal = torch.ones(5, 5, dtype=torch.bool).tril()  # row 4 may see every key
    padding = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None, None, :]
    cases = [
        case("one head, q k v (2, 5, 4)", t(2, 5, 4), t(2, 5, 4), t(2, 5, 4)),
        case("batch 1, 3 heads, 4 queries and 7 keys, d = 6",
             t(1, 3, 4, 6), t(1, 3, 7, 6), t(1, 3, 7, 6)),
        case("2 heads, d = 8, a causal (5, 5) mask", t(2, 2, 5, 8), t(2, 2, 5, 8),
             t(2, 2, 5, 8), mask=causal),
        case("a key-padding mask (2, 1, 1, 6): the second item's last 2 keys are padding",
             t(2, 3, 6, 4), t(2, 3, 6, 4), t(2, 3, 6, 4), mask=padding),
        case("float64, random mask (2, 2, 3, 5)", t(2, 2, 3, 4, dtype=torch.float64),
             t(2, 2, 5, 4, dtype=torch.float64), t(2, 2, 5, 4, dtype=torch.float64),
             mask=keep_one(torch.rand(2, 2, 3, 5, generator=generator) > 0.5)),
        Case("q with d = 4 but k with d = 5, which it must refuse",
             {"q": t(2, 3, 4), "k": t(2, 3, 5), "v": t(2, 3, 5)}, raises=ValueError),
    ]
    if hidden:
        cases[-1:-1] = [
            case("values of another width (dv = 3)", t(2, 4, 5), t(2, 6, 5), t(2, 6, 3)),
            case("two batch axes (2, 2, 3, 4, 8)", t(2, 2, 3, 4, 8), t(2, 2, 3, 4, 8),
                 t(2, 2, 3, 4, 8)),
            case("large scores (q and k ×6), d = 16", 6 * t(2, 3, 16), 6 * t(2, 5, 16),
                 t(2, 5, 16)),
            case("only one key allowed per query", t(1, 2, 4, 4), t(1, 2, 4, 4),
                 t(1, 2, 4, 4), mask=torch.eye(4, dtype=torch.bool)),
            Case("4 keys but 3 values, which it must refuse",
                 {"q": t(2, 3, 4), "k": t(2, 4, 4), "v": t(2, 3, 4)}, raises=ValueError),
        ]
    return cases


scaled_dot_product_attention = Check(
    exercise="scaled_dot_product_attention",
    reference=_reference_attention,
    cases=_attention_cases,
    mistakes=[
        Mistake("the scores are not scaled: divide q kᵀ by √d (d = q.shape[-1]), or the "
                "softmax saturates as d grows.",
                lambda q, k, v, mask=None: _attention(q, k, v, mask, scale=1.0)),
        Mistake("the scores are divided by d; divide by √d (the standard deviation of a dot "
                "product of d unit-variance numbers).",
                lambda q, k, v, mask=None: _attention(q, k, v, mask, scale=1 / q.shape[-1])),
        Mistake("the softmax runs over the queries (dim=-2); it must run over the keys "
                "(dim=-1), so that each query's weights sum to 1.",
                lambda q, k, v, mask=None: _attention(q, k, v, mask, softmax_dim=-2)),
        Mistake("the mask is inverted: True means 'may attend', so fill the scores where the "
                "mask is False (~mask) with -inf.",
                lambda q, k, v, mask=None: _attention(q, k, v, mask, invert=True)),
        Mistake("masked scores are set to 0, which still gets weight e⁰ = 1 in the softmax; "
                "set them to -inf (float('-inf')) so that their weight is exactly 0.",
                lambda q, k, v, mask=None: _attention(q, k, v, mask, fill=0.0)),
    ],
    forbidden=_forbidden(attention=True, allowed="Use matmul (@), softmax and masked_fill."),
)


# --- MultiHeadSelfAttention ---------------------------------------------------------------------


class _ReferenceAttention(nn.Module):
    """``nn.MultiheadAttention(batch_first=True)`` whose weights are ``qkv`` and ``proj``.

    ``mask`` is True where a query may attend to a key: a ``(B, N)`` key-padding mask, or a mask
    broadcastable to ``(B, h, N, N)``; torch's masks mean the opposite (True = ignore).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError("dim is not divisible by num_heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mha = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        # share the parameters: in_proj is q, k, v stacked, exactly the rows of qkv
        self.mha.in_proj_weight, self.mha.in_proj_bias = self.qkv.weight, self.qkv.bias
        self.mha.out_proj.weight, self.mha.out_proj.bias = self.proj.weight, self.proj.bias

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        if x.ndim != 3 or x.shape[-1] != self.qkv.in_features:
            raise ValueError("expected x (B, N, D)")
        batch, tokens, _ = x.shape
        padding, attn_mask = None, None
        if mask is not None and mask.ndim == 2:
            padding = ~mask  # (B, N): True = a padding key to ignore
        elif mask is not None:
            full = mask.expand(batch, self.num_heads, tokens, tokens)
            attn_mask = ~full.reshape(batch * self.num_heads, tokens, tokens)
        out, weights = self.mha(x, x, x, key_padding_mask=padding, attn_mask=attn_mask,
                                need_weights=return_weights, average_attn_weights=False)
        return (out, weights) if return_weights else out  # (B, N, D), (B, h, N, N)


class _ManualAttention(nn.Module):
    """Multi-head attention by hand, with the knobs that make the common mistakes."""

    def __init__(self, dim: int, num_heads: int, split: str = "right", merge: str = "right",
                 invert_mask: bool = False):
        super().__init__()
        self.num_heads, self.split, self.merge, self.invert_mask = num_heads, split, merge, \
            invert_mask
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None, return_weights=False):
        batch, tokens, dim = x.shape
        h, d = self.num_heads, dim // self.num_heads
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # each (B, N, D)
        if self.split == "right":
            q, k, v = (t.reshape(batch, tokens, h, d).transpose(1, 2) for t in (q, k, v))
        else:  # (B, N, D) read as (B, h, N, d) without the transpose
            q, k, v = (t.reshape(batch, h, tokens, d) for t in (q, k, v))
        if mask is not None and mask.ndim == 2:
            mask = mask[:, None, None, :]
        if mask is not None and self.invert_mask:
            mask = ~mask
        out, weights = _attention(q, k, v, mask)  # (B, h, N, d), (B, h, N, N)
        if self.merge == "right":
            out = out.transpose(1, 2).reshape(batch, tokens, dim)
        else:
            out = out.reshape(batch, tokens, dim)
        out = self.proj(out)
        return (out, weights) if return_weights else out


_ATTENTION_MISTAKES = [
    Mistake("the heads are split without the transpose: reshape (B, N, D) to (B, N, h, d) and "
            "then transpose to (B, h, N, d); reshaping straight to (B, h, N, d) mixes tokens "
            "and heads.", lambda dim, heads: _ManualAttention(dim, heads, split="wrong")),
    Mistake("the heads are merged without the transpose: (B, h, N, d) must go back to "
            "(B, N, h, d) (transpose(1, 2)) before the reshape to (B, N, D).",
            lambda dim, heads: _ManualAttention(dim, heads, merge="wrong")),
    Mistake("the heads are split and merged with reshapes alone: (B, N, D) read as "
            "(B, h, N, d) puts pieces of different tokens in one head's row. Reshape to "
            "(B, N, h, d) and transpose(1, 2) to (B, h, N, d); after attention, transpose "
            "back to (B, N, h, d) before the reshape to (B, N, D).",
            lambda dim, heads: _ManualAttention(dim, heads, split="wrong", merge="wrong")),
    Mistake("the padding mask is inverted: True marks a real token that may be attended "
            "(torch's key_padding_mask means the opposite).",
            lambda dim, heads: _ManualAttention(dim, heads, invert_mask=True)),
]


def _attention_case(generator, name, dim, heads, batch, tokens, dtype=torch.float32,
                    mask=None, return_weights=None, **kwargs) -> Case:
    weights = _random_weights(_ReferenceAttention(dim, heads), generator, dtype)
    inputs: dict[str, Any] = {"dim": dim, "num_heads": heads,
                              "x": _randn(generator, batch, tokens, dim, dtype=dtype)}
    if mask is not None:
        inputs["mask"] = mask
    if return_weights is not None:
        inputs["return_weights"] = return_weights
    inputs.update(weights)
    grad = () if kwargs.get("raises") else ["x", *weights]
    return Case(name, inputs, grad=grad, **kwargs)


def _padding(lengths: Sequence[int], tokens: int) -> torch.Tensor:
    return torch.arange(tokens)[None, :] < torch.tensor(lengths)[:, None]  # (B, N)


def _mhsa_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    cases = [
        _attention_case(g, "D = 8, 2 heads, x (2, 5, 8)", 8, 2, 2, 5),
        _attention_case(g, "batch 1, D = 12, 3 heads, 7 tokens, padding mask (1, 7) with 2 "
                           "padding tokens", 12, 3, 1, 7, mask=_padding([5], 7)),
        _attention_case(g, "float64, D = 6, 1 head, padding mask of lengths 4, 2, 3", 6, 1,
                        3, 4, dtype=torch.float64, mask=_padding([4, 2, 3], 4)),
        _attention_case(g, "return_weights=True: (output, weights (B, h, N, N)), D = 8, "
                           "4 heads", 8, 4, 2, 5, mask=_padding([5, 3], 5),
                        return_weights=True),
        _attention_case(g, "D = 10 with 3 heads (10 is not divisible by 3), which it must "
                           "refuse", 9, 3, 2, 4, raises=ValueError),
    ]
    cases[-1].inputs["dim"] = 10
    if hidden:
        causal = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
        cases[-1:-1] = [
            _attention_case(g, "D = 16, 8 heads, a causal mask (1, 1, 6, 6)", 16, 8, 2, 6,
                            mask=causal),
            _attention_case(g, "a single token", 8, 2, 3, 1),
            _attention_case(g, "65 tokens (a 32×32 image in 4×4 patches + [CLS])", 16, 4, 2, 65,
                            return_weights=True),
        ]
    return cases


MultiHeadSelfAttention = Check(
    exercise="MultiHeadSelfAttention",
    reference=_ReferenceAttention,
    cases=_mhsa_cases,
    run=_module_runner(("dim", "num_heads"), ("x", "mask", "return_weights")),
    mistakes=_ATTENTION_MISTAKES,
    forbidden=_forbidden(attention=True,
                         allowed="Use your scaled_dot_product_attention, reshape and transpose."),
)


# --- TransformerBlock: pre-norm ----------------------------------------------------------------


class _ReferenceBlock(nn.Module):
    """Pre-norm block from torch layers: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, variant: str = "pre",
                 attention: Callable[[int, int], nn.Module] = _ReferenceAttention):
        super().__init__()
        self.variant = variant
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        activation = nn.ReLU() if variant == "relu" else nn.GELU()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), activation, nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        if self.variant == "post":  # the original transformer's post-norm
            attended, weights = self.attn(x, mask, return_weights=True)
            x = self.norm1(x + attended)
            x = self.norm2(x + self.mlp(x))
        elif self.variant == "no residual":
            x, weights = self.attn(self.norm1(x), mask, return_weights=True)
            x = self.mlp(self.norm2(x))
        else:
            attended, weights = self.attn(self.norm1(x), mask, return_weights=True)
            x = x + attended  # (B, N, D), ViT eq. 2
            x = x + self.mlp(self.norm2(x))  # (B, N, D), ViT eq. 3
        return (x, weights) if return_weights else x


def _block_case(generator, name, dim, heads, mlp_ratio, batch, tokens, dtype=torch.float32,
                mask=None, return_weights=None) -> Case:
    weights = _random_weights(_ReferenceBlock(dim, heads, mlp_ratio), generator, dtype)
    inputs: dict[str, Any] = {"dim": dim, "num_heads": heads, "mlp_ratio": mlp_ratio,
                              "x": _randn(generator, batch, tokens, dim, dtype=dtype)}
    if mask is not None:
        inputs["mask"] = mask
    if return_weights is not None:
        inputs["return_weights"] = return_weights
    inputs.update(weights)
    return Case(name, inputs, grad=["x", *weights])


def _block_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    cases = [
        _block_case(g, "D = 8, 2 heads, mlp_ratio 4, x (2, 5, 8)", 8, 2, 4.0, 2, 5),
        _block_case(g, "batch 1, D = 12, 3 heads, mlp_ratio 2, padding mask", 12, 3, 2.0, 1, 6,
                    mask=_padding([4], 6)),
        _block_case(g, "float64, D = 6, 2 heads", 6, 2, 4.0, 3, 4, dtype=torch.float64),
        _block_case(g, "return_weights=True: (output, the attention's weights)", 8, 4, 4.0, 2,
                    5, return_weights=True),
    ]
    if hidden:
        cases += [
            _block_case(g, "mlp_ratio 1.5 (hidden width int(6 · 1.5) = 9)", 6, 3, 1.5, 2, 4),
            _block_case(g, "65 tokens, D = 16, 4 heads", 16, 4, 4.0, 2, 65),
        ]
    return cases


TransformerBlock = Check(
    exercise="TransformerBlock",
    reference=_ReferenceBlock,
    cases=_block_cases,
    run=_module_runner(("dim", "num_heads", "mlp_ratio"), ("x", "mask", "return_weights")),
    mistakes=[
        Mistake("this is the post-norm block of the original transformer (norm after the "
                "residual sum); the ViT is pre-norm: x + attn(norm1(x)), then "
                "x + mlp(norm2(x)).",
                lambda d, h, r=4.0: _ReferenceBlock(d, h, r, "post", _ManualAttention)),
        Mistake("the residual connections are missing: add each sub-layer's output to its "
                "input (x = x + ...).",
                lambda d, h, r=4.0: _ReferenceBlock(d, h, r, "no residual", _ManualAttention)),
        Mistake("the MLP uses ReLU; the ViT's MLP uses GELU (nn.GELU()).",
                lambda d, h, r=4.0: _ReferenceBlock(d, h, r, "relu", _ManualAttention)),
    ],
    forbidden=_forbidden(attention=True,
                         allowed="Use your MultiHeadSelfAttention, nn.LayerNorm and nn.Linear."),
)


# --- VisionTransformer: its architecture, then its accuracy once trained ------------------------


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
    weights = _random_weights(_ReferenceViT(*config), generator, dtype)
    image_size, _, in_channels = config[:3]
    images = torch.rand((batch, in_channels, image_size, image_size), generator=generator,
                        dtype=torch.float64).to(dtype)
    inputs = {**dict(zip(_VIT_INIT, config, strict=True)), "images": images, **weights}
    return Case(name, inputs, grad=["images", *weights])


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


vit_architecture = Check(
    exercise="VisionTransformer",
    reference=_ReferenceViT,
    cases=_vit_cases,
    run=_module_runner(_VIT_INIT, ("images",)),
    mistakes=[
        Mistake("it classifies the mean of the patch tokens; the ViT classifies the [CLS] "
                "token, x[:, 0], after the final LayerNorm.",
                lambda *a: _ReferenceViT(*a, pooling="mean")),
        Mistake("it classifies the last token; [CLS] is token 0: x[:, 0].",
                lambda *a: _ReferenceViT(*a, pooling="last")),
        Mistake("the final LayerNorm (`norm`) is missing: apply it to the tokens after the "
                "last block, before the head (ViT eq. 4).",
                lambda *a: _ReferenceViT(*a, final_norm=False)),
    ],
    forbidden=_forbidden(patches=True, conv=True, attention=True,
                         allowed="Build it from your PatchEmbedding and TransformerBlock."),
)


#: Held-out images the quality check renders: the Shapes world's 15 colour–shape classes.
QUALITY_IMAGES = {"visible": 750, "hidden": 1500}


def _quality_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    from course_utils.data import ShapesClassification

    seed = 10_000 + int(torch.randint(0, 1_000_000, (1,), generator=generator))
    size = QUALITY_IMAGES["hidden" if hidden else "visible"]
    held_out = ShapesClassification("test", size=size, seed=seed, hold_out=False)
    return [Case(f"{size} held-out 32×32 Shapes images (test split, seed {seed})",
                 {"images": held_out.images}, private={"labels": held_out.labels})]


def _model_device(model: Any) -> torch.device:
    if isinstance(model, nn.Module):
        for tensor in model.parameters():
            return tensor.device
    return torch.device("cpu")


def _run_classifier(model: Any, case: Case) -> Outputs:
    """Logits of the model on the case's images, in batches of 250, on the model's device."""
    device = _model_device(model)
    images = case.inputs["images"]
    logits = [model(images[i:i + 250].to(device)) for i in range(0, len(images), 250)]
    if not all(type(x) is torch.Tensor for x in logits):
        raise TypeError(f"the model returned {type(logits[0]).__name__}, expected logits")
    return {"output": torch.cat(logits).detach().cpu()}


def _score_classifier(case: Case, outputs: Outputs) -> dict[str, float]:
    logits, labels = outputs["output"], case.private["labels"]
    if type(logits) is not torch.Tensor or logits.shape != (len(labels), 15):
        raise ValueError(f"expected logits of shape ({len(labels)}, 15), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    correct = (logits.argmax(dim=1) == labels).float()
    per_class = torch.stack([correct[labels == k].mean() for k in labels.unique()])
    return {"ViT held-out accuracy": correct.mean().item(),
            "ViT worst-class accuracy": per_class.min().item()}


VisionTransformer = QualityCheck(
    exercise="VisionTransformer held-out accuracy",
    cases=_quality_cases,
    run=_run_classifier,
    score=_score_classifier,
    thresholds={"ViT held-out accuracy": 0.95},
    hint="check that the loss curve went down to about 0.05 and that the model trained on "
         "the 15 classes (hold_out=False); train a few more epochs or with more images.",
    forbidden=_forbidden(attention=True, allowed="The ViT must use your own attention."),
)
