"""What the exercises of notebook 02 share: the torch functions, kernels and library modules
they refuse (``forbidden``), seeded inputs (``randn``, ``padding_mask``) and module cases
(``module_case``, ``tokens_case``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from course_utils.checks.case import Case
from course_utils.checks.forbid import Forbidden
from course_utils.checks.runners import FORWARD, INIT, PARAM, random_parameters

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


def forbidden(patches: bool = False, conv: bool = False, attention: bool = False,
              allowed: str = "") -> Forbidden:
    """The library modules, and those of the patch, convolution and attention functions asked
    for, refused while the student's code runs; ``allowed`` says what to use instead."""
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


def randn(generator: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    """Standard normal values of ``shape``, drawn in float64 from ``generator`` (the same numbers
    whatever ``dtype``)."""
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def module_case(generator: torch.Generator, name: str, reference: Callable[..., nn.Module],
                init: dict[str, Any], forward: dict[str, Any], dtype=torch.float32,
                **kwargs) -> Case:
    """A case of a module exercise for ``runners.run_module``.

    ``init`` are the constructor's arguments (by keyword), ``forward`` the forward's (the first
    by position, the others, such as ``mask`` and ``return_weights``, by keyword); the weights
    are ``random_parameters`` of ``reference(**init)``. Gradients are compared for the forward's
    floating-point tensors and every parameter, unless the case must raise.
    """
    weights = random_parameters(reference(**init), generator, dtype)
    inputs = {**{INIT + k: v for k, v in init.items()}, **weights,
              **{FORWARD + k: v for k, v in forward.items()}}
    grad = [] if kwargs.get("raises") else [
        *(k for k, v in forward.items() if torch.is_tensor(v) and v.is_floating_point()),
        *(k.removeprefix(PARAM) for k in weights)]
    return Case(name, inputs, keyword=list(forward)[1:], grad=grad, **kwargs)


def tokens_case(generator: torch.Generator, name: str, reference: Callable[..., nn.Module],
                init: dict[str, Any], batch: int, tokens: int, dtype=torch.float32,
                mask: torch.Tensor | None = None, return_weights: bool | None = None,
                **kwargs) -> Case:
    """A case of a module on tokens, ``forward(x (B, N, D), mask=None, return_weights=False)``;
    ``mask`` and ``return_weights`` are passed only when given."""
    forward: dict[str, Any] = {"x": randn(generator, batch, tokens, init["dim"], dtype=dtype)}
    if mask is not None:
        forward["mask"] = mask
    if return_weights is not None:
        forward["return_weights"] = return_weights
    return module_case(generator, name, reference, init, forward, dtype, **kwargs)


def padding_mask(lengths: Sequence[int], tokens: int) -> torch.Tensor:
    """(B, N) key-padding mask, True for the first ``lengths[b]`` tokens of item b."""
    return torch.arange(tokens)[None, :] < torch.tensor(lengths)[:, None]  # (B, N)
