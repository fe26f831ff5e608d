"""Checks of notebook 01_convolution_pooling: convolution and pooling from scratch.

The exercises, in notebook order, one file each:

- ``conv_output_size``: ``H' = (H + 2p − K) // s + 1`` (Dumoulin & Visin 2016);
- ``conv2d_naive`` and ``conv2d`` (im2col) against ``F.conv2d``;
- ``max_pool2d`` and ``avg_pool2d`` against ``F.max_pool2d`` and ``F.avg_pool2d``;
- ``sobel_edges`` against a Sobel filter built from ``F.conv2d``;
- ``small_cnn`` (``quality.py``): the trained ``SmallCNN``'s accuracy on Shapes-world images
  the check renders itself.

While the student's code runs, every convolution and pooling op of torch is refused, and so are
``F.unfold`` / ``F.fold`` (the im2col a student is asked to write); ``Tensor.unfold``,
``as_strided``, ``einsum`` and ``matmul`` stay allowed (``_conv_ops.py``).
"""

from __future__ import annotations

from course_utils.checks.convolution._conv_ops import FORBIDDEN_ATEN, FORBIDDEN_FUNCTIONS
from course_utils.checks.convolution.avg_pool2d import avg_pool2d
from course_utils.checks.convolution.conv2d import conv2d
from course_utils.checks.convolution.conv2d_naive import conv2d_naive
from course_utils.checks.convolution.conv_output_size import conv_output_size
from course_utils.checks.convolution.max_pool2d import max_pool2d
from course_utils.checks.convolution.quality import CNN_ACCURACY, CNN_THRESHOLD, small_cnn
from course_utils.checks.convolution.sobel_edges import SOBEL_X, sobel_edges

__all__ = [
    "CNN_ACCURACY", "CNN_THRESHOLD", "FORBIDDEN_ATEN", "FORBIDDEN_FUNCTIONS", "SOBEL_X",
    "avg_pool2d", "conv2d", "conv2d_naive", "conv_output_size", "max_pool2d", "small_cnn",
    "sobel_edges",
]
