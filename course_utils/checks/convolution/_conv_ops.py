"""What the exercises of notebook 01 share: torch's convolution, im2col and pooling ops (refused
while a student's code runs), exact float32 convolutions, (height, width) pairs, seeded inputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from course_utils.checks.forbid import Forbidden

#: torch's Python entry points to convolution, im2col and pooling (for a message naming them).
#: ``torch.conv2d`` is the same object as ``F.conv2d``: ``F`` is listed first, so the message
#: names it (the first name of an alias wins).
FORBIDDEN_FUNCTIONS = (
    "torch.nn.functional.conv1d", "torch.nn.functional.conv2d", "torch.nn.functional.conv3d",
    "torch.nn.functional.conv_transpose1d", "torch.nn.functional.conv_transpose2d",
    "torch.nn.functional.conv_transpose3d",
    "torch.nn.functional.unfold", "torch.nn.functional.fold",
    "torch.nn.functional.max_pool1d", "torch.nn.functional.max_pool2d",
    "torch.nn.functional.max_pool3d", "torch.nn.functional.max_pool2d_with_indices",
    "torch.nn.functional.avg_pool1d", "torch.nn.functional.avg_pool2d",
    "torch.nn.functional.avg_pool3d", "torch.nn.functional.lp_pool2d",
    "torch.nn.functional.adaptive_max_pool2d", "torch.nn.functional.adaptive_avg_pool2d",
    "torch.nn.functional.fractional_max_pool2d",
    "torch.conv1d", "torch.conv2d", "torch.conv3d", "torch.convolution",
    "torch.conv_transpose1d", "torch.conv_transpose2d", "torch.conv_transpose3d",
    "torch.max_pool1d", "torch.max_pool2d", "torch.max_pool3d", "torch.avg_pool1d",
    "torch.adaptive_avg_pool1d", "torch.adaptive_max_pool1d",
)

#: The kernels under them, as a TorchDispatchMode sees them (checked on torch 2.14: F.conv2d,
#: nn.Conv2d, conv1d and conv_transpose2d all reach ``convolution``; F.unfold ``im2col``,
#: F.fold ``col2im``; max pooling ``max_pool2d_with_indices``, average pooling ``avg_pool2d``),
#: plus the backend kernels a student could call through ``torch.ops.aten``.
FORBIDDEN_ATEN = (
    "convolution", "_convolution", "_convolution_mode", "convolution_overrideable",
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "mkldnn_convolution", "cudnn_convolution", "cudnn_convolution_transpose",
    "miopen_convolution", "_nnpack_spatial_convolution", "_slow_conv2d_forward",
    "thnn_conv2d", "slow_conv_dilated2d", "slow_conv_transpose2d", "_conv_depthwise2d",
    "slow_conv3d", "slow_conv3d_forward",
    "im2col", "col2im",
    "max_pool1d", "max_pool1d_with_indices", "max_pool2d", "max_pool2d_with_indices",
    "max_pool3d", "max_pool3d_with_indices", "mkldnn_max_pool2d", "quantized_max_pool2d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "_adaptive_avg_pool2d",
    "mkldnn_adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "fractional_max_pool2d",
)


def forbidden(allowed: str) -> Forbidden:
    """torch's convolution, im2col and pooling, refused at the Python and the kernel level."""
    return Forbidden(functions=FORBIDDEN_FUNCTIONS, aten=FORBIDDEN_ATEN, allowed=allowed)


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(2, 1)`` -> ``(2, 1)``: (height, width) as torch reads them."""
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


def gaussian(generator: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    """Seeded standard normal values of ``shape``, drawn in float64 whatever ``dtype``."""
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """cuDNN convolutions in true float32 (it defaults to TF32 on recent GPUs, with errors of
    about 1e-3): the references must be as exact as the student's float32 matmul."""
    cudnn = torch.backends.cudnn
    with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                     deterministic=cudnn.deterministic, allow_tf32=False):
        yield
