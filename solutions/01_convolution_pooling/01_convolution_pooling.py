# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Vision encoders I: convolution and pooling
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/multimodal-from-scratch/course/blob/main/notebooks/01_convolution_pooling/01_convolution_pooling.ipynb)
#
# Every multimodal model needs an **image encoder**: a network that turns a grid of pixels
# into features a text model can be compared with (CLIP, notebook 04) or attend to (ViLT,
# notebook 05). The first and still widely used kind is the convolutional neural network
# (CNN): small filters slide over the image and detect local patterns, pooling summarises
# them, and stacking both sees ever larger parts of the picture. In this notebook you build
# these two operations from scratch, check them against PyTorch, design filters by hand on a
# real photo, and then train a small CNN on the Shapes world and look inside it.
#
# **You will learn**
# - what a convolution layer computes (a *cross-correlation*, as deep learning uses the word),
#   and how large its output is;
# - to write it twice: with loops you can follow by hand, and with *im2col*, one matrix
#   product, the way fast libraries began;
# - max and average pooling;
# - hand-made filters (blur, Sobel edges) on a photograph;
# - to write a training loop and train your first network, a small CNN, to ≥ 95 % held-out
#   accuracy, and to read its feature maps;
# - to test a claim by experiment: what the network loses without its non-linearities;
# - the receptive field: how much of the image one unit sees.
#
# **Time:** about 2.5–3 hours: 40 minutes of reading, 1.5–2 hours of exercises and written
# answers, and about a minute of running. The solution notebook runs top to bottom in about
# 40 seconds on a 2-core laptop CPU (most of it training, the experiment included), and in
# seconds on a GPU.
#
# **Prerequisites:** notebook 00 (images as `(C, H, W)` tensors, the Shapes world); PyTorch
# indexing, `reshape`/`permute` and matrix products; what a gradient is (`loss.backward()`
# computes it for you).

# %% [markdown]
# ## Set-up
#
# Run the next cell first. On Google Colab it installs the course package; on your own
# machine it only imports what the notebook needs. It picks the fastest device you have and
# seeds the random number generators.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("course_utils") is None:  # first run on Colab, or the wrong kernel
    from IPython.core.error import UsageError  # stops the cell with a message, no traceback

    if "google.colab" not in sys.modules:
        raise UsageError("This kernel cannot import course_utils: choose the course's kernel "
                         "(Kernel → Change Kernel…), or install the course into this one with "
                         "`pip install -e \".[lab]\"` in the course folder.")
    print("Installing the course package (under a minute)…")  # pip leaves Colab's torch alone
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "course_utils @ "
                          "git+https://github.com/multimodal-from-scratch/course"],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        raise UsageError("Could not install the course package: check that this runtime is "
                         "connected to the internet, then run this cell again.\n\n" + pip.stderr)
    importlib.invalidate_caches()

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import course_utils
from course_utils import data, plotting, training
from course_utils.checks import convolution as checks

device = course_utils.get_device()
course_utils.seed_everything(0)
print(f"course_utils {course_utils.__version__}, torch {torch.__version__}, device: {device}")

# %% [markdown]
# The next cell holds the matplotlib code of this notebook's diagrams (grids of numbers with
# a highlighted window). Nothing in it is part of the lesson; run it and move on.

# %%
def draw_grid(ax, values, title="", box=None, fmt="{:.0f}", cmap="Greys_r", padding=0,
              vmin=None, vmax=None):
    """Draw a 2-D array as a grid of cells with its numbers; ``box = (row, col, h, w)`` is
    outlined in red; the outer ``padding`` rings are hatched (zeros added by padding)."""
    values = np.asarray(values, dtype=np.float64)
    shown = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    for (r, c), v in np.ndenumerate(values):
        if fmt:
            red, green, blue, _ = shown.cmap(shown.norm(v))  # the cell's colour
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=8,
                    color="black" if light else "white")
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            if min(r, c, rows - 1 - r, cols - 1 - c) < padding:
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="//",
                                           edgecolor="tab:blue", lw=0))
    ax.set_xticks(np.arange(-0.5, cols), minor=True)
    ax.set_yticks(np.arange(-0.5, rows), minor=True)
    ax.grid(which="minor", color="0.6", lw=0.5)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    if box is not None:
        r, c, h, w = box
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), w, h, fill=False, edgecolor="red",
                                   lw=2.5))
    ax.set_title(title, fontsize=9)


def show_signed(maps, titles, ncols=4, size=2.6, title=None, gray=(), clip=100.0):
    """2-D maps (filter responses): signed ones in a red–blue colour map centred on zero
    (its limit at the ``clip`` percentile of |value|), those whose index is in ``gray`` in
    grey from 0 to 1."""
    ncols = min(ncols, len(maps))
    nrows = -(-len(maps) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (ax, m, t) in enumerate(zip(axes.flat, maps, titles, strict=False)):
        m = m.detach().float().cpu().numpy() if torch.is_tensor(m) else np.asarray(m)
        if k in gray:
            ax.imshow(m, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            limit = max(float(np.percentile(np.abs(m), clip)), 1e-12)
            ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(t, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# %% [markdown]
# ## 1 · An image is a grid of numbers
#
# A grayscale image is a matrix of brightness values; a colour image is three of them, one
# per channel, stored as a tensor `(C, H, W)`, and a batch of images as `(B, C, H, W)`
# (notebook 00). A convolution never looks at the whole image at once: it reads a small
# neighbourhood of pixels at a time. Here is what such a neighbourhood looks like in the
# photo that ships with matplotlib.

# %%
photo = data.images_to_tensor(data.load_sample_photo()[None])  # (1, 3, 600, 512) in [0, 1]
luma = torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601, as in notebook 00
gray_photo = (photo * luma).sum(dim=1, keepdim=True)  # (1, 1, 600, 512)
print("photo", tuple(photo.shape), "gray", tuple(gray_photo.shape))

top, left = 190, 195  # a 12×12 crop around an eye
fig, axes = plt.subplots(1, 2, figsize=(10, 5), gridspec_kw={"width_ratios": [1, 1.1]})
axes[0].imshow(gray_photo[0, 0], cmap="gray", vmin=0, vmax=1)
axes[0].add_patch(plt.Rectangle((left, top), 12, 12, fill=False, edgecolor="red", lw=2))
axes[0].set_title("gray_photo[0, 0]: 600 × 512 numbers")
axes[0].axis("off")
crop = gray_photo[0, 0, top:top + 12, left:left + 12]  # (12, 12)
draw_grid(axes[1], (crop * 255).round(), "the red square, ×255: what a 3×3 filter reads",
          vmin=0, vmax=255)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2 · What a convolution layer computes
#
# A **kernel** (or *filter*) is a small grid of weights, say $3 \times 3$. It slides over the
# image; at each position it multiplies the pixels under it by its weights and adds the
# products up. The result is large where the image *looks like* the kernel, so a kernel is a
# template, and the output (a **feature map**) says where the template matches. The same
# weights are used at every position (*weight sharing*): a pattern is detected wherever it
# is, with a handful of parameters (LeCun et al., 1989).
#
# For one channel and a $K_H \times K_W$ kernel $w$, the output at row $i$, column $j$ is
#
# $$y[i, j] = \sum_{k=0}^{K_H - 1} \sum_{l=0}^{K_W - 1} w[k, l]\; x[i + k,\; j + l]. \tag{1}$$
#
# A **convolution layer** does this for every pair of input channel $c$ and output channel
# $o$, adds the results over the input channels, adds a bias $\beta_o$, and may step the
# window by a **stride** $s$ and pad the image with $p$ zeros on every side (written
# $\tilde x$):
#
# $$y[b, o, i, j] = \beta_o + \sum_{c=0}^{C-1} \sum_{k=0}^{K_H-1} \sum_{l=0}^{K_W-1}
#   w[o, c, k, l]\; \tilde x[b,\, c,\, s_H i + k,\, s_W j + l]. \tag{2}$$
#
# Shapes: input $x$ `(B, C, H, W)`, weight $w$ `(C_out, C, K_H, K_W)` (one filter per output
# channel, each spanning all input channels), bias $\beta$ `(C_out,)`, output $y$
# `(B, C_out, H', W')`.
#
# **Cross-correlation, not convolution.** In mathematics and signal processing, the
# convolution *flips* the kernel: $(x * w)[i, j] = \sum_{k,l} w[k, l]\, x[i - k, j - l]$
# (Goodfellow et al., 2016, *Deep Learning*, §9.1, eq. 9.5, the commutative form of their
# eq. 9.4). Equation (1) has no flip: it is
# a *cross-correlation* (their eq. 9.6), and it is what every deep-learning library computes
# and calls convolution. For a learned kernel the difference does not matter (the network
# learns the flipped kernel instead); for a hand-made kernel, or to match a library, it does.
#
# Here is equation (1) at one position, on a $6 \times 8$ image with a bright vertical bar and a
# kernel that subtracts the window's left column from its right one:

# %%
toy = torch.zeros(1, 1, 6, 8)  # (B, C, H, W)
toy[..., 3:5] = 9.0  # a bright bar in columns 3 and 4
edge_kernel = torch.tensor([[-1.0, 0.0, 1.0]] * 3).view(1, 1, 3, 3)  # (C_out, C, K_H, K_W)
toy_out = F.conv2d(toy, edge_kernel)  # (1, 1, 4, 6): PyTorch's conv2d, eq. (1)
i, j = 1, 2
window = toy[0, 0, i:i + 3, j:j + 3]
terms = " + ".join(f"({w:.0f})·{v:.0f}" for w, v in zip(edge_kernel.flatten().tolist(),
                                                        window.flatten().tolist(), strict=True)
                   if w != 0)
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), gridspec_kw={"width_ratios": [8, 3, 6]})
draw_grid(axes[0], toy[0, 0], f"input x (6×8), window at ({i}, {j})", box=(i, j, 3, 3))
draw_grid(axes[1], edge_kernel[0, 0], "kernel w (3×3)", cmap="RdBu_r", vmin=-1.5, vmax=1.5)
draw_grid(axes[2], toy_out[0, 0], f"output y (4×6): y[{i}, {j}]", box=(i, j, 1, 1),
          cmap="RdBu_r", vmin=-40, vmax=40)
fig.suptitle(f"y[{i}, {j}] = {terms} = {toy_out[0, 0, i, j]:.0f}", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# The output is $+27$ where the window's right column is on the bar and its left column is
# not (the bar's left edge), $-27$ at the bar's right edge, and 0 wherever the window sees a
# flat region: a detector of vertical edges, with their direction in the sign. Note also that
# the output is **smaller** than the input: a $3 \times 3$ window fits in only 6 positions
# along a row of 8, and in 4 along a column of 6.
#
# ## 3 · How large is the output?
#
# Along one axis, the padded input has $H + 2p$ positions. The window's first position is 0,
# the next $s$, then $2s$, …; the last one must still fit, so it starts at most at
# $H + 2p - K$. Counting the positions (Dumoulin & Visin, 2016, relationship 6):
#
# $$H' = \left\lfloor \frac{H + 2p - K}{s} \right\rfloor + 1. \tag{3}$$
#
# The same holds for the width with $W, K_W, s_W, p_W$. Two cases to remember: with $K = 3$,
# $s = 1$, $p = 1$ the size is kept ("same" padding), and a stride of 2 halves it.
#
# ### Exercise 1 · `conv_output_size` (1 point)
#
# Implement equation (3) for one axis, with integers only. Raise a `ValueError` when no window
# fits (the kernel is longer than the padded input), or when `stride < 1`, `padding < 0` or
# `kernel_size < 1`.

# %% nbgrader={"grade": false, "grade_id": "conv_output_size", "locked": false, "schema_version": 3, "solution": true, "task": false}
def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Number of positions of a sliding window along one axis, eq. (3).

        H' = (H + 2·padding − kernel_size) // stride + 1

    Args:
        size: the input's length along the axis (H or W).
        kernel_size: the window's length along it (K_H or K_W), ≥ 1.
        stride: the step between two windows, ≥ 1.
        padding: the number of zeros added at *each* end, ≥ 0.

    Returns:
        the output's length H' (an int ≥ 1).

    Raises:
        ValueError: if kernel_size > size + 2·padding, or stride < 1, padding < 0,
            kernel_size < 1.
    """
    ### BEGIN SOLUTION
    if stride < 1 or padding < 0 or kernel_size < 1:
        raise ValueError(f"expected stride ≥ 1, padding ≥ 0 and kernel_size ≥ 1, got "
                         f"stride={stride}, padding={padding}, kernel_size={kernel_size}")
    if kernel_size > size + 2 * padding:
        raise ValueError(f"a window of {kernel_size} does not fit in {size} + 2·{padding} = "
                         f"{size + 2 * padding} positions")
    return (size + 2 * padding - kernel_size) // stride + 1
    ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `32 16 4 112`: "same" padding, stride 2, the example
# of section 2, and the first layer of a ResNet on a 224-pixel image (a $7 \times 7$ kernel,
# stride 2, padding 3).

# %%
print(conv_output_size(32, 3, 1, 1), conv_output_size(32, 3, 2, 1), conv_output_size(6, 3),
      conv_output_size(224, 7, 2, 3))

# %% nbgrader={"grade": true, "grade_id": "test_conv_output_size", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Checks conv_output_size against eq. (3): sizes, kernels, strides, paddings, ValueErrors.
checks.conv_output_size(conv_output_size)
### BEGIN HIDDEN TESTS
checks.conv_output_size(conv_output_size, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Where the windows go on a $5 \times 5$ image, for three settings: the first window is
# outlined, and a dot marks the centre of every window, so the dots are the output's pixels.
# Padding (hatched) lets windows sit on the border, which keeps the size; a stride skips
# positions, which shrinks it.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 4))
for ax, (k, s, p) in zip(axes, [(3, 1, 0), (3, 1, 1), (3, 2, 1)], strict=True):
    n = conv_output_size(5, k, s, p)
    grid = np.pad(np.zeros((5, 5)), p, constant_values=1.0)  # 0 = image, 1 = padding
    draw_grid(ax, grid, f"K={k}, s={s}, p={p}: output {n}×{n}", box=(0, 0, k, k), fmt="",
              cmap="Greys", vmin=0, vmax=5, padding=p)
    for r in range(n):
        for c in range(n):
            ax.plot(c * s + (k - 1) / 2, r * s + (k - 1) / 2, "o", color="red", ms=6)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4 · Convolution with loops
#
# The most direct way to compute equation (2) is one output value at a time. It is slow
# (Python runs the innermost lines once per output value), but every line of it is the
# formula, and it is the version to come back to when the fast one confuses you.
#
# ### Exercise 2 · `conv2d_naive` (2 points)
#
# 1. Check the shapes (`ValueError` with the expected shapes otherwise) and turn `stride` and
#    `padding` into pairs with the helper `pair` below.
# 2. Pad: `F.pad(x, (p_W, p_W, p_H, p_H))` adds zeros left, right, top and bottom (its tuple
#    starts from the *last* axis).
# 3. Compute the output size with your `conv_output_size`, and loop over the batch, the output
#    channels and the output rows and columns. For each, cut out the window
#    $\tilde x[b, :, s_H i : s_H i + K_H,\; s_W j : s_W j + K_W]$ `(C, K_H, K_W)`, multiply it
#    by the filter `weight[o]` `(C, K_H, K_W)` and sum: that is the three sums of eq. (2).
# 4. Add the bias (if any) to each output channel.
#
# Collect the values with `out = x.new_zeros(...)` and `out[b, o, i, j] = ...` (a new tensor
# on `x`'s device and with its dtype; autograd follows the assignments), or in a list that
# you `torch.stack`. PyTorch's convolution ops and `F.unfold` are refused while the test runs.

# %% nbgrader={"grade": false, "grade_id": "helpers_pair", "locked": true, "schema_version": 3, "solution": false, "task": false}
def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """An int or a (height, width) pair, as a pair: ``3`` -> ``(3, 3)``; pairs stay pairs."""
    if isinstance(value, int):
        return (value, value)
    if len(value) != 2:
        raise ValueError(f"expected an int or a (height, width) pair, got {value!r}")
    return (int(value[0]), int(value[1]))


# %% nbgrader={"grade": false, "grade_id": "conv2d_naive", "locked": false, "schema_version": 3, "solution": true, "task": false}
def conv2d_naive(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0) -> torch.Tensor:
    """2-D convolution (a cross-correlation) with explicit loops, eq. (2).

    For understanding only: it computes one output value at a time, which is thousands of
    times slower than ``conv2d`` below. Keep inputs tiny.

        y[b, o, i, j] = bias[o] + Σ_c Σ_k Σ_l weight[o, c, k, l] · x̃[b, c, s_H·i + k, s_W·j + l]

    where x̃ is x with ``padding`` zeros on every side.

    Args:
        x: input images (B, C, H, W).
        weight: filters (C_out, C, K_H, K_W).
        bias: (C_out,) or None.
        stride: the step of the window, an int or a (height, width) pair.
        padding: zeros added on each side, an int or a (height, width) pair.

    Returns:
        (B, C_out, H', W') with H' = conv_output_size(H, K_H, s_H, p_H) and W' likewise,
        on x's device and with its dtype.

    Raises:
        ValueError: if x or weight is not 4-D, their channel counts differ, bias is not
            (C_out,), or the kernel does not fit in the padded input.
    """
    ### BEGIN SOLUTION
    # 1. shapes, stride and padding as pairs
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"expected x (B, C, H, W) and weight (C_out, C, K_H, K_W), got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    batch, channels, height, width = x.shape
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    if in_channels != channels:
        raise ValueError(f"x has {channels} channels but weight expects {in_channels}")
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"expected bias ({out_channels},), got {tuple(bias.shape)}")
    (stride_h, stride_w), (pad_h, pad_w) = pair(stride), pair(padding)
    out_h = conv_output_size(height, kernel_h, stride_h, pad_h)
    out_w = conv_output_size(width, kernel_w, stride_w, pad_w)
    # 2. zeros on every side: F.pad lists the last axis first (left, right, top, bottom)
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h))  # (B, C, H + 2·p_H, W + 2·p_W)
    # 3. one output value at a time, eq. (2)
    out = x.new_zeros(batch, out_channels, out_h, out_w)  # (B, C_out, H', W')
    for b in range(batch):
        for o in range(out_channels):
            for i in range(out_h):
                for j in range(out_w):
                    row, col = stride_h * i, stride_w * j
                    window = padded[b, :, row:row + kernel_h, col:col + kernel_w]  # (C, K_H, K_W)
                    out[b, o, i, j] = (window * weight[o]).sum()  # Σ over c, k, l
    # 4. one bias per output channel
    if bias is not None:
        out = out + bias.view(1, out_channels, 1, 1)  # broadcast over B, H', W'
    return out
    ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `torch.Size([1, 2, 3, 3])` and a difference from
# PyTorch's `F.conv2d` of the order of `1e-6`: float32 rounding, because the two add the same
# products in a different order (anything below `1e-4` is fine).

# %%
x_small = torch.randn(1, 3, 5, 6)
w_small, b_small = torch.randn(2, 3, 3, 3), torch.randn(2)
y_small = conv2d_naive(x_small, w_small, b_small, stride=(1, 2), padding=(0, 1))
print(y_small.shape)
print("max |difference| from F.conv2d:",
      (y_small - F.conv2d(x_small, w_small, b_small, (1, 2), (0, 1))).abs().max().item())

# %% nbgrader={"grade": true, "grade_id": "test_conv2d_naive", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks conv2d_naive against F.conv2d on small inputs: stride, padding, bias, float64, grads.
checks.conv2d_naive(conv2d_naive)
### BEGIN HIDDEN TESTS
checks.conv2d_naive(conv2d_naive, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Your loops at work on a Shapes-world image: one call with a weight of shape `(3, 1, 3, 3)`
# gives three feature maps, one per filter. The blur averages the $3 \times 3$
# neighbourhood; the two difference filters respond to brightness changes from left to right
# (red: brighter to the right) and from top to bottom, and are zero on flat regions.

# %%
shapes = data.ShapesClassification("test", size=8, seed=1, hold_out=False)
shape_gray = (shapes.images[:1] * luma).sum(dim=1, keepdim=True)  # (1, 1, 32, 32)
hand_filters = torch.stack([
    torch.full((3, 3), 1 / 9),  # blur: the mean of the window
    torch.tensor([[-1.0, 0.0, 1.0]] * 3),  # right minus left
    torch.tensor([[-1.0, 0.0, 1.0]] * 3).T,  # bottom minus top
]).unsqueeze(1)  # (3, 1, 3, 3): three filters for one input channel
start = time.perf_counter()
responses = conv2d_naive(shape_gray, hand_filters, padding=1)  # (1, 3, 32, 32)
seconds = time.perf_counter() - start
print(f"conv2d_naive: {responses.numel()} output values in {seconds:.2f} s")
show_signed([shape_gray[0, 0], *responses[0]],
            ["input (gray)", "blur", "right − left (red: +)", "bottom − top (red: +)"],
            ncols=4, gray=(0, 1))
plt.show()

# %% [markdown]
# ## 5 · Convolution as one matrix product: im2col
#
# Each output value of eq. (2) is a **dot product**: the window, flattened to
# $C K_H K_W$ numbers, with the filter, flattened the same way. So write every window as a
# column of one matrix $X_{\text{col}}$ (`im2col`: "image to columns"), every filter as a row
# of $W_{\text{row}}$, and all dot products are one matrix product (Chellapilla et al., 2006;
# the Caffe library, Jia et al., 2014):
#
# $$\underbrace{Y}_{C_{out} \times H'W'} = \underbrace{W_{\text{row}}}_{C_{out} \times
#   C K_H K_W}\; \underbrace{X_{\text{col}}}_{C K_H K_W \times H'W'} + \beta\,
#   \mathbf{1}^\top \quad\text{for each image.} \tag{4}$$
#
# Matrix products are what CPUs and GPUs do fastest, through decades-tuned BLAS libraries.
#
# **Cutting out the windows without a loop.** `t.unfold(dim, size, step)` returns a *view*
# of every window of length `size` along axis `dim`, `step` apart, in a new last axis; no
# data is copied (it only changes the strides). Applied twice:
#
# ```python
# patches = padded.unfold(2, K_H, s_H).unfold(3, K_W, s_W)  # (B, C, H', W', K_H, K_W)
# ```
#
# To build $X_{\text{col}}$, bring the axes of one window, `(C, K_H, K_W)`, next to each other
# with `permute` and flatten them with `reshape` (this copies: every pixel appears in up to
# $K_H K_W$ windows). They must be flattened in the same order as
# `weight.reshape(C_out, -1)` flattens each filter, `(C, K_H, K_W)`, or the products pair
# the wrong numbers.
#
# Here is $X_{\text{col}}$ of a $4 \times 5$ image whose pixels are numbered, for a
# $3 \times 3$ kernel: column 0 is the outlined window, and PyTorch's own im2col,
# `F.unfold`, gives the same matrix.

# %%
numbered = torch.arange(20.0).view(1, 1, 4, 5)  # (B, C, H, W) = (1, 1, 4, 5)
patches = numbered.unfold(2, 3, 1).unfold(3, 3, 1)  # (1, 1, 2, 3, 3, 3): (B, C, H', W', K, K)
columns = patches.permute(0, 1, 4, 5, 2, 3).reshape(1, 9, 6)  # (B, C·K·K, H'·W')
print("patches", tuple(patches.shape), "-> columns", tuple(columns.shape),
      "| equal to F.unfold:", torch.equal(columns, F.unfold(numbered, 3)))
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), gridspec_kw={"width_ratios": [5, 6]})
draw_grid(axes[0], numbered[0, 0], "image (4×5), window 0", box=(0, 0, 3, 3), cmap="viridis")
draw_grid(axes[1], columns[0], "X_col (9 × 6): one column per window", box=(0, 0, 9, 1),
          cmap="viridis", vmin=0, vmax=19)
axes[1].set_xlabel("window (output position)")
axes[1].set_ylabel("position in the window")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Exercise 3 · `conv2d` (3 points)
#
# The same contract as `conv2d_naive`, without Python loops:
#
# 1. check the shapes, make pairs, compute `H'` and `W'` (as before);
# 2. pad with zeros;
# 3. cut out the windows with `Tensor.unfold` (or `torch.as_strided`);
# 4. im2col: `permute` and `reshape` them into columns `(B, C·K_H·K_W, H'·W')`;
# 5. one matrix product (`@`) or `torch.einsum` with `weight.reshape(C_out, -1)`, eq. (4);
# 6. reshape to `(B, C_out, H', W')` and add the bias.
#
# `F.conv2d`, every other convolution or pooling op of PyTorch, `F.unfold` and `F.fold` are
# refused while the test runs; `Tensor.unfold`, `as_strided`, `einsum` and `matmul` are yours.

# %% nbgrader={"grade": false, "grade_id": "conv2d", "locked": false, "schema_version": 3, "solution": true, "task": false}
def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0) -> torch.Tensor:
    """2-D convolution (a cross-correlation), vectorised with im2col and one matmul, eq. (4).

        y[b, o, i, j] = bias[o] + Σ_c Σ_k Σ_l weight[o, c, k, l] · x̃[b, c, s_H·i + k, s_W·j + l]

    Args:
        x: input images (B, C, H, W).
        weight: filters (C_out, C, K_H, K_W).
        bias: (C_out,) or None.
        stride: the step of the window, an int or a (height, width) pair.
        padding: zeros added on each side, an int or a (height, width) pair.

    Returns:
        (B, C_out, H', W') with H' = conv_output_size(H, K_H, s_H, p_H) and W' likewise,
        on x's device and with its dtype; the same values as ``F.conv2d``.

    Raises:
        ValueError: if x or weight is not 4-D, their channel counts differ, bias is not
            (C_out,), or the kernel does not fit in the padded input.
    """
    ### BEGIN SOLUTION
    # 1. shapes, stride and padding as pairs, output size (eq. 3)
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"expected x (B, C, H, W) and weight (C_out, C, K_H, K_W), got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    batch, channels, height, width = x.shape
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    if in_channels != channels:
        raise ValueError(f"x has {channels} channels but weight expects {in_channels}")
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"expected bias ({out_channels},), got {tuple(bias.shape)}")
    (stride_h, stride_w), (pad_h, pad_w) = pair(stride), pair(padding)
    out_h = conv_output_size(height, kernel_h, stride_h, pad_h)
    out_w = conv_output_size(width, kernel_w, stride_w, pad_w)
    # 2. zeros on every side
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h))  # (B, C, H + 2·p_H, W + 2·p_W)
    # 3. every window, as a view: unfold(dim, size, step) appends the window's axis
    patches = padded.unfold(2, kernel_h, stride_h).unfold(3, kernel_w, stride_w)
    # patches: (B, C, H', W', K_H, K_W)
    # 4. im2col: one column per window, flattened in weight's (C, K_H, K_W) order
    columns = patches.permute(0, 1, 4, 5, 2, 3)  # (B, C, K_H, K_W, H', W')
    columns = columns.reshape(batch, channels * kernel_h * kernel_w, out_h * out_w)
    # columns: (B, C·K_H·K_W, H'·W')
    # 5. every filter with every window: one (batched) matrix product, eq. (4)
    rows = weight.reshape(out_channels, -1)  # (C_out, C·K_H·K_W)
    out = rows @ columns  # (C_out, C·K_H·K_W) @ (B, C·K_H·K_W, H'·W') -> (B, C_out, H'·W')
    out = out.view(batch, out_channels, out_h, out_w)  # (B, C_out, H', W')
    # 6. one bias per output channel
    if bias is not None:
        out = out + bias.view(1, out_channels, 1, 1)
    return out
    ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `torch.Size([8, 16, 16, 16])` and a difference from
# `F.conv2d` of the order of `1e-6` (anything below `1e-4` is fine).

# %%
x_batch = torch.randn(8, 3, 32, 32)
w_batch, b_batch = torch.randn(16, 3, 3, 3), torch.randn(16)
y_batch = conv2d(x_batch, w_batch, b_batch, stride=2, padding=1)
print(y_batch.shape)
print("max |difference| from F.conv2d:",
      (y_batch - F.conv2d(x_batch, w_batch, b_batch, 2, 1)).abs().max().item())

# %% nbgrader={"grade": true, "grade_id": "test_conv2d", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Checks conv2d against F.conv2d: odd sizes, stride/padding pairs, bias, float64, gradients.
checks.conv2d(conv2d)
### BEGIN HIDDEN TESTS
checks.conv2d(conv2d, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# **How fast?** The three versions on the same job: a batch of 64 RGB images of
# $32 \times 32$ pixels, 16 filters of $3 \times 3$, padding 1 (the loops run on one image and
# the time is multiplied by 64).

# %%
def best_of(fn, device, repeats=5):
    """The fastest of ``repeats`` runs of ``fn()`` on ``device``, in seconds (after one
    warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


x_bench = torch.randn(64, 3, 32, 32, device=device)
w_bench, b_bench = torch.randn(16, 3, 3, 3, device=device), torch.randn(16, device=device)
with torch.no_grad():
    timings = {
        "conv2d_naive (×64)": 64 * best_of(lambda: conv2d_naive(x_bench[:1], w_bench, b_bench,
                                                                padding=1), device, repeats=1),
        "your conv2d (im2col)": best_of(lambda: conv2d(x_bench, w_bench, b_bench, padding=1),
                                        device),
        "F.conv2d": best_of(lambda: F.conv2d(x_bench, w_bench, b_bench, padding=1), device),
    }
for name, seconds in timings.items():
    print(f"{name:>22}: {1000 * seconds:9.2f} ms "
          f"({seconds / timings['F.conv2d']:7.1f}× F.conv2d)")
fig, ax = plt.subplots(figsize=(7, 2.4))
ax.barh(list(timings), [1000 * s for s in timings.values()], color=["0.6", "tab:blue", "k"])
ax.set_xscale("log")
ax.set_xlabel(f"milliseconds per batch of 64 on {device.type} (log scale)")
ax.invert_yaxis()
fig.tight_layout()
plt.show()

# %% [markdown]
# On the course's reference CPU, `python -m course_utils bench` measured the solution's
# `conv2d` at about **2×** the time of `F.conv2d` on this job (1.8× with one thread, 1.7× to
# 3× with two on a busy shared machine; forward pass, the median of interleaved runs). Your
# numbers above depend on your machine;
# on a busy one, im2col can be far slower still, because its column matrix is 7 MB of fresh
# memory on every call. The loops are tens of thousands of times slower: Python pays its
# overhead once per output value, im2col once per batch.
#
# Why is PyTorch still faster than your im2col? The column matrix is the expensive part: it
# holds every pixel $K_H K_W = 9$ times (here 64 × 27 × 1024 floats, 7 MB, more than a CPU's
# fast caches), and it is written to memory and read back just to feed a thin matrix product
# (27-long dot products). PyTorch's CPU convolution (oneDNN) never builds it: it works
# directly on the image in a memory layout blocked for the CPU's vector units, with loops
# tiled to stay in cache. On GPUs, cuDNN computes im2col's product *implicitly*, tile by tile
# in fast on-chip memory (Chetlur et al., 2014), or switches to FFT or Winograd algorithms
# that need fewer multiplications for $3 \times 3$ kernels (Lavin & Gray, 2016). The maths is
# your eq. (4) in every case.
#
# ## 6 · Pooling
#
# A **pooling** layer summarises each $K_H \times K_W$ window of each channel by one number,
# separately for every channel, with no weights to learn:
#
# $$y_{\max}[b, c, i, j] = \max_{k < K_H,\; l < K_W} x[b, c, s_H i + k, s_W j + l], \qquad
#   y_{\text{avg}}[b, c, i, j] = \frac{1}{K_H K_W} \sum_{k < K_H,\; l < K_W}
#   x[b, c, s_H i + k, s_W j + l]. \tag{5}$$
#
# The stride defaults to the window size, so windows sit side by side and a $2 \times 2$
# pooling halves height and width (eq. 3 with $p = 0$ gives the size). Pooling shrinks the
# feature maps (less computation for the next layers), lets the next layer's $3 \times 3$
# kernel see a twice larger region (section 9), and makes the features tolerant of shifts of
# a pixel or two. LeNet-5 averaged (LeCun et al., 1998); most networks since take the maximum,
# which keeps "the pattern is somewhere here" (Boureau et al., 2010, compare the two).
#
# ### Exercises 4 and 5 · `max_pool2d` and `avg_pool2d` (1 point each)
#
# `Tensor.unfold` cuts out the windows as in `conv2d`, `(B, C, H', W', K_H, K_W)`; reduce the
# last two axes with `amax` or `mean`. `kernel_size` and `stride` are ints or
# `(height, width)` pairs; `stride=None` means `stride = kernel_size`. A window that does not
# fit entirely is dropped (as in eq. 3). Raise a `ValueError` if `x` is not `(B, C, H, W)` or
# the window is larger than the image.

# %% nbgrader={"grade": false, "grade_id": "max_pool2d", "locked": false, "schema_version": 3, "solution": true, "task": false}
def max_pool2d(x: torch.Tensor, kernel_size: int | tuple[int, int],
               stride: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Max pooling, eq. (5): the largest value of every K_H × K_W window of every channel.

    Args:
        x: (B, C, H, W).
        kernel_size: the window, an int or a (height, width) pair.
        stride: the step between windows, an int or a pair; None means kernel_size.

    Returns:
        (B, C, H', W') with H' = (H − K_H) // s_H + 1 and W' likewise.

    Raises:
        ValueError: if x is not 4-D or the window is larger than the image.
    """
    ### BEGIN SOLUTION
    if x.ndim != 4:
        raise ValueError(f"expected x (B, C, H, W), got {tuple(x.shape)}")
    kernel_h, kernel_w = pair(kernel_size)
    stride_h, stride_w = pair(kernel_size if stride is None else stride)
    conv_output_size(x.shape[2], kernel_h, stride_h)  # raises if the window does not fit
    conv_output_size(x.shape[3], kernel_w, stride_w)
    windows = x.unfold(2, kernel_h, stride_h).unfold(3, kernel_w, stride_w)
    # windows: (B, C, H', W', K_H, K_W)
    return windows.amax(dim=(-2, -1))  # (B, C, H', W')
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "avg_pool2d", "locked": false, "schema_version": 3, "solution": true, "task": false}
def avg_pool2d(x: torch.Tensor, kernel_size: int | tuple[int, int],
               stride: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Average pooling, eq. (5): the mean of every K_H × K_W window of every channel.

    Args:
        x: (B, C, H, W).
        kernel_size: the window, an int or a (height, width) pair.
        stride: the step between windows, an int or a pair; None means kernel_size.

    Returns:
        (B, C, H', W') with H' = (H − K_H) // s_H + 1 and W' likewise.

    Raises:
        ValueError: if x is not 4-D or the window is larger than the image.
    """
    ### BEGIN SOLUTION
    if x.ndim != 4:
        raise ValueError(f"expected x (B, C, H, W), got {tuple(x.shape)}")
    kernel_h, kernel_w = pair(kernel_size)
    stride_h, stride_w = pair(kernel_size if stride is None else stride)
    conv_output_size(x.shape[2], kernel_h, stride_h)  # raises if the window does not fit
    conv_output_size(x.shape[3], kernel_w, stride_w)
    windows = x.unfold(2, kernel_h, stride_h).unfold(3, kernel_w, stride_w)
    # windows: (B, C, H', W', K_H, K_W)
    return windows.mean(dim=(-2, -1))  # (B, C, H', W')
    ### END SOLUTION


# %% [markdown]
# **Try it.** On the numbers 0 to 15 in a $4 \times 4$ grid, the next cell should print
# `[[5.0, 7.0], [13.0, 15.0]]` and `[[2.5, 4.5], [10.5, 12.5]]`.

# %%
grid16 = torch.arange(16.0).view(1, 1, 4, 4)
print(max_pool2d(grid16, 2)[0, 0].tolist())
print(avg_pool2d(grid16, 2)[0, 0].tolist())

# %% nbgrader={"grade": true, "grade_id": "test_max_pool2d", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Checks max_pool2d against F.max_pool2d: default and explicit strides, pairs, gradients.
checks.max_pool2d(max_pool2d)
### BEGIN HIDDEN TESTS
checks.max_pool2d(max_pool2d, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_avg_pool2d", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Checks avg_pool2d against F.avg_pool2d: default and explicit strides, pairs, gradients.
checks.avg_pool2d(avg_pool2d)
### BEGIN HIDDEN TESTS
checks.avg_pool2d(avg_pool2d, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# A Shapes-world image pooled again and again: max pooling keeps the small object (every
# window that touches it takes its brightest colour) while average pooling blends it with the
# dark background until it nearly disappears. After three $2 \times 2$ poolings, $4 \times 4$
# values are left: roughly what the last block of the CNN of section 8 sees, per channel.

# %%
scene = shapes.images[:1]  # (1, 3, 32, 32): a small green triangle
maxed, averaged = [scene], [scene]
for _ in range(3):
    maxed.append(max_pool2d(maxed[-1], 2))
    averaged.append(avg_pool2d(averaged[-1], 2))
titles = [f"{m.shape[-2]}×{m.shape[-1]}" for m in maxed]
plotting.show_images([m[0] for m in maxed] + [a[0] for a in averaged],
                     [f"max, {t}" for t in titles] + [f"average, {t}" for t in titles],
                     ncols=4, size=2.0)
plt.show()

# %% [markdown]
# ## 7 · Hand-made kernels on a real photo
#
# Before networks learned their filters, image processing designed them by hand, and the
# first layer of a trained CNN rediscovers many of them (Krizhevsky et al., 2012, fig. 3;
# Zeiler & Fergus, 2014). A few classics, all cross-correlations (eq. 1) with your `conv2d`:
#
# - **box blur**: every weight $1/K^2$, the mean of the window;
# - **Gaussian blur**: $w[k, l] \propto \exp\!\big(-(k^2 + l^2) / 2\sigma^2\big)$ with
#   $k, l$ measured from the centre, a smoother average;
# - **sharpen**: the image plus its difference from a blur, $2\delta - \text{blur}$;
# - **Sobel**: a derivative across, smoothed along (Sobel & Feldman, 1968):
#
# $$S_x = \begin{pmatrix} -1 & 0 & 1 \\ -2 & 0 & 2 \\ -1 & 0 & 1 \end{pmatrix}
#   = \begin{pmatrix} 1 \\ 2 \\ 1 \end{pmatrix} \begin{pmatrix} -1 & 0 & 1 \end{pmatrix},
#   \qquad S_y = S_x^\top. \tag{6}$$
#
# $G_x = S_x \star x$ is large where the image gets brighter to the right, $G_y = S_y \star x$
# where it gets brighter downwards: together they are (a smoothed estimate of) the image's
# gradient $\nabla x$, and its length $\lVert \nabla x \rVert = \sqrt{G_x^2 + G_y^2}$ is the
# **edge strength**, whatever the edge's direction (Gonzalez & Woods, *Digital Image
# Processing*, 4th ed., 2018, §3.6).

# %%
def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """A normalised Gaussian (size, size) kernel."""
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2  # (size,)
    bump = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = bump[:, None] * bump[None, :]  # (size, size): separable
    return kernel / kernel.sum()


delta = torch.zeros(7, 7)
delta[3, 3] = 1.0  # the identity filter: y = x
sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
kernels = {
    "box blur 7×7": torch.full((7, 7), 1 / 49),
    "Gaussian σ = 2": gaussian_kernel(7, 2.0),
    "sharpen": 2 * delta - gaussian_kernel(7, 2.0),
    "Sobel Gx": F.pad(sobel_x, (2, 2, 2, 2)),  # zero-padded to 7×7 to stack with the others
    "Sobel Gy": F.pad(sobel_x.T, (2, 2, 2, 2)),
}
bank = torch.stack(list(kernels.values())).unsqueeze(1)  # (5, 1, 7, 7)
with torch.no_grad():
    filtered = conv2d(gray_photo.to(device), bank.to(device), padding=3)[0].cpu()
# filtered: (5, 600, 512), one map per kernel of the whole photo
print("filtered", tuple(filtered.shape))
face = (slice(90, 330), slice(130, 370))  # show a 240×240 crop, where the details are
show_signed([gray_photo[0, 0][face], *filtered[:3, face[0], face[1]].clamp(0, 1)],
            ["original (crop)", *list(kernels)[:3]], ncols=4, size=2.8, gray=(0, 1, 2, 3))
plt.show()
show_signed([*filtered[3:, face[0], face[1]],
             (filtered[3] ** 2 + filtered[4] ** 2).sqrt()[face]],
            ["Gx: brighter to the right (red)", "Gy: brighter downwards (red)",
             "√(Gx² + Gy²): edge strength"], ncols=3, size=3.3, clip=99.5)
plt.show()

# %% [markdown]
# Blurs remove detail (the box blur leaves blocky ghosts, the Gaussian does not), sharpening
# exaggerates it, and the two Sobel responses pick up vertical edges (the sides of the face and
# of the glasses, in $G_x$) and horizontal ones (the brim of the cap and the rims of the
# glasses, in $G_y$), with their direction in the sign. The last panel is all positive (all
# red): the edge strength, which you now compute as a function.
#
# ### Exercise 6 · `sobel_edges` (2 points)
#
# `sobel_edges(gray)` takes grayscale images `(B, 1, H, W)` and returns their edge strength
# `(B, 1, H, W)`, eq. (6):
#
# 1. build $S_x$ and $S_y = S_x^\top$ as tensors with `gray`'s dtype and device, and stack
#    them into one weight `(2, 1, 3, 3)`: two output channels, one input channel;
# 2. pad the image by one pixel on every side by **replicating** its border pixels,
#    `F.pad(gray, (1, 1, 1, 1), mode="replicate")`. Zero padding would make the image's
#    border look like an edge (you will see it below);
# 3. one call to **your `conv2d`** (without padding) gives $G_x$ and $G_y$ as the two channels;
# 4. return $\sqrt{G_x^2 + G_y^2}$, keeping the channel axis.
#
# Raise a `ValueError` unless `gray` is `(B, 1, H, W)`. PyTorch's convolutions are refused
# while the test runs: it is your `conv2d` that does the work.

# %% nbgrader={"grade": false, "grade_id": "sobel_edges", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sobel_edges(gray: torch.Tensor) -> torch.Tensor:
    """Edge strength of grayscale images: the Sobel gradient magnitude, eq. (6).

        G_x = S_x ⋆ x̃,   G_y = S_y ⋆ x̃,   edges = √(G_x² + G_y²)

    with S_x = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], S_y = S_xᵀ, ⋆ your ``conv2d``, and x̃
    the image with its border pixels replicated once on every side.

    Args:
        gray: grayscale images (B, 1, H, W).

    Returns:
        (B, 1, H, W), non-negative, with gray's dtype and device.

    Raises:
        ValueError: if gray is not (B, 1, H, W).
    """
    ### BEGIN SOLUTION
    if gray.ndim != 4 or gray.shape[1] != 1:
        raise ValueError(f"expected grayscale images (B, 1, H, W), got {tuple(gray.shape)}")
    # 1. both kernels as the two output channels of one weight
    s_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
                       dtype=gray.dtype, device=gray.device)  # (3, 3)
    weight = torch.stack([s_x, s_x.T]).unsqueeze(1)  # (2, 1, 3, 3): G_x, G_y
    # 2. replicate the border: the image's edge is not an edge
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")  # (B, 1, H + 2, W + 2)
    # 3. both derivatives with one convolution
    gradients = conv2d(padded, weight)  # (B, 2, H, W)
    # 4. the gradient's length
    return gradients.pow(2).sum(dim=1, keepdim=True).sqrt()  # (B, 1, H, W)
    ### END SOLUTION


# %% [markdown]
# **Try it.** An image that is black in columns 0–2 and white in columns 3–6 has one vertical
# edge; its Sobel response is $1 + 2 + 1 = 4$ on both sides of it. The next cell should print
# `[0.0, 0.0, 4.0, 4.0, 0.0, 0.0, 0.0]` and `torch.Size([1, 1, 5, 7])`.

# %%
step = torch.zeros(1, 1, 5, 7)
step[..., 3:] = 1.0
step_edges = sobel_edges(step)
print(step_edges[0, 0, 2].tolist())
print(step_edges.shape)

# %% nbgrader={"grade": true, "grade_id": "test_sobel_edges", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks sobel_edges against a Sobel filter on F.conv2d: replicated border, float64, gradients.
checks.sobel_edges(sobel_edges)
### BEGIN HIDDEN TESTS
checks.sobel_edges(sobel_edges, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Your edge detector on the photo; then a zoom on the photo's right border, where the
# background is mid-grey, next to the same filter with zero padding (your `conv2d` with
# `padding=1`): the zeros outside the image make a bright line (yellow) along the border, an
# edge 20 times stronger than the texture around it, and not in the picture. Last, the
# Shapes world: the outline of every object, whatever its colour. (A bonus: flipping $S_x$ by
# 180° only changes the sign of $G_x$, so the edge strength cannot tell convolution from
# cross-correlation; the single derivatives can.)

# %%
with torch.no_grad():
    edges = sobel_edges(gray_photo.to(device)).cpu()  # (1, 1, 600, 512)
    weight_xy = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1).to(device)  # (2, 1, 3, 3)
    zero_padded = conv2d(gray_photo.to(device), weight_xy, padding=1).cpu()  # (1, 2, 600, 512)
    zero_padded = zero_padded.pow(2).sum(dim=1, keepdim=True).sqrt()  # (1, 1, 600, 512)
corner = (slice(None), slice(220, 244), slice(488, 512))  # 24×24 at the right border
zoom = zero_padded[0][corner].max()  # one scale for both zooms
plotting.show_images([gray_photo[0], (edges[0] / edges.max()).sqrt()],
                     ["photo", "sobel_edges (√ for contrast)"], ncols=2, size=3.4)
plt.show()
plotting.show_images([edges[0][corner] / zoom, zero_padded[0][corner] / zoom],
                     ["right border, 24×24 zoom: replicated", "the same with zero padding"],
                     ncols=2, size=3.4, cmap="viridis")
plt.show()

shape_images = shapes.images  # (8, 3, 32, 32)
shape_edges = sobel_edges((shape_images * luma).sum(dim=1, keepdim=True))  # (8, 1, 32, 32)
plotting.show_images([*shape_images, *(shape_edges / shape_edges.amax())],
                     [data.CLASSES[k] for k in shapes.labels] * 2, ncols=8, size=1.5)
plt.show()

# %% [markdown]
# ## 8 · A small CNN for the Shapes world
#
# Hand-made filters find edges; which filters tell a *purple triangle* from a *blue square*?
# A CNN learns them from labelled examples. Ours stacks three blocks of the kind VGG made
# standard (Simonyan & Zisserman, 2015), then a head:
#
# | stage | layers | output shape |
# |---|---|---|
# | input | | `(B, 3, 32, 32)` |
# | block 1 | 3×3 conv (3 → 16, padding 1) → BatchNorm → ReLU → 2×2 max pool | `(B, 16, 16, 16)` |
# | block 2 | 3×3 conv (16 → 32, padding 1) → BatchNorm → ReLU → 2×2 max pool | `(B, 32, 8, 8)` |
# | block 3 | 3×3 conv (32 → 64, padding 1) → BatchNorm → ReLU → 2×2 max pool | `(B, 64, 4, 4)` |
# | head | global max pool → flatten → linear (64 → 15) | `(B, 15)` |
#
# - Each block doubles the channels while pooling halves height and width: more kinds of
#   patterns, each over a larger region.
# - **ReLU**, $\max(0, z)$, makes the stack non-linear. Convolutions with nothing non-linear
#   between them collapse into one linear map: a convolution of a convolution is one larger
#   convolution. (Is ReLU the only non-linear layer in this table? An experiment after
#   training asks.)
# - **Batch normalisation** (Ioffe & Szegedy, 2015, Algorithm 1) standardises every channel
#   over the batch, $\gamma (z - \mu_B) / \sqrt{\sigma_B^2 + \epsilon} + \beta$, which makes
#   training much faster and less sensitive to the learning rate. It uses the batch's
#   statistics in training and running averages in evaluation: call `model.eval()` before
#   you predict. (A convolution followed by BatchNorm needs no bias: BatchNorm's $\beta$
#   plays that role, so pass `bias=False`.)
# - **Global max pooling** keeps, per channel, the strongest response anywhere in the
#   $4 \times 4$ map: "is this pattern in the image?", which is what a class of one object at
#   a random position needs (Lin et al., 2014, introduced the global *average* version).
# - The head outputs one **logit** per class; the loss applies the softmax, so `forward`
#   does not.
#
# PyTorch's layers are allowed from here on: `nn.Conv2d` computes exactly your `conv2d` (we
# check it on the trained weights below), with kernels fast enough to train with.
#
# ### Exercise 7 · `SmallCNN` (3 points)
#
# Build the table above with `nn.Conv2d`, `nn.BatchNorm2d`, `nn.ReLU`, `nn.MaxPool2d`,
# `nn.AdaptiveMaxPool2d(1)`, `nn.Flatten` and `nn.Linear`. Keep the two attributes the
# pictures below use: `features`, an `nn.Sequential` of the three blocks (each block an
# `nn.Sequential` that starts with its `nn.Conv2d`), and `head`. The points come from the
# trained model's accuracy on new images the test renders itself: at least 95 %.

# %% nbgrader={"grade": false, "grade_id": "SmallCNN", "locked": false, "schema_version": 3, "solution": true, "task": false}
class SmallCNN(nn.Module):
    """A small CNN classifier: three [conv 3×3 → BatchNorm → ReLU → max pool 2×2] blocks, a
    global max pool and a linear layer.

    Args:
        num_classes: the number of classes (logits per image).
        in_channels: the channels of the input images.
        width: the channels of block 1; blocks 2 and 3 have 2·width and 4·width.

    Attributes:
        features: nn.Sequential of the three blocks (each an nn.Sequential, conv first):
            (B, in_channels, H, W) -> (B, 4·width, H/8, W/8).
        head: global max pool, flatten, linear: (B, 4·width, h, w) -> (B, num_classes).

    ``forward(images)``: images (B, in_channels, H, W), H and W ≥ 8 -> logits
    (B, num_classes), without a softmax.
    """

    def __init__(self, num_classes: int = 15, in_channels: int = 3, width: int = 16):
        super().__init__()
        ### BEGIN SOLUTION
        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),  # same size
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),  # halves H and W
            )

        self.features = nn.Sequential(
            block(in_channels, width),  # (B, width, H/2, W/2)
            block(width, 2 * width),  # (B, 2·width, H/4, W/4)
            block(2 * width, 4 * width),  # (B, 4·width, H/8, W/8)
        )
        self.head = nn.Sequential(
            nn.AdaptiveMaxPool2d(1),  # (B, 4·width, 1, 1): the strongest response anywhere
            nn.Flatten(),  # (B, 4·width)
            nn.Linear(4 * width, num_classes),  # (B, num_classes)
        )
        ### END SOLUTION

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        if images.ndim != 4:
            raise ValueError(f"expected images (B, C, H, W), got {tuple(images.shape)}")
        return self.head(self.features(images))  # (B, num_classes)
        ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `torch.Size([2, 15])` and `24,671 parameters` (if
# your count differs, compare your layers with the table).

# %%
print(SmallCNN()(torch.zeros(2, 3, 32, 32)).shape)
print(f"{sum(p.numel() for p in SmallCNN().parameters()):,} parameters")

# %% [markdown]
# ### The training loop
#
# This is the course's first training loop, so here it is written out in full (from notebook
# 02 on, `course_utils.training.train` runs this same loop in one call). The data: 3,000
# single-object Shapes-world images, 200 of each of the 15 colour–shape classes
# (`hold_out=False`: all 15 pairs), and 1,500 *test* images from a different random stream,
# which the model never trains on.
#
# One **step** of training takes a mini-batch of $B = 64$ images with labels $y_b$ and:
#
# 1. **forward**: computes the logits $z_b \in \mathbb{R}^{15}$;
# 2. **loss**: the cross-entropy, the negative log-probability the softmax gives the right
#    class,
#    $$\mathcal{L} = -\frac{1}{B} \sum_{b=1}^{B} \log \frac{\exp z_{b, y_b}}
#      {\sum_{k=1}^{15} \exp z_{b, k}}; \tag{7}$$
# 3. **zero** the gradients left by the previous step (PyTorch adds new gradients to old
#    ones);
# 4. **backward**: `loss.backward()` computes $\partial \mathcal{L} / \partial \theta$ for
#    every weight $\theta$ by backpropagation;
# 5. **update**: the optimizer moves every weight against its gradient. We use AdamW: Adam
#    (Kingma & Ba, 2015) steps each weight by a running average of its gradient divided by
#    the square root of a running average of its *squared* gradient, so every weight moves
#    by about the learning rate whatever its gradient's scale; AdamW adds decoupled weight
#    decay (Loshchilov & Hutter, 2019);
# 6. **schedule**: the learning rate rises linearly over the first 5 % of the steps (a
#    *warm-up*, Goyal et al., 2017) and then decays along a cosine to zero (Loshchilov &
#    Hutter, 2017).
#
# An **epoch** is one pass over the training set in a new random order. The numbers of the
# run (the model's width, the epochs, the batch size, the learning rate…) sit together in one
# configuration, a `@dataclass`, as in the notebooks that follow. The progress bar shows the
# steps and the current loss; a few steps in, a line says how long the run will take on your
# machine (and whether your `SmallCNN` is far slower than ours). Every run gives the same
# model (seeded weights and order).

# %% nbgrader={"grade": false, "grade_id": "data_shapes", "locked": true, "schema_version": 3, "solution": false, "task": false}
train_set = data.ShapesClassification("train", size=3000, seed=0, hold_out=False)
test_set = data.ShapesClassification("test", size=1500, seed=0, hold_out=False)
print("train", tuple(train_set.images.shape), "test", tuple(test_set.images.shape))

# %% nbgrader={"grade": false, "grade_id": "train_cnn", "locked": true, "schema_version": 3, "solution": false, "task": false}
@dataclass
class CNNConfig:
    """The SmallCNN this notebook trains, and how (every number is explained in the text)."""

    width: int = 16               # channels of block 1 (then 32 and 64)
    epochs: int = 6               # passes over the 3,000 training images
    batch_size: int = 64
    lr: float = 3e-3              # AdamW's peak learning rate
    weight_decay: float = 1e-4
    warmup: float = 0.05          # the fraction of the steps spent warming up
    reference_step_s: float = 0.016  # one step of the solution on the reference CPU


config = CNNConfig()
torch.manual_seed(0)  # the initial weights
model = SmallCNN(width=config.width).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                              weight_decay=config.weight_decay)
steps_per_epoch = len(train_set) // config.batch_size  # the last, incomplete batch is dropped
total_steps = config.epochs * steps_per_epoch
scheduler = training.warmup_cosine(optimizer, total_steps,
                                   warmup_steps=int(config.warmup * total_steps))
train_images = train_set.images.to(device)  # (3000, 3, 32, 32)
train_labels = train_set.labels.to(device)  # (3000,)
shuffle = torch.Generator().manual_seed(0)  # the order of the mini-batches
# says, a few steps in, how long the run will take here, and if your model is far slower
timer = training.StepTimer(total_steps, reference_step_s=config.reference_step_s,
                           model=model, device=device, desc="training SmallCNN")

losses = []
model.train()  # BatchNorm uses the batch's statistics
with tqdm(total=total_steps, desc="training SmallCNN", unit="step") as progress:
    for epoch in range(config.epochs):
        order = torch.randperm(len(train_images), generator=shuffle).to(device)
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size:(step + 1) * config.batch_size]  # (B,)
            logits = model(train_images[batch])  # 1. forward: (B, 15)
            loss = F.cross_entropy(logits, train_labels[batch])  # 2. loss, eq. (7)
            optimizer.zero_grad()  # 3. forget the previous step's gradients
            loss.backward()  # 4. backpropagation: d loss / d weight for every weight
            optimizer.step()  # 5. AdamW update
            scheduler.step()  # 6. the next step's learning rate
            losses.append(loss.item())
            timer.tick(probe=lambda batch=batch: model(train_images[batch]))
            progress.update()
            progress.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
model.eval()  # BatchNorm uses its running averages from now on
print(f"final loss {np.mean(losses[-20:]):.4f}")

# %% [markdown]
# From notebook 02 on, the cell above is one call:
#
# ```python
# losses = training.train(model, lambda m, x, y: F.cross_entropy(m(x), y),
#                         (train_set.images, train_set.labels), epochs=config.epochs,
#                         batch_size=config.batch_size, lr=config.lr,
#                         weight_decay=config.weight_decay, warmup=config.warmup,
#                         device=device, reference_step_s=config.reference_step_s)
# ```
#
# The loss curve: the thin line is every step's loss, the thick one a moving average. Where
# it falls fast and where slowly, the network is learning different things; which it learns
# first, the colours or the shapes, the experiment at the end of this section measures.

# %%
plotting.plot_losses(losses, title="SmallCNN: cross-entropy per step", smooth=20, log=True)
plt.show()

# %% [markdown]
# **How good is it?** Accuracy on the 1,500 test images, the confusion matrix (row: true
# class, column: predicted class; everything off the diagonal is a mistake), and the test
# images the model was *least* sure about, with the probability it gave its answer (in our
# reference run, mostly small objects, where a circle and a square differ by a few pixels at
# 32 × 32).

# %%
test_logits = training.predict(model, test_set.images, device=device)  # (1500, 15) on the CPU
test_accuracy = training.accuracy(test_logits, test_set.labels)
course_utils.report_metric("SmallCNN accuracy on the notebook's test set", test_accuracy, "%")
predicted = test_logits.argmax(dim=1)  # (1500,)
confusion = torch.zeros(len(data.CLASSES), len(data.CLASSES))
confusion.index_put_((test_set.labels, predicted), torch.ones(len(predicted)), accumulate=True)
print(f"{int((predicted != test_set.labels).sum())} of {len(predicted)} test images misclassified")
plotting.show_heatmap(confusion, data.CLASSES, data.CLASSES, title="confusion matrix (counts)",
                      xlabel="predicted", ylabel="true", annotate=False, cmap="Blues", size=6)
plt.show()

confidence = test_logits.softmax(dim=1).amax(dim=1)  # (1500,)
unsure = confidence.argsort()[:8]
plotting.show_images(test_set.images[unsure],
                     [f"{data.CLASSES[test_set.labels[k]]} → {data.CLASSES[predicted[k]]} "
                      f"({confidence[k]:.2f})" for k in unsure], ncols=8, size=1.7,
                     title="the 8 least confident test predictions (true → predicted)")
plt.show()

# %% nbgrader={"grade": true, "grade_id": "test_SmallCNN", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Checks the trained SmallCNN on 600 new Shapes-world images (rendered by the check): ≥ 95 %.
checks.small_cnn(model)
### BEGIN HIDDEN TESTS
checks.small_cnn(model, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ### Inside the trained network
#
# First, a promise kept: `nn.Conv2d` is your `conv2d`. The first layer's trained weights,
# applied with your function, give the same feature maps.

# %%
first_conv = model.features[0][0]  # nn.Conv2d(3, 16, 3, padding=1)
sample = test_set.images[:16].to(device)
with torch.no_grad():
    difference = (conv2d(sample, first_conv.weight, first_conv.bias, padding=1)
                  - first_conv(sample)).abs().max().item()
print(f"max |your conv2d − nn.Conv2d| on the trained layer: {difference:.2e}")

# %% [markdown]
# The 16 learned filters of the first layer, each a $3 \times 3$ RGB image (each rescaled to
# its own range). Unlike the crisp edge and blob detectors of networks trained on millions of
# photos (Krizhevsky et al., 2012, fig. 3), in our reference run they look like colour
# mixtures: on five flat colours and a dark background, a $3 \times 3$ filter can tell the
# colours apart by weighting the channels. The feature maps below show what they respond to.

# %%
filters = first_conv.weight.detach().cpu()  # (16, 3, 3, 3)
low = filters.amin(dim=(1, 2, 3), keepdim=True)
high = filters.amax(dim=(1, 2, 3), keepdim=True)
plotting.show_images((filters - low) / (high - low), [f"filter {c}" for c in range(16)],
                     ncols=8, size=1.2, title="first-layer filters (3×3, RGB)")
plt.show()

# %% [markdown]
# **Feature maps**: the responses of each block to one test image (after conv, BatchNorm and
# ReLU, before pooling). Block 1 responds to colours and edges at full resolution; block 2,
# at half resolution, to combinations of them: parts of outlines, corners, the whole object.

# %%
image = test_set.images[5:6].to(device)  # (1, 3, 32, 32)
with torch.no_grad():
    maps1 = model.features[0][:3](image)[0]  # (16, 32, 32): conv, BatchNorm, ReLU
    maps2 = model.features[1][:3](model.features[0](image))[0]  # (32, 16, 16)
plotting.show_images(image.cpu(), [data.CLASSES[test_set.labels[5]]], size=2.0)
plt.show()
plotting.show_feature_maps(maps1, ncols=8, title="block 1: 16 maps of 32×32")
plt.show()
plotting.show_feature_maps(maps2[:16], ncols=8, title="block 2: the first 16 of 32 maps, 16×16")
plt.show()

# %% [markdown]
# **What do the last channels respond to?** The head reads 64 numbers per image, the
# strongest response of each block-3 channel anywhere in the image. For the six channels whose
# response varies most across the test set, here are the six test images that excite each
# most (one row per channel), with the class whose logit the channel's largest head weight
# feeds (Zeiler & Fergus, 2014, read trained networks this way). In our reference run, many
# channels had become detectors of one colour–shape class, others fired for one colour in
# several shapes. A channel's strongest vote need not be the class of its top images: the
# head weighs all 64 channels together, and negative weights vote *against* a class.

# %%
with torch.no_grad():
    strength = training.predict(lambda x: model.features(x).amax(dim=(2, 3)), test_set.images,
                                device=device)  # (1500, 64): what the head reads
votes = model.head[-1].weight.detach().cpu().argmax(dim=0)  # (64,): each channel's class
channels = strength.var(dim=0).argsort(descending=True)[:6]  # the six most selective
rows, titles = [], []
for c in channels.tolist():
    top = strength[:, c].argsort(descending=True)[:6]
    rows += list(test_set.images[top])
    titles += [f"ch {c} → {data.CLASSES[votes[c]]}"] + [data.CLASSES[test_set.labels[k]]
                                                        for k in top[1:]]
plotting.show_images(rows, titles, ncols=6, size=1.6,
                     title="top-6 test images per block-3 channel (→ the class it votes for)")
plt.show()

# %% [markdown]
# ### Experiment: what the non-linearity buys
#
# The table of section 8 put a ReLU after every convolution so that the stack would not
# collapse into one linear map. Does the network need it? The next cell trains your
# `SmallCNN` three times, for the same steps, from the same initial weights and on the same
# batches: as it is; with every `nn.ReLU` replaced by the activation `ACTIVATION` (by
# default `nn.Identity`, no activation at all); and with `ACTIVATION` *and* every max pool
# replaced by an average pool of the same size. Every 12 steps it measures, on 600 test
# images, two things separately: is the predicted class's **colour** right, and is its
# **shape** right? (A guess is right 20 % of the time for the colour, 33 % for the shape.)
#
# %% [markdown] tags=["predict"]
# **Predict before you run the next cell** (not graded; one or two lines): without ReLU, what
# will the accuracy on colours and on shapes be, with max pools and with average pools? And
# which does the SmallCNN learn first, the colours or the shapes?
#
# *Your prediction:*

# %% tags=["experiment"]
# The knob: change it and run again (e.g. nn.Tanh, nn.GELU, nn.Sigmoid).
ACTIVATION = nn.Identity


def nonlinearity_experiment(activation: type[nn.Module], config: CNNConfig,
                            train_set: data.ShapesClassification,
                            test_set: data.ShapesClassification, device: torch.device,
                            every: int = 12, n_test: int = 600) -> dict[str, np.ndarray]:
    """Train SmallCNN as it is, with ``activation`` for its ReLUs, and with ``activation``
    and average pools; return, per variant, rows (step, colour accuracy, shape accuracy)
    measured on ``n_test`` test images every ``every`` steps."""
    colour_of = torch.tensor([data.COLOURS.index(name.split()[0]) for name in data.CLASSES])
    shape_of = torch.tensor([data.SHAPES.index(name.split()[1]) for name in data.CLASSES])
    images, labels = test_set.images[:n_test], test_set.labels[:n_test]  # (n, 3, 32, 32), (n,)

    def swap(model: nn.Module, average_pools: bool) -> nn.Module:
        replaced = 0
        for module in list(model.modules()):
            for name, child in module.named_children():
                if isinstance(child, nn.ReLU):
                    setattr(module, name, activation())
                    replaced += 1
                elif average_pools and isinstance(child, nn.MaxPool2d):
                    setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride))
                elif average_pools and isinstance(child, nn.AdaptiveMaxPool2d):
                    setattr(module, name, nn.AdaptiveAvgPool2d(child.output_size))
        if replaced == 0:
            print("no nn.ReLU module found in your SmallCNN (F.relu in forward?): "
                  "this variant is unchanged")
        return model

    variants = {"SmallCNN (ReLU, max pools)": lambda m: m,
                f"{activation.__name__}, max pools": lambda m: swap(m, False),
                f"{activation.__name__}, average pools": lambda m: swap(m, True)}
    curves = {}
    for label, change in variants.items():
        torch.manual_seed(0)  # the same initial weights for every variant
        model = change(SmallCNN(width=config.width))
        rows = []

        def measure(step: int, m: nn.Module, rows: list = rows) -> None:
            if (step + 1) % every:
                return
            m.eval()  # BatchNorm: running averages while measuring
            predicted = training.predict(m, images, device=device).argmax(dim=1)  # (n,)
            rows.append((step + 1,
                         (colour_of[predicted] == colour_of[labels]).float().mean().item(),
                         (shape_of[predicted] == shape_of[labels]).float().mean().item()))
            m.train()

        training.train(model, lambda m, x, y: F.cross_entropy(m(x), y),
                       (train_set.images, train_set.labels), epochs=config.epochs,
                       batch_size=config.batch_size, lr=config.lr,
                       weight_decay=config.weight_decay, warmup=config.warmup, device=device,
                       desc=label, reference_step_s=config.reference_step_s, on_step=measure)
        curves[label] = np.array(rows)  # (steps / every, 3)
    return curves


with torch.random.fork_rng():  # the cells after this one draw the same random numbers
    nonlinear_curves = nonlinearity_experiment(ACTIVATION, config, train_set, test_set, device)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
for ax, column, what, chance in [(axes[0], 1, "colour", 1 / 5), (axes[1], 2, "shape", 1 / 3)]:
    for label, rows in nonlinear_curves.items():
        ax.plot(rows[:, 0], 100 * rows[:, column], marker=".", label=label)
    ax.axhline(100 * chance, color="0.5", ls=":", label="chance")
    ax.set_xlabel("training step")
    ax.set_title(f"test accuracy on the {what}")
axes[0].set_ylabel("%")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()
print(f"{'':>32} {'colour':>7} {'shape':>7}   first step with ≥ 90 % colour / shape")
for label, rows in nonlinear_curves.items():
    first = [next((f"{int(s)}" for s, a in zip(rows[:, 0], rows[:, k], strict=True)
                   if a >= 0.9), "never") for k in (1, 2)]
    print(f"{label:>32} {100 * rows[-1, 1]:6.1f}% {100 * rows[-1, 2]:6.1f}%   "
          f"{first[0]:>5} / {first[1]}")

# %% [markdown]
# ### A second question to answer in words (3 points)
#
# Explain what the experiment measured, with the numbers of your run. **(a)** Without ReLU
# but with its max pools, how well does the network still learn the shapes, and why? Is
# this network linear? **(b)** With average pools as well, what does the network compute as
# a function of the image (ignore BatchNorm's batch statistics: in evaluation, BatchNorm is a
# fixed affine map per channel)? Use that to explain why it still learns the colours but not
# the shapes. Four to eight sentences.

# %% [markdown] nbgrader={"grade": true, "grade_id": "written_nonlinearity", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# **(a)** In our reference run, the network without ReLU but with max pools still reached
# 100 % on colours and on shapes, like the SmallCNN. It is not linear: a max
# pool takes the maximum of four values, and a maximum of linear functions is a piecewise
# linear, non-linear function, exactly the kind of non-linearity ReLU is
# (ReLU(z) = max(z, 0)). The three 2 × 2 max pools and the global max pool between and after
# the convolutions are enough for the network to combine edges into shapes and to say "this
# pattern is somewhere in the image".
#
# **(b)** With average pools, every layer is linear (convolution, average pooling, flatten,
# linear) or affine (BatchNorm in evaluation), so the whole network is one affine map of the
# image, and with the global average at the end it is (up to border effects) an affine
# function of the image's per-channel sums: the total red, green and blue it contains. That
# mean colour is all it can read. It tells the colour (the direction of the mean colour,
# away from the dark background's, is the object's colour, whatever its size), so colour
# accuracy still reaches about 100 %; but a small square, a large circle or a triangle
# of the same colour change only how much of that colour there is, and object size varies,
# so the shape stays at chance, about 33 % (35 % in our reference run).
#
# (Grading: 1 point for (a): max pooling (and the global max) is non-linear, a maximum of
# linear functions, so the network is not linear and still learns shapes; an answer that
# says the network is linear without ReLU gets 0 for (a). 1 point for (b) that the network
# with average pools is one affine (linear) map of the image, which with the global average
# sees only the per-channel sums, i.e. the mean colour; 1 point for using it: the colour is
# readable from the mean colour, the shape is not (size and shape both change only the
# amount of colour), so shape stays near chance, 33 %. The numbers quoted must be the
# student's run's.)
#
# %% [markdown]
# **Discussion.** ReLU is not the only non-linearity a CNN can use: max pooling is one too,
# and so is BatchNorm in training (its statistics depend on the batch). What a purely linear
# stack loses is everything that depends on *where* things are relative to each other:
# corners, outlines, the arrangement of edges that makes a shape. The curves also show the
# order in which the SmallCNN learns: compare the step at which each attribute first reaches
# 90 %. The colour is a property of single pixels, which one layer can read by weighting the
# channels; a shape is an arrangement of many pixels, which needs several layers and their
# non-linearities to combine.

# %% [markdown]
# ## 9 · The receptive field
#
# A unit of block 1 sees a $3 \times 3$ neighbourhood of pixels; how much of the image does a
# unit of block 3 see? Its **receptive field** is the set of input pixels that can change its
# value. Each layer widens it: a $3 \times 3$ convolution adds one pixel on each side *in the
# units of its input*, and pooling makes those units larger (a unit after a $2 \times 2$ pool
# stands for two input units per direction), so later layers grow the field faster (Araujo
# et al., 2019).
#
# We can *measure* it: the gradient of one unit with respect to the input image is non-zero
# exactly on the pixels that can change it. Below, the gradient of the centre unit of each
# block's output, summed over channels and over 64 random images (in absolute value): the
# outlined square is where it is non-zero. The gradient is strongest in the middle and fades
# towards the border: the *effective* receptive field is smaller than the theoretical one
# (Luo et al., 2016).

# %%
def receptive_field(stage: nn.Module, device: torch.device, samples: int = 64) -> torch.Tensor:
    """Σ |∂ (centre unit of stage's output) / ∂ input| over channels and random images on
    ``device``: a (32, 32) map, non-zero on the receptive field."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(samples, 3, 32, 32, generator=generator).to(device).requires_grad_(True)
    out = stage(x)  # (samples, C', H', W')
    centre = out[:, :, out.shape[2] // 2, out.shape[3] // 2].sum()
    (grad,) = torch.autograd.grad(centre, x)  # (samples, 3, 32, 32); the weights are untouched
    return grad.abs().sum(dim=(0, 1)).cpu()  # (32, 32)


fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
for depth, ax in enumerate(axes, start=1):
    field = receptive_field(model.features[:depth], device)
    rows_hit = torch.nonzero(field.sum(dim=1)).flatten()
    cols_hit = torch.nonzero(field.sum(dim=0)).flatten()
    height = int(rows_hit[-1] - rows_hit[0] + 1)
    width = int(cols_hit[-1] - cols_hit[0] + 1)
    ax.imshow(field.sqrt(), cmap="magma")
    ax.add_patch(plt.Rectangle((int(cols_hit[0]) - 0.5, int(rows_hit[0]) - 0.5), width, height,
                               fill=False, edgecolor="cyan", lw=1.5))
    ax.set_title(f"after block {depth}: {height}×{width} pixels", fontsize=9)
    ax.axis("off")
fig.suptitle("receptive field of the centre unit (√ of the summed |gradient|)")
fig.tight_layout()
plt.show()

# %% [markdown]
# After block 3, one unit sees 22 × 22 of the 32 × 32 pixels, more than any object of the
# Shapes world, which is why a max over the last map can name the object.
#
# ### A question to answer in words (2 points)
#
# Take a smaller network: a $3 \times 3$ convolution (stride 1, no padding), a $2 \times 2$ max
# pooling (stride 2), and another $3 \times 3$ convolution. **How large is the receptive field
# of one output value of the second convolution, in input pixels, and why?** Explain it step
# by step, layer by layer. Then: a *single* convolution with a kernel as large as that field
# would see as far. With $C$ channels in and out, how many weights do the two $3 \times 3$
# convolutions have together, and how many would the single one have? Give one more reason to
# prefer the stack. Three to six sentences.

# %% [markdown] nbgrader={"grade": true, "grade_id": "written_receptive_field", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **8 × 8 pixels.** Work backwards from one output value of the second convolution: it reads
# a 3 × 3 window of the pooled map. Neighbouring pooled values come from input windows 2
# pixels apart (the pool's stride), so 3 pooled values per direction span 2 · 2 = 4 pixels of
# offset plus the size of one pooled value's own field. One pooled value takes the max of a
# 2 × 2 block of first-convolution outputs, which overlap: two adjacent 3 × 3 windows one
# pixel apart cover 3 + 1 = 4 pixels. So the field is 4 + (3 − 1) · 2 = 8 pixels per
# direction. In general, r_l = r_{l−1} + (k_l − 1) · j_{l−1} with the "jump" j_l = j_{l−1} · s_l
# (r_0 = j_0 = 1): conv 3 → r = 3, j = 1; pool 2/2 → r = 4, j = 2; conv 3 → r = 8, j = 2.
# A single 8 × 8 convolution would have 64 C² weights, the two 3 × 3 ones 2 · 9 C² = 18 C²
# (about 3.5 times fewer), and the stack puts a non-linearity (ReLU) and the pooling's shift
# tolerance in between, so it can compute richer functions with fewer parameters (Simonyan &
# Zisserman, 2015, §2.3, make the same argument for stacked 3 × 3 layers).
#
# (Grading: 1 point for 8 × 8 with a correct layer-by-layer reason (including the pooling's
# doubling of the step); 1 point for 18 C² versus 64 C² (a stride-2 8 × 8 single convolution
# has the same count) and one valid reason, e.g. fewer parameters, more non-linearity, or
# cheaper computation. An answer of 5 × 5 ignores the pooling: at most 1 point.)

# %% [markdown]
# ## What you built, and where it lives in real systems
#
# - `conv_output_size` is the "Shape" formula of `torch.nn.Conv2d`'s documentation (with
#   dilation set to 1), and of every other framework's.
# - `conv2d` is `torch.nn.functional.conv2d`, the function inside `nn.Conv2d`. Your im2col is
#   `F.unfold` followed by a matrix product; Caffe convolved this way, cuDNN's "implicit GEMM"
#   does it without materialising the matrix, and oneDNN (PyTorch on CPUs) convolves directly
#   on blocked layouts.
# - `max_pool2d` / `avg_pool2d` are `F.max_pool2d` / `F.avg_pool2d` (`nn.MaxPool2d`,
#   `nn.AvgPool2d`); the global pooling of the head is `nn.AdaptiveMaxPool2d(1)`.
# - `sobel_edges` is `kornia.filters.sobel`, OpenCV's `cv2.Sobel` and scikit-image's
#   `filters.sobel`, up to normalisation and border handling.
# - `SmallCNN` is a miniature of LeNet-5 (LeCun et al., 1998) and VGG (Simonyan & Zisserman,
#   2015). Real image encoders add residual connections (ResNet, He et al., 2016) and are far
#   deeper. CLIP's ResNet encoders (Radford et al., 2021) are modified ResNets (RN50, RN101
#   and the scaled-up RN50x4, RN50x16 and RN50x64) with a ResNet-D stem, anti-aliased
#   (blur) pooling, and attention pooling in place of the final global average pooling;
#   open_clip ships them as `ModifiedResNet`.
#
# **Further reading**
# - V. Dumoulin, F. Visin, *A guide to convolution arithmetic for deep learning*,
#   arXiv:1603.07285, 2016 (output sizes, with pictures of every case).
# - I. Goodfellow, Y. Bengio, A. Courville, *Deep Learning*, MIT Press, 2016, chapter 9.
# - K. Chellapilla, S. Puri, P. Simard, *High performance convolutional neural networks for
#   document processing*, IWFHR 2006 (im2col); S. Chetlur et al., *cuDNN: efficient
#   primitives for deep learning*, arXiv:1410.0759, 2014; A. Lavin, S. Gray, *Fast
#   algorithms for convolutional neural networks*, CVPR 2016.
# - Y. LeCun et al., *Backpropagation applied to handwritten zip code recognition*, Neural
#   Computation, 1989; Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, *Gradient-based learning
#   applied to document recognition*, Proc. IEEE, 1998.
# - Y.-L. Boureau, J. Ponce, Y. LeCun, *A theoretical analysis of feature pooling in visual
#   recognition*, ICML 2010.
# - S. Ioffe, C. Szegedy, *Batch normalization*, ICML 2015; D. Kingma, J. Ba, *Adam*, ICLR
#   2015; I. Loshchilov, F. Hutter, *SGDR*, ICLR 2017, and *Decoupled weight decay
#   regularization*, ICLR 2019; P. Goyal et al., *Accurate, large minibatch SGD*, 2017.
# - M. Zeiler, R. Fergus, *Visualizing and understanding convolutional networks*, ECCV 2014;
#   A. Krizhevsky, I. Sutskever, G. Hinton, *ImageNet classification with deep convolutional
#   neural networks*, NeurIPS 2012.
# - A. Araujo, W. Norris, J. Sim, *Computing receptive fields of convolutional neural
#   networks*, Distill, 2019; W. Luo, Y. Li, R. Urtasun, R. Zemel, *Understanding the
#   effective receptive field in deep convolutional neural networks*, NeurIPS 2016.
# - M. Lin, Q. Chen, S. Yan, *Network in network*, ICLR 2014 (global pooling).
# - I. Sobel, G. Feldman, *A 3×3 isotropic gradient operator for image processing*, Stanford
#   AI Project, 1968; R. Gonzalez, R. Woods, *Digital Image Processing*, 4th ed., 2018.
# - CS231n, *Convolutional neural networks*: https://cs231n.github.io/convolutional-networks/
#
# **Next:** notebook 02 builds the other image encoder, the Vision Transformer, which cuts the
# image into patches (an im2col with stride = kernel size) and lets them attend to each other.
