# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Vision encoders II: patches as tokens
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/multimodal-from-scratch/course/blob/main/notebooks/02_vision_transformer/02_vision_transformer.ipynb)
#
# Notebook 01 read images with convolutions: small filters that slide over the pixels. This
# notebook reads them the way today's multimodal models do (CLIP, ViLT, LLaVA, Stable Diffusion
# 3): cut the image into square **patches**, treat each patch as a word, and let a
# **transformer** relate every patch to every other. This is the *Vision Transformer* (ViT) of
# Dosovitskiy et al. (2021), "An Image is Worth 16x16 Words". You will build it piece by piece
# and train it on the Shapes world.
#
# **You will learn**
# - why a transformer needs tokens, and how `patchify` turns an image into a sequence of them;
# - why the linear patch embedding *is* a convolution with kernel = stride = patch size;
# - what the [CLS] token and the position embeddings are for;
# - scaled dot-product attention from its formula, masks included, and why it divides by $\sqrt{d}$;
# - multi-head self-attention and the pre-norm transformer block;
# - how to train a small ViT, and how to look inside it: where [CLS] attends, what the position
#   embeddings learned;
# - by experiment: how much data a ViT needs compared with a CNN, and what it cannot do without
#   its position embeddings.
#
# **Time:** about 2.5 hours: 35 minutes of reading, 1.5–2 hours of exercises, experiments and
# written answers (multi-head attention alone takes 25–30 minutes), and about 2 minutes of
# running on a laptop CPU (most of it training), seconds on a GPU.
#
# **Prerequisites:** notebook 00 (images as tensors, the Shapes world) and notebook 01 (the
# training loop, convolution). Matrix multiplication and the softmax.

# %% [markdown]
# ## Set-up
#
# Run the next cell first. On Google Colab it installs the course package (about a minute);
# on your own machine it only imports what the notebook needs. It then picks the fastest
# device you have and seeds the random number generators.

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

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import course_utils
from course_utils import data, plotting, training
from course_utils.checks import vit as checks

device = course_utils.get_device()
course_utils.seed_everything(0)
print(f"course_utils {course_utils.__version__}, torch {torch.__version__}, device: {device}")

# %% [markdown]
# ## 1 · A transformer reads a sequence of tokens
#
# A transformer does not know what an image is. It takes a **sequence of $N$ vectors**, the
# *tokens*, each of width $D$, and returns a sequence of the same shape: `(B, N, D)` in,
# `(B, N, D)` out. For text a token is a word (notebook 04). Inside, *self-attention* compares
# every token with every other token: the attention itself ($QK^\top$ and the weighted sum of
# the values) costs about $2 N^2 D$ operations per layer, which grows with the square of the
# sequence length. The layers that treat each token on its own (the query, key, value and
# output projections and the MLP) cost about $12 N D^2$ and grow only linearly with $N$; they
# dominate while $N < 6D$, as in ViT-B/16 ($N = 197$, $D = 768$), but not for long sequences.
#
# The obvious way to make an image into tokens, one token per pixel, is too expensive: a
# $224 \times 224$ photo would be $N = 50\,176$ tokens and $N^2 \approx 2.5$ billion pairs per
# layer. Dosovitskiy et al. (2021) cut the image into non-overlapping $P \times P$
# **patches** instead and made each patch one token:
#
# $$N = \frac{H}{P} \cdot \frac{W}{P}.$$
#
# With $P = 16$ that photo becomes $14 \times 14 = 196$ tokens: "an image is worth 16×16
# words". Our Shapes images are $32 \times 32$:
#
# | patch size $P$ | tokens $N$ | values per token $C P^2$ | pairs $N^2$ |
# |---|---|---|---|
# | 8 | 16 | 192 | 256 |
# | 4 | 64 | 48 | 4 096 |
# | 2 | 256 | 12 | 65 536 |
# | 1 (pixels) | 1 024 | 3 | 1 048 576 |
#
# Here is a Shapes image cut into $8 \times 8$ patches, numbered in **row-major** order (along
# the first row, then the second, ...), the order the transformer reads them in.

# %%
examples = data.ShapesClassification("test", size=30, seed=1, hold_out=False)
image = examples.images[0]  # (3, 32, 32)
print("image", tuple(image.shape), "-", data.CLASSES[examples.labels[0]])
plotting.show_patch_grid(image, 8, title="32×32 image → 16 patches of 8×8")
plt.show()

# %% [markdown]
# ## 2 · Patchify
#
# For a batch of images $x \in \mathbb{R}^{B \times C \times H \times W}$, `patchify` returns
# $x_p \in \mathbb{R}^{B \times N \times (C \cdot P^2)}$ (Dosovitskiy et al. 2021, §3.1):
# token $n = r \cdot \frac{W}{P} + c$ holds the pixels of grid row $r$ and grid column $c$,
#
# $$x_p[b, n] = \operatorname{flatten}\big(x[b,\; :,\; rP:(r+1)P,\; cP:(c+1)P]\big),$$
#
# flattened **channel first**, in the order $(C, P, P)$: all of the patch's red values, then
# its green values, then its blue values. That is the order of `F.unfold` and of a `Conv2d`
# weight `(D, C, P, P)`, which section 4 relies on.
#
# No loops are needed, only a view and a reordering of the axes:
#
# 1. `reshape` splits each image axis into (grid position, position inside the patch):
#    `(B, C, H, W)` → `(B, C, H/P, P, W/P, P)`. This moves no data.
# 2. `permute` brings the grid axes to the front and the patch's own axes to the back:
#    `(B, H/P, W/P, C, P, P)`.
# 3. `reshape` merges the grid axes into the token axis and the rest into the token's values:
#    `(B, N, C·P·P)`.
#
# ### Exercise 1 · `patchify` (2 points)
#
# Raise a `ValueError` that says what was expected when `images` is not 4-D or when $H$ or $W$
# is not divisible by $P$. Images need not be square. `F.unfold` is the library one-liner;
# the test compares with it and does not let you call it.

# %% nbgrader={"grade": false, "grade_id": "patchify", "locked": false, "schema_version": 3, "solution": true, "task": false}
def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping square patches, one flattened patch per token.

    Args:
        images: tensor (B, C, H, W), with H and W divisible by ``patch_size``.
        patch_size: P, the side of a patch in pixels.

    Returns:
        tensor (B, N, C·P·P) with N = (H/P)·(W/P): patches in row-major grid order, each
        flattened as (C, P, P), the order of ``F.unfold(images, P, stride=P).transpose(1, 2)``.

    Raises:
        ValueError: if ``images`` is not 4-D or H or W is not divisible by P.
    """
    ### BEGIN SOLUTION
    if images.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
    batch, channels, height, width = images.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"image size {height}×{width} is not divisible by patch size {p}")
    rows, cols = height // p, width // p
    # 1. split each image axis into (grid position, position inside the patch)
    x = images.reshape(batch, channels, rows, p, cols, p)  # (B, C, H/P, P, W/P, P)
    # 2. grid axes first, then the patch's own axes in the order (C, P, P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
    # 3. one token per grid cell, its values flattened channel-first
    return x.reshape(batch, rows * cols, channels * p * p)  # (B, N, C·P·P)
    ### END SOLUTION


# %% [markdown]
# **Try it.** A 4×4 image with 2 channels holding the numbers 0 to 31, cut into 2×2 patches.
# The next cell should print `torch.Size([1, 4, 8])`, then the first token
# `[0, 1, 4, 5, 16, 17, 20, 21]` (the top-left 2×2 square of channel 0, then of channel 1) and
# the second `[2, 3, 6, 7, 18, 19, 22, 23]`, and `True` for the comparison with `F.unfold`.

# %%
tiny = torch.arange(32.0).reshape(1, 2, 4, 4)  # (B=1, C=2, H=4, W=4)
tokens = patchify(tiny, 2)
print(tokens.shape)
print(tokens[0, 0].int().tolist(), tokens[0, 1].int().tolist())
print(torch.equal(tokens, F.unfold(tiny, 2, stride=2).transpose(1, 2)))

# %% nbgrader={"grade": true, "grade_id": "test_patchify", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks patchify against F.unfold: square and non-square images, patch sizes, dtypes, ValueErrors.
checks.patchify(patchify)
### BEGIN HIDDEN TESTS
checks.patchify(patchify, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# What the transformer receives is the matrix on the right: 16 rows (tokens), each a list of
# $3 \cdot 8 \cdot 8 = 192$ numbers. Each row is still a picture (left: every token reshaped
# back to `(3, 8, 8)`); in the matrix the three bands of each row are its red, green and blue
# values.

# %%
tokens = patchify(image[None], 8)[0]  # (16, 192)
plotting.show_images(tokens.reshape(16, 3, 8, 8), [f"token {i}" for i in range(16)], ncols=16,
                     size=0.9, title="the 16 tokens of patchify(image, 8), each as a (3, 8, 8) "
                                     "patch")
plt.show()
fig, ax = plt.subplots(figsize=(10, 3))
ax.imshow(tokens, aspect="auto", cmap="viridis", interpolation="nearest")
for boundary in (63.5, 127.5):  # red | green | blue values of each token
    ax.axvline(boundary, color="white", lw=1)
ax.set(title="patchify(image, 8): 16 tokens × 192 values", ylabel="token",
       xlabel="value: red (0–63) | green (64–127) | blue (128–191), each 8×8 row by row")
plt.show()

# %% [markdown]
# ## 3 · Unpatchify, and what a set of patches forgets
#
# Models that *produce* images patch by patch (the masked autoencoder MAE, the diffusion
# transformer DiT) need the way back: `unpatchify` puts every token back in its place. It is
# the same three steps in reverse: reshape to `(B, H/P, W/P, C, P, P)`, permute to
# `(B, C, H/P, P, W/P, P)`, reshape to `(B, C, H, W)`.
#
# ### Exercise 2 · `unpatchify` (1 point)
#
# The channel count is $C = \text{values per token} / P^2$. Raise a `ValueError` when the
# patches are not 3-D, when their width is not a multiple of $P^2$, or when their number is not
# $(H/P)(W/P)$. `unpatchify(patchify(x, P), P, H, W)` must give back `x` exactly.

# %% nbgrader={"grade": false, "grade_id": "unpatchify", "locked": false, "schema_version": 3, "solution": true, "task": false}
def unpatchify(patches: torch.Tensor, patch_size: int, height: int, width: int) -> torch.Tensor:
    """Put flattened patches back together into images: the exact inverse of ``patchify``.

    Args:
        patches: tensor (B, N, C·P·P) in row-major grid order, each patch flattened (C, P, P).
        patch_size: P.
        height, width: H and W of the images, multiples of P with (H/P)·(W/P) = N.

    Returns:
        tensor (B, C, H, W).

    Raises:
        ValueError: if the shapes do not fit together.
    """
    ### BEGIN SOLUTION
    p = patch_size
    if patches.ndim != 3 or patches.shape[-1] % (p * p):
        raise ValueError(f"expected patches (B, N, C·{p}·{p}), got shape {tuple(patches.shape)}")
    batch, num_patches, values = patches.shape
    rows, cols = height // p, width // p
    if height % p or width % p or rows * cols != num_patches:
        raise ValueError(f"{num_patches} patches of {p}×{p} do not tile a {height}×{width} image")
    channels = values // (p * p)
    x = patches.reshape(batch, rows, cols, channels, p, p)  # (B, H/P, W/P, C, P, P)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, H/P, P, W/P, P)
    return x.reshape(batch, channels, height, width)  # (B, C, H, W)
    ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `torch.Size([2, 3, 32, 32]) True`.

# %%
batch = examples.images[[3, 1]]  # (2, 3, 32, 32): a red square and a green circle
restored = unpatchify(patchify(batch, 4), 4, 32, 32)
print(restored.shape, torch.equal(restored, batch))

# %% nbgrader={"grade": true, "grade_id": "test_unpatchify", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Checks unpatchify against F.fold (exactly), and its ValueErrors.
checks.unpatchify(unpatchify)
### BEGIN HIDDEN TESTS
checks.unpatchify(unpatchify, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Now shuffle the tokens before putting them back. Self-attention, as section 7 shows, treats
# its input as a **set**: shuffled tokens come out shuffled the same way and nothing else
# changes. So, to a transformer that is given only the patches, the original and the jigsaw
# below are the same input. Something must tell it where each patch was: the **position
# embeddings** of the next section.

# %%
generator = torch.Generator().manual_seed(0)
order = torch.randperm(64, generator=generator)
jigsaw = unpatchify(patchify(batch, 4)[:, order], 4, 32, 32)
plotting.show_images([batch[0], jigsaw[0], batch[1], jigsaw[1]],
                     ["original", "the same 64 patches, shuffled"] * 2, ncols=4, size=2.2)
plt.show()

# %% [markdown]
# ## 4 · Patch embedding, the [CLS] token and position embeddings
#
# The ViT turns the patches into its input tokens in one line (Dosovitskiy et al. 2021, eq. 1):
#
# $$z_0 = \big[\,x_\text{class};\; x_p^1 E;\; x_p^2 E;\; \dots;\; x_p^N E\,\big] + E_\text{pos},
# \qquad E \in \mathbb{R}^{(C P^2) \times D},\quad E_\text{pos} \in \mathbb{R}^{(1 + N) \times D}.$$
#
# - **Linear patch embedding** $x_p^n E$: one linear layer, the same for every patch, maps
#   its $C P^2$ values to a $D$-wide token. In torch it is `nn.Linear(C·P·P, D)` applied to
#   `patchify`'s output.
# - **It is a convolution.** A `Conv2d` with kernel = stride = $P$ visits each patch exactly
#   once (the stride equals the kernel, so windows neither overlap nor skip pixels), and each of
#   its $D$ filters takes the dot product of a $(C, P, P)$ filter with the patch. Reshape row
#   $d$ of the linear layer's weight to $(C, P, P)$ and it is filter $d$: same numbers, same
#   sums. This is why real ViTs (torchvision's `conv_proj`, open_clip's `conv1`) embed
#   patches with a convolution, and why `patchify` flattens in the order $(C, P, P)$. (The
#   lecture's "CNN (modern ViT)" option is something else: a *hybrid* ViT whose tokens are the
#   cells of a ResNet's feature map (Dosovitskiy et al. 2021, §3.1), or a ViT with a small
#   convolutional stem (Xiao et al. 2021). A `Conv2d` with kernel = stride = $P$ is still just
#   the linear projection.)
# - **[CLS]** $x_\text{class}$: a learned vector, the same for every image, put in front of the
#   patches (borrowed from BERT, Devlin et al. 2019). It belongs to no patch, so it is free to
#   gather information from all of them; after the last block it *is* the image's
#   representation and the classifier reads only it (eq. 4).
# - **Position embeddings** $E_\text{pos}$: one learned vector per position, $1 + N$ of them,
#   added to the tokens. Token $n$ now carries both what patch $n$ shows and where it is.
#
# ### Exercise 3 · `PatchEmbedding` (2 points)
#
# Give the module exactly these attributes (the test loads its weights into them):
# - `proj = nn.Linear(in_channels * patch_size**2, dim)`;
# - `cls_token = nn.Parameter(torch.zeros(1, 1, dim))`;
# - `pos_embedding = nn.Parameter(0.02 * torch.randn(1, 1 + N, dim))` (small random values, as
#   in the ViT code; zeros would train too, since each position's gradient depends on what its
#   patches show, but we follow the ViT).
#
# `forward(images)`: `patchify` → `proj` → put [CLS] at position 0 (`expand` it to the batch,
# then `torch.cat`) → add `pos_embedding` to every token. Raise a `ValueError` in `__init__` if
# `image_size` is not divisible by `patch_size`, and in `forward` if the images are not
# `(B, in_channels, image_size, image_size)`. Convolutions are not allowed here: the test checks
# that your linear layer does what `Conv2d` does.

# %% nbgrader={"grade": false, "grade_id": "PatchEmbedding", "locked": false, "schema_version": 3, "solution": true, "task": false}
class PatchEmbedding(nn.Module):
    """Images -> [CLS] + one token per patch, plus position embeddings (ViT, eq. 1).

    Args:
        image_size: H = W of the (square) input images.
        patch_size: P; ``image_size`` must be divisible by it.
        in_channels: C.
        dim: D, the width of a token.

    Attributes:
        proj: nn.Linear(C·P·P, D), the patch embedding E.
        cls_token: nn.Parameter (1, 1, D), the [CLS] token.
        pos_embedding: nn.Parameter (1, 1 + N, D), N = (image_size / P)².

    Shapes: forward (B, C, image_size, image_size) -> (B, 1 + N, D), [CLS] at position 0.
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        ### BEGIN SOLUTION
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size "
                             f"{patch_size}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Linear(in_channels * patch_size * patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(0.02 * torch.randn(1, 1 + num_patches, dim))
        ### END SOLUTION

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        expected = (self.in_channels, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected images (B, {', '.join(map(str, expected))}), "
                             f"got shape {tuple(images.shape)}")
        # 1. patches as tokens, each mapped by the same linear layer E (eq. 1)
        x = self.proj(patchify(images, self.patch_size))  # (B, N, D)
        # 2. prepend [CLS], the same learned vector for every image
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1)  # (B, 1 + N, D)
        # 3. add the position embeddings E_pos to every token, [CLS] included
        return x + self.pos_embedding  # (B, 1 + N, D)
        ### END SOLUTION


# %% [markdown]
# **Try it.** Embedding two 32×32 images in 4×4 patches with $D = 64$ gives $1 + 64 = 65$
# tokens: the next cell should print `torch.Size([2, 65, 64])`.

# %%
embed = PatchEmbedding(image_size=32, patch_size=4, in_channels=3, dim=64)
print(embed(batch).shape)

# %% nbgrader={"grade": true, "grade_id": "test_PatchEmbedding", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks PatchEmbedding against Conv2d(kernel = stride = P) + [CLS] + positions, with gradients.
checks.PatchEmbedding(PatchEmbedding)
### BEGIN HIDDEN TESTS
checks.PatchEmbedding(PatchEmbedding, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# The same weights in a `Conv2d` with kernel = stride = 4 give the same 64 patch tokens (up to
# rounding); the convolution just lays them out as a $D \times 8 \times 8$ feature map, one
# $8 \times 8$ map per token coordinate. Here are the first 7 of those maps for the red square:
# an untrained embedding already sees the object, because each coordinate is a fixed random
# mix of the patch's pixels.

# %%
conv = nn.Conv2d(3, 64, kernel_size=4, stride=4)
with torch.no_grad():
    conv.weight.copy_(embed.proj.weight.reshape(64, 3, 4, 4))  # row d of E -> filter d (C, P, P)
    conv.bias.copy_(embed.proj.bias)
    feature_map = conv(batch[:1])  # (1, 64, 8, 8)
    from_conv = feature_map.flatten(2).transpose(1, 2)  # (1, 64, 64): tokens in row-major order
    from_linear = embed.proj(patchify(batch[:1], 4))  # (1, 64, 64)
print("largest difference, Linear vs Conv2d:", (from_conv - from_linear).abs().max().item())
fig, axes = plt.subplots(1, 8, figsize=(13, 2))
axes[0].imshow(plotting.as_hwc(batch[0]))
axes[0].set_title("image", fontsize=9)
for d, ax in enumerate(axes[1:]):
    ax.imshow(feature_map[0, d], cmap="magma")
    ax.set_title(f"coordinate {d}", fontsize=9)
for ax in axes:
    ax.axis("off")
fig.suptitle("Conv2d(kernel = stride = 4) with the weights of proj: one 8×8 map per coordinate")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5 · Scaled dot-product attention
#
# Attention lets every token look at all the others and take what it needs. Each token
# emits three vectors:
# - a **query** $q$: what am I looking for?
# - a **key** $k$: what do I offer?
# - a **value** $v$: what do I pass on if chosen?
#
# The match between query $i$ and key $j$ is their dot product; a softmax over the keys turns
# the matches of query $i$ into weights $a_{ij} \ge 0$ that sum to 1; the output is the
# weighted average of the values (Vaswani et al. 2017, eq. 1):
#
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\Big(\frac{Q K^\top}{\sqrt{d}}
# \Big)\, V, \qquad a_{ij} = \frac{\exp(q_i \cdot k_j / \sqrt{d})}{\sum_{j'} \exp(q_i \cdot
# k_{j'} / \sqrt{d})}.$$
#
# **Why divide by $\sqrt{d}$?** If the $d$ components of $q$ and $k$ are independent with mean 0
# and variance 1, their dot product has variance $d$ (Vaswani et al. 2017, footnote 4). With
# $d = 64$ the scores spread over ±8 or more, the softmax puts nearly all its weight on one key,
# and its gradient almost vanishes. Dividing by $\sqrt{d}$, the standard deviation, keeps the
# scores at unit scale whatever $d$ is. (The picture after the test shows this.)
#
# **Masks** say which keys a query may see: a boolean tensor, **True = may attend**,
# broadcastable to the scores' shape `(..., Nq, Nk)`. A *padding mask* hides the filler tokens
# of short sentences; a *causal mask* (notebook 04) hides the future. Masked scores are set to
# $-\infty$ before the softmax, so that their weight is $e^{-\infty} = 0$ exactly. (Setting
# them to 0 would not do: $e^0 = 1$.)
#
# ### Exercise 4 · `scaled_dot_product_attention` (3 points)
#
# Shapes: `q` `(..., Nq, d)`, `k` `(..., Nk, d)`, `v` `(..., Nk, dv)`, any leading axes (batch,
# heads). Return the output `(..., Nq, dv)` **and** the weights `(..., Nq, Nk)`. Use `@` (or
# `torch.matmul`), `k.transpose(-2, -1)`, `masked_fill` and `softmax`. Raise a `ValueError` when
# `q` and `k` differ in width or `k` and `v` in length. The test compares with
# `F.scaled_dot_product_attention`, which you may not call.

# %% nbgrader={"grade": false, "grade_id": "scaled_dot_product_attention", "locked": false, "schema_version": 3, "solution": true, "task": false}
def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None):
    """softmax(q kᵀ / √d) v, with an optional boolean mask (Vaswani et al. 2017, eq. 1).

    Args:
        q: queries (..., Nq, d).
        k: keys (..., Nk, d).
        v: values (..., Nk, dv).
        mask: optional bool tensor broadcastable to (..., Nq, Nk); True = the query may attend
            to the key. Every query must be allowed at least one key.

    Returns:
        (output, weights): output (..., Nq, dv); weights (..., Nq, Nk), each row summing to 1.

    Raises:
        ValueError: if q and k differ in width d, or k and v in length Nk.
    """
    ### BEGIN SOLUTION
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError("expected q (..., Nq, d), k (..., Nk, d), v (..., Nk, dv)")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same width d, got {q.shape[-1]} and "
                         f"{k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must hold the same number of tokens, got {k.shape[-2]} "
                         f"and {v.shape[-2]}")
    # 1. the scores: every query against every key, scaled by 1/√d (eq. 1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Nq, Nk)
    # 2. a masked key gets score -inf, hence weight exactly 0
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # (..., Nq, Nk)
    # 3. a softmax over the keys: each query's weights sum to 1
    weights = scores.softmax(dim=-1)  # (..., Nq, Nk)
    # 4. the weighted average of the values
    return weights @ v, weights  # (..., Nq, dv), (..., Nq, Nk)
    ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell attends from 4 queries to 4 keys with a causal mask (query $i$ sees
# keys $0, \dots, i$). It should print `torch.Size([1, 4, 8]) torch.Size([1, 4, 4])`, then
# weights whose rows sum to 1 and that are 0 above the diagonal (the first row is
# `[1, 0, 0, 0]`), then `True` for the comparison with `F.scaled_dot_product_attention`.

# %%
generator = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(1, 4, 8, generator=generator) for _ in range(3))
causal = torch.ones(4, 4, dtype=torch.bool).tril()  # True on and below the diagonal
output, weights = scaled_dot_product_attention(q, k, v, causal)
print(output.shape, weights.shape)
print(weights[0].numpy().round(2), "row sums", weights[0].sum(dim=-1).tolist())
print(torch.allclose(output, F.scaled_dot_product_attention(q, k, v, attn_mask=causal),
                     atol=1e-6))

# %% nbgrader={"grade": true, "grade_id": "test_scaled_dot_product_attention", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Checks attention against F.scaled_dot_product_attention: heads, masks, Nq ≠ Nk, float64, grads.
checks.scaled_dot_product_attention(scaled_dot_product_attention)
### BEGIN HIDDEN TESTS
checks.scaled_dot_product_attention(scaled_dot_product_attention, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# The effect of the $\sqrt{d}$: random queries and keys of width $d$, 16 keys each. Without the
# scaling (red) the largest weight of a query climbs towards 1 as $d$ grows: attention becomes
# a hard, untrainable choice of one key. With it (blue) the weights stay spread out for every
# $d$. On the right, the causal weights of the try-it cell: each row a query, each column a key.

# %%
widths = [2, 4, 8, 16, 32, 64, 128, 256, 512]
scaled, unscaled = [], []
generator = torch.Generator().manual_seed(0)
for d in widths:
    q = torch.randn(256, 1, d, generator=generator)  # 256 queries, each alone
    keys = torch.randn(256, 16, d, generator=generator)  # 16 keys for each query
    v = torch.zeros(256, 16, 1)
    scaled.append(scaled_dot_product_attention(q, keys, v)[1].max(dim=-1).values.mean().item())
    unscaled.append((q @ keys.transpose(-2, -1)).softmax(dim=-1).max(dim=-1).values.mean().item())
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot(widths, unscaled, "o-", color="tab:red", label="softmax(q·k)")
axes[0].plot(widths, scaled, "o-", color="tab:blue", label="softmax(q·k / √d)")
axes[0].axhline(1 / 16, color="gray", ls=":", label="uniform (1/16)")
axes[0].set(xscale="log", xlabel="width d", ylabel="largest weight of a query (mean)",
            title="why divide by √d", xticks=widths, xticklabels=widths)
axes[0].minorticks_off()
axes[0].legend()
shown = axes[1].imshow(weights[0], cmap="viridis", vmin=0, vmax=1)
axes[1].set(xlabel="key", ylabel="query", title="causal attention weights",
            xticks=range(4), yticks=range(4))
fig.colorbar(shown, ax=axes[1])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6 · Multi-head self-attention
#
# In **self**-attention the queries, keys and values all come from the same tokens $X$, through
# three learned linear maps. One attention can only form one weighted average per token, so the
# transformer runs $h$ of them side by side, the **heads**, each on its own $d = D / h$ slice,
# and mixes their outputs with a last linear map (Vaswani et al. 2017, §3.2.2):
#
# $$\operatorname{MultiHead}(X) = \operatorname{Concat}(\text{head}_1, \dots, \text{head}_h)\,
# W^O, \qquad \text{head}_i = \operatorname{Attention}(X W_i^Q,\; X W_i^K,\; X W_i^V).$$
#
# One head may learn to look at the object, another at the background around it, at the same
# total cost as one wide head. In code, all the projections are one `nn.Linear(D, 3·D)`, and
# the heads are a reshape:
#
# 1. `qkv(x)` `(B, N, 3D)` → reshape `(B, N, 3, h, d)` → permute `(3, B, h, N, d)` → `q, k, v`,
#    each `(B, h, N, d)`. The permute matters: a plain reshape of `(B, N, D)` to
#    `(B, h, N, d)` would cut across tokens instead of across each token's features.
# 2. `scaled_dot_product_attention(q, k, v, mask)` on all heads at once: `(B, h, N, d)`.
# 3. Back: transpose to `(B, N, h, d)`, reshape to `(B, N, D)` (the concatenation), `proj`.
#
# `nn.MultiheadAttention` computes the same thing; its `in_proj_weight` is your `qkv.weight`
# (the rows of $W^Q$, then $W^K$, then $W^V$) and its `out_proj` your `proj`.
#
# ### Exercise 5 · `MultiHeadSelfAttention` (3 points)
#
# Attributes `qkv = nn.Linear(dim, 3 * dim)` and `proj = nn.Linear(dim, dim)`; raise a
# `ValueError` in `__init__` if `dim` is not divisible by `num_heads`, and in `forward` if `x` is
# not `(B, N, dim)`. `forward(x, mask=None, return_weights=False)`:
# - `mask` is True where a token may be attended. A 2-D mask `(B, N)` is a **padding mask**
#   (False = a filler token nobody should attend to): reshape it to `(B, 1, 1, N)` so that it
#   broadcasts over heads and queries. Any other mask is passed on as it is (e.g. a causal
#   `(1, 1, N, N)`).
# - it returns the output `(B, N, D)`, or `(output, weights)` with the weights `(B, h, N, N)`
#   when `return_weights` is True (section 11 draws them).

# %% nbgrader={"grade": false, "grade_id": "MultiHeadSelfAttention", "locked": false, "schema_version": 3, "solution": true, "task": false}
class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017, §3.2.2) with one ``qkv`` projection.

    Args:
        dim: D, the token width; divisible by ``num_heads``.
        num_heads: h; each head works on d = D / h features.

    Attributes:
        qkv: nn.Linear(D, 3·D): queries, keys and values of all heads (q first).
        proj: nn.Linear(D, D): W^O, mixes the concatenated heads.

    Shapes: forward x (B, N, D), mask (B, N) or broadcastable to (B, h, N, N), True = may be
    attended -> (B, N, D); with return_weights=True -> ((B, N, D), weights (B, h, N, N)).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        ### BEGIN SOLUTION
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        ### END SOLUTION

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        ### BEGIN SOLUTION
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x (B, N, {self.dim}), got shape {tuple(x.shape)}")
        batch, tokens, dim = x.shape
        h = self.num_heads
        # 1. queries, keys and values of every head from one linear layer
        qkv = self.qkv(x).reshape(batch, tokens, 3, h, dim // h)  # (B, N, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, h, N, d)
        if mask is not None and mask.ndim == 2:
            mask = mask[:, None, None, :]  # (B, 1, 1, N): padding keys are never attended
        # 2. attention in every head at once
        out, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, h, N, d), (B, h, N, N)
        # 3. concatenate the heads and mix them with W^O
        out = out.transpose(1, 2).reshape(batch, tokens, dim)  # (B, N, h, d) -> (B, N, D)
        out = self.proj(out)  # (B, N, D)
        return (out, weights) if return_weights else out
        ### END SOLUTION


# %% [markdown]
# **Try it.** Your module and `nn.MultiheadAttention` with the same weights: the next cell
# should print `torch.Size([2, 6, 16])` and a largest difference below `1e-6`.

# %%
attention = MultiHeadSelfAttention(dim=16, num_heads=4)
torch_attention = nn.MultiheadAttention(16, 4, batch_first=True)
with torch.no_grad():
    torch_attention.in_proj_weight.copy_(attention.qkv.weight)
    torch_attention.in_proj_bias.copy_(attention.qkv.bias)
    torch_attention.out_proj.weight.copy_(attention.proj.weight)
    torch_attention.out_proj.bias.copy_(attention.proj.bias)
x = torch.randn(2, 6, 16)
keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])  # item 2: the last 2 are padding
with torch.no_grad():
    ours = attention(x, keep)
    theirs = torch_attention(x, x, x, key_padding_mask=~keep)[0]  # torch: True = ignore
print(ours.shape, "largest difference:", (ours - theirs).abs().max().item())

# %% nbgrader={"grade": true, "grade_id": "test_MultiHeadSelfAttention", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Checks MultiHeadSelfAttention against nn.MultiheadAttention: heads, padding masks, weights, grads.
checks.MultiHeadSelfAttention(MultiHeadSelfAttention)
### BEGIN HIDDEN TESTS
checks.MultiHeadSelfAttention(MultiHeadSelfAttention, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# The four heads' weights for the second item of the try-it batch, each a $6 \times 6$ matrix
# (row: query token, column: key token). The last two columns are black in every head: the
# padding mask keeps every query away from the filler tokens. The four heads weigh the same
# tokens differently, even untrained, because each has its own slice of `qkv`.

# %%
with torch.no_grad():
    _, head_weights = attention(x, keep, return_weights=True)  # (2, 4, 6, 6)
plotting.show_images(head_weights[1, :, None], [f"head {i}" for i in range(4)], ncols=4,
                     size=2.0, cmap="viridis", title="attention weights (query × key), item 2")
plt.show()

# %% [markdown]
# ## 7 · The transformer block
#
# A block alternates two sub-layers, each wrapped in a **residual connection**: attention, where
# tokens exchange information, and an **MLP**, which processes each token on its own. The ViT
# normalises *before* each sub-layer, the **pre-norm** arrangement (Dosovitskiy et al. 2021,
# eq. 2–3):
#
# $$z'_\ell = \operatorname{MSA}(\operatorname{LN}(z_{\ell-1})) + z_{\ell-1}, \qquad
# z_\ell = \operatorname{MLP}(\operatorname{LN}(z'_\ell)) + z'_\ell.$$
#
# The residual sum $z + \dots$ means each sub-layer only *adds* a correction to a stream of
# tokens that flows unchanged through the network; gradients flow back along it just as easily.
# Pre-norm keeps that stream un-normalised, which trains stably without the careful
# learning-rate warm-up the original post-norm transformer needed (Xiong et al. 2020). The MLP
# widens each token by `mlp_ratio` (4 in the ViT), applies a GELU,
# $\operatorname{GELU}(x) = x\,\Phi(x)$ (Hendrycks & Gimpel 2016), and narrows it back.
#
# ### Exercise 6 · `TransformerBlock` (2 points)
#
# Attributes: `norm1 = nn.LayerNorm(dim)`, `attn = MultiHeadSelfAttention(dim, num_heads)` (yours),
# `norm2 = nn.LayerNorm(dim)`, and `mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(),
# nn.Linear(hidden, dim))` with `hidden = int(dim * mlp_ratio)`. `forward(x, mask=None,
# return_weights=False)` passes `mask` to the attention; with `return_weights=True` it returns
# `(x, weights)`, the attention's weights `(B, h, N, N)`.

# %% nbgrader={"grade": false, "grade_id": "TransformerBlock", "locked": false, "schema_version": 3, "solution": true, "task": false}
class TransformerBlock(nn.Module):
    """Pre-norm transformer block (ViT, eq. 2–3).

    Args:
        dim: D; num_heads: h; mlp_ratio: the MLP's hidden width is int(D · mlp_ratio).

    Attributes:
        norm1, norm2: nn.LayerNorm(D); attn: MultiHeadSelfAttention(D, h);
        mlp: nn.Sequential(nn.Linear(D, hidden), nn.GELU(), nn.Linear(hidden, D)).

    Shapes: forward x (B, N, D) -> (B, N, D); with return_weights=True -> (x, (B, h, N, N)).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        ### BEGIN SOLUTION
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        ### END SOLUTION

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        ### BEGIN SOLUTION
        # 1. attention on the normalised tokens, added to the residual stream (eq. 2)
        attended, weights = self.attn(self.norm1(x), mask, return_weights=True)  # (B, N, D)
        x = x + attended  # (B, N, D)
        # 2. the MLP on each normalised token, added to the stream (eq. 3)
        x = x + self.mlp(self.norm2(x))  # (B, N, D)
        return (x, weights) if return_weights else x
        ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `torch.Size([2, 65, 64])` and `torch.Size([2, 4, 65, 65])`.

# %%
block = TransformerBlock(dim=64, num_heads=4)
with torch.no_grad():
    out, block_weights = block(embed(batch), return_weights=True)
print(out.shape, block_weights.shape)

# %% nbgrader={"grade": true, "grade_id": "test_TransformerBlock", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks TransformerBlock against a pre-norm block of torch layers: masks, weights, gradients.
checks.TransformerBlock(TransformerBlock)
### BEGIN HIDDEN TESTS
checks.TransformerBlock(TransformerBlock, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Here is the promise of section 3 kept: shuffle the tokens going into a block, and the same
# tokens come out, shuffled the same way (**permutation equivariance**). Left, 12 tokens of the
# block's output (8 of their 64 features); middle, the output for the shuffled input; right, the
# middle one un-shuffled: identical to the left. Nothing in attention or the MLP depends on a
# token's place in the sequence; only the position embeddings added at the start do.

# %%
with torch.no_grad():
    tokens_in = torch.randn(1, 12, 64)
    shuffle = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    plain = block(tokens_in)[0, :, :8]  # (12, 8)
    shuffled = block(tokens_in[:, shuffle])[0, :, :8]  # (12, 8)
    unshuffled = shuffled[shuffle.argsort()]
print("largest difference after un-shuffling:", (unshuffled - plain).abs().max().item())
fig, axes = plt.subplots(1, 3, figsize=(9, 3.6))
for ax, matrix, name in zip(axes, [plain, shuffled, unshuffled],
                            ["block(x)", "block(x shuffled)", "... un-shuffled"], strict=True):
    ax.imshow(matrix, cmap="coolwarm", vmin=-3, vmax=3)
    ax.set(title=name, xlabel="feature", ylabel="token")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 8 · The Vision Transformer
#
# Everything is in place. The ViT (Dosovitskiy et al. 2021, eq. 1–4) is
#
# $$z_0 = \text{PatchEmbedding}(x), \qquad z_\ell = \text{Block}_\ell(z_{\ell-1})\ \
# (\ell = 1, \dots, L), \qquad y = \operatorname{LN}(z_L)^{0}\, W_\text{head},$$
#
# where $\operatorname{LN}(z_L)^0$ is token 0, the [CLS] token, after a last LayerNorm, and
# $W_\text{head}$ a linear layer to the class logits. The other tokens' final states are not
# used for classification: [CLS] must have gathered everything it needs through attention.
#
# ### Exercise 7 · `VisionTransformer` (2 points)
#
# Attributes: `patch_embed` (your `PatchEmbedding`), `blocks` (an `nn.ModuleList` of `depth`
# of your `TransformerBlock`s), `norm` (`nn.LayerNorm(dim)`) and `head`
# (`nn.Linear(dim, num_classes)`). `forward(images)` returns the logits `(B, num_classes)`.
# The method `attention_maps` is given: it runs the blocks with `return_weights=True`. The test
# compares your model with a reference built from torch layers, given the same weights.

# %% nbgrader={"grade": false, "grade_id": "VisionTransformer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class VisionTransformer(nn.Module):
    """The Vision Transformer (ViT, eq. 1–4): [CLS] + patch tokens through ``depth`` pre-norm
    blocks; the final LayerNorm's [CLS] token is classified by a linear head.

    Args:
        image_size, patch_size, in_channels, dim: as PatchEmbedding.
        depth: L, the number of TransformerBlocks; num_heads: h; num_classes: K.
        mlp_ratio: the blocks' MLP width factor.

    Attributes: patch_embed, blocks (nn.ModuleList), norm (nn.LayerNorm), head (nn.Linear).

    Shapes: forward (B, C, image_size, image_size) -> logits (B, K).
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int,
                 depth: int, num_heads: int, num_classes: int, mlp_ratio: float = 4.0):
        super().__init__()
        ### BEGIN SOLUTION
        self.patch_embed = PatchEmbedding(image_size, patch_size, in_channels, dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        ### END SOLUTION

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        x = self.patch_embed(images)  # (B, 1 + N, D), eq. 1
        for block in self.blocks:
            x = block(x)  # (B, 1 + N, D), eq. 2-3
        x = self.norm(x)  # (B, 1 + N, D)
        return self.head(x[:, 0])  # (B, K): the [CLS] token, eq. 4
        ### END SOLUTION

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every block's attention weights, each (B, h, 1 + N, 1 + N)."""
        x, maps = self.patch_embed(images), []
        for block in self.blocks:
            x, weights = block(x, return_weights=True)
            maps.append(weights)
        return maps


# %% [markdown]
# **Try it.** The model we are about to train: 32×32 images in 4×4 patches (65 tokens), width
# 64, 2 blocks of 4 heads, 15 classes. The next cell should print `torch.Size([2, 15])` and
# about 108 thousand parameters.

# %%
vit = VisionTransformer(image_size=32, patch_size=4, in_channels=3, dim=64, depth=2,
                        num_heads=4, num_classes=15)
print(vit(batch).shape, f"{sum(p.numel() for p in vit.parameters()):,} parameters")

# %% nbgrader={"grade": true, "grade_id": "test_VisionTransformer", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks VisionTransformer against a reference ViT of torch layers with the same weights.
checks.VisionTransformer(VisionTransformer)
### BEGIN HIDDEN TESTS
checks.VisionTransformer(VisionTransformer, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 9 · Training the ViT on the Shapes world
#
# The task: name the colour and shape of the single object in an image, one of **15 classes**
# ("red circle", ..., "purple triangle"), at either of two sizes, anywhere in the image. We
# train on 6 000 generated images and measure on 1 500 others. A ViT has far fewer of a CNN's
# built-in assumptions (Dosovitskiy et al. call it "much less image-specific inductive bias").
# It keeps them only at the scale of a patch: one linear map shared by every patch (a pattern
# means the same in every patch of the grid) and pixels grouped within a patch (nearby pixels
# belong together). Everything across patches, it must learn from data. Whether that costs
# data on our small world is the experiment of section 10.

# %% nbgrader={"grade": false, "grade_id": "data_shapes", "locked": true, "schema_version": 3, "solution": false, "task": false}
train_set = data.ShapesClassification("train", size=6000, seed=0, hold_out=False)
test_set = data.ShapesClassification("test", size=1500, seed=0, hold_out=False)
print("train", tuple(train_set.images.shape), " test", tuple(test_set.images.shape))

# %%
plotting.show_images(train_set.images[:10], [data.CLASSES[i] for i in train_set.labels[:10]],
                     ncols=10, size=1.3)
plt.show()

# %% [markdown]
# The model and its training are set in one place, a `ViTConfig`. The loop is notebook 01's, in
# `course_utils.training.train`: AdamW, a short linear warm-up, then a cosine decay of the
# learning rate, with a progress bar. It takes well under a minute on a laptop CPU with the
# solution's code. A few steps in, `train` times your code and says how long the run will take;
# if your modules are much slower than the reference implementation (a correct attention that
# loops over the heads, say), it says so and names the slow part: interrupt, fix it and run
# again.

# %% nbgrader={"grade": false, "grade_id": "train_vit", "locked": true, "schema_version": 3, "solution": false, "task": false}
@dataclass
class ViTConfig:
    """The ViT this notebook trains, and how it is trained."""

    image_size: int = 32        # Shapes-world images are 32×32
    patch_size: int = 4         # 64 patches of 4×4 pixels
    dim: int = 64               # token width D
    depth: int = 2              # transformer blocks L
    num_heads: int = 4          # h, each of width 16
    mlp_ratio: float = 4.0
    num_classes: int = 15
    epochs: int = 8             # 8 × 93 = 744 steps of 64 images
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    reference_step_s: float = 0.033  # one step of the solution's code, reference machine


def make_vit(config: ViTConfig, num_classes: int | None = None) -> VisionTransformer:
    """Your VisionTransformer as `config` says (`num_classes` overrides the config's)."""
    return VisionTransformer(config.image_size, config.patch_size, 3, config.dim, config.depth,
                             config.num_heads, num_classes or config.num_classes,
                             mlp_ratio=config.mlp_ratio)


def classification_loss(model: nn.Module, images: torch.Tensor,
                        labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(images), labels)


config = ViTConfig()
course_utils.seed_everything(0)
model = make_vit(config).to(device)
initial_positions = model.patch_embed.pos_embedding.detach().clone()  # for section 11
losses = training.train(model, classification_loss, [train_set.images, train_set.labels],
                        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                        weight_decay=config.weight_decay, device=device, seed=0, desc="ViT",
                        reference_step_s=config.reference_step_s)

# %%
plotting.plot_losses(losses, title="ViT training loss (cross-entropy)", smooth=20, log=True)
plt.show()

# %% [markdown]
# The model on the 1 500 test images it has never seen: accuracy, the confusion matrix (row:
# true class, column: predicted class; a perfect model has everything on the diagonal), and the
# images it gets wrong.

# %%
logits = training.predict(model, test_set.images, device=device)  # (1500, 15)
predictions = logits.argmax(dim=1)
course_utils.report_metric("ViT test accuracy", training.accuracy(logits, test_set.labels), "%")
confusion = torch.zeros(15, 15)
for true, predicted in zip(test_set.labels.tolist(), predictions.tolist(), strict=True):
    confusion[true, predicted] += 1
plotting.show_heatmap(confusion, data.CLASSES, data.CLASSES, title="confusion matrix (test)",
                      xlabel="predicted", ylabel="true", annotate=False, cmap="Blues", size=6)
plt.show()
wrong = (predictions != test_set.labels).nonzero().flatten()[:8]
if len(wrong):
    plotting.show_images(test_set.images[wrong],
                         [f"{data.CLASSES[test_set.labels[i]]} → {data.CLASSES[predictions[i]]}"
                          for i in wrong], ncols=8, size=1.5, title="mistakes: true → predicted")
    plt.show()

# %% [markdown]
# ### The graded test (3 points)
#
# The test renders its own held-out Shapes images (from a seed you do not see), asks your
# trained `model` for its predictions and needs **at least 95 %** of them right. It also makes
# sure the model uses your own attention: torch's fused attention is not available while it runs.

# %% nbgrader={"grade": true, "grade_id": "test_vit_accuracy", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Checks the trained ViT's accuracy on held-out Shapes images the check makes itself (≥ 95 %).
checks.vit_quality(model)
### BEGIN HIDDEN TESTS
checks.vit_quality(model, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 10 · Experiment: a CNN and a ViT against the size of the training set
#
# "Big ViTs need big data" is usually explained by the inductive bias of the previous section:
# a CNN is built to look at neighbourhoods and to find a pattern wherever it is, while a ViT
# must learn most of that from examples. Here you measure it on our world. The next cell
# trains notebook 01's `SmallCNN` (its architecture, rebuilt in the cell) and your ViT on the
# first 300, 1 000 and 6 000 images of the training set and measures both on the 1 500 test
# images. Each model gets the same number of steps at every size (360 steps of 50 images: 60
# passes over 300 images, 3 over 6 000), with the learning rate and weight decay of its own
# notebook, so only the amount of data differs. About a minute on a laptop CPU.

# %% [markdown] tags=["predict"]
# **Predict before you run the next cell** (not graded; one or two lines): at 300, 1 000 and
# 6 000 training images, which model is more accurate, and does the gap grow or shrink with
# more data?
#
# *Your prediction:*

# %% tags=["experiment"]
# The knob: change it and run again (at most 6 000, the size of the training set).
DATA_SIZES = (300, 1000, 6000)


def data_size_cnn(width: int = 16, num_classes: int = 15) -> nn.Module:
    """Notebook 01's SmallCNN: three [conv 3×3 → BatchNorm → ReLU → max pool 2×2] blocks,
    a global max pool and a linear layer. (B, 3, 32, 32) -> (B, num_classes)."""
    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                             nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))


def data_size_experiment(sizes: tuple[int, ...], train: data.ShapesClassification,
                         test: data.ShapesClassification, vit_config: ViTConfig,
                         device: torch.device, steps: int = 360, batch_size: int = 50,
                         ) -> dict[str, list[float]]:
    """Test accuracy of a SmallCNN and a ViT trained on the first `size` training images, for
    each size, with the same number of steps."""
    recipes = {"SmallCNN": (data_size_cnn, 1e-4),  # (model, weight decay) as in notebook 01
               "ViT": (lambda: make_vit(vit_config), vit_config.weight_decay)}
    accuracies: dict[str, list[float]] = {name: [] for name in recipes}
    for size in sizes:
        epochs = max(1, round(steps * batch_size / size))
        for name, (build, weight_decay) in recipes.items():
            torch.manual_seed(0)  # the same initial weights at every size
            net = build()
            training.train(net, classification_loss, [train.images[:size], train.labels[:size]],
                           epochs=epochs, batch_size=batch_size, lr=3e-3,
                           weight_decay=weight_decay, device=device, seed=0,
                           desc=f"{name}, {size} images")
            logits = training.predict(net, test.images, device=device)
            accuracies[name].append(training.accuracy(logits, test.labels))
    return accuracies


def data_size_report(sizes: tuple[int, ...], results: dict[str, list[float]]) -> None:
    """Print the accuracies as a table and plot them against the number of images."""
    print(f"{'training images':>16}" + "".join(f"{size:>9,}" for size in sizes))
    for name, accuracies in results.items():
        print(f"{name:>16}" + "".join(f"{100 * a:8.1f}%" for a in accuracies))
    _, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, accuracies in results.items():
        ax.plot(sizes, [100 * a for a in accuracies], "o-", label=name)
    ax.set(xscale="log", xlabel="training images", ylabel="test accuracy (%)",
           title="the same steps, more or less data")
    ax.legend()
    plt.show()


with torch.random.fork_rng():  # leaves the notebook's random state as it was
    data_size_results = data_size_experiment(DATA_SIZES, train_set, test_set, config, device)
data_size_report(DATA_SIZES, data_size_results)

# %% [markdown]
# **Explain what you measured (2 points).** Which model needs fewer images, and why? Name the
# assumptions built into the CNN that help it here, and say which of them the ViT keeps and at
# what scale. Then say what you would expect if both models were much larger and trained on
# millions of images, and why. Three to six sentences.

# %% [markdown] nbgrader={"grade": true, "grade_id": "written_data_efficiency", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer.** In our reference run the CNN is near 100 % already at 300 images, while the
# ViT is far behind at 300 (about 55 %) and 1 000 (about 80 %) and catches up only at 6 000;
# the gap shrinks as the data grow. The CNN's convolutions build in locality (a 3×3 filter sees
# neighbouring pixels only) and weight sharing across positions (translation equivariance),
# and its global max pool makes "is this pattern anywhere?" free: exactly what a one-object
# class needs, so a few hundred images are enough to fit its few filters. The ViT keeps these
# only within a patch: one linear map shared by all patches (equivariance on the 4-pixel grid)
# and locality inside the 4×4 patch; how patches relate, where the object is and which patches
# belong together it must learn through attention and the position embeddings, from data, and
# with few images it fits the training images without learning what generalises. With much
# more data and larger models the advantage turns: the learned, global attention is more
# flexible than a fixed local bias, so large ViTs match or beat CNNs (Dosovitskiy et al. 2021:
# ViTs overtake ResNets only when pre-trained on 14M–300M images).
# (Grading: 1 point for the observation with the reason, locality / weight sharing / the global
# pool of the CNN that the ViT must learn; 1 point for what the ViT keeps (shared patch
# projection, locality within a patch) and the large-data reversal with a reason.)

# %% [markdown]
# ## 11 · Looking inside the trained ViT
#
# ### Where does [CLS] look?
#
# [CLS] has no pixels of its own: everything it knows at the end, it gathered through
# attention. Row 0 of a block's attention weights says how much [CLS] took from each token;
# dropping its weight on itself and averaging over the heads gives one number per patch, drawn
# here over the images (bright = much attention, dark = none). Look at where the bright patches
# sit. In our reference run, [CLS] in the last block took nearly everything from one or two
# patches on the **edge of the object**, wherever the object was: a patch that holds both the
# object's colour and a piece of its outline (a straight side, a corner, a curve, a slanted
# edge) is enough to tell the 15 classes apart. The cell prints how much of [CLS]'s attention
# went to its two favourite patches in your run. (Attention weights
# hint at what a model uses; they are not a proof. Abnar & Zuidema 2020 discuss how to combine
# them across layers.)

# %%
shown = test_set.images[:12]
maps = model.attention_maps(shown.to(device))  # depth × (12, h, 65, 65)
cls_to_patches = maps[-1][:, :, 0, 1:].mean(dim=1)  # (12, 64): last block, mean over heads
titles = [data.CLASSES[i] for i in predictions[:12]]
plotting.show_attention(shown, cls_to_patches, titles, ncols=6,
                        title="[CLS] → patches, last block (mean over heads); titles: prediction")
plt.show()
top_two = (cls_to_patches / cls_to_patches.sum(dim=1, keepdim=True)).topk(2, dim=1).values.sum(1)
print(f"share of [CLS]'s attention to patches that goes to its top two patches: "
      f"{100 * top_two.mean():.0f} % on average over these 12 images "
      f"(uniform attention would give {100 * 2 / 64:.0f} %)")

# %% [markdown]
# Each head of each block for the first image. In our reference run the heads divided the
# work: some looked at the same edge patch of the object, others spread their attention thinly
# over the background (a head with nothing to add to [CLS] can do this at almost no cost: the
# background tokens are all alike). Compare with yours.

# %%
per_head = torch.cat([m[0, :, 0, 1:] for m in maps])  # (depth·h, 64): image 0, each head
names = [f"block {b} head {h}" for b in range(len(maps)) for h in range(maps[0].shape[1])]
plotting.show_attention(shown[:1].expand(len(per_head), -1, -1, -1), per_head, names, ncols=4,
                        size=1.8, title=f"[CLS] → patches, every head ({titles[0]})")
plt.show()

# %% [markdown]
# ### What did the position embeddings learn?
#
# Nothing told the model that patch 9 lies right of patch 8 and above patch 17: its position
# embeddings started as independent random vectors, so at the start any two positions are
# unrelated (cosine similarity near 0). Dosovitskiy et al. (2021, Fig. 7, centre) found that
# after training on ImageNet each position resembles its neighbours and its own row and
# column: the model rediscovers the 2-D grid from data. Ours, before and after training: on the
# left, the mean cosine similarity of two positions' embeddings against their distance on the
# grid ($|\Delta\text{row}| + |\Delta\text{column}|$); on the right, the same similarity for each
# offset $(\Delta\text{row}, \Delta\text{column})$ between two positions, averaged over all
# pairs with that offset (the centre, a position with itself, left blank).

# %%
def position_similarity(pos_embedding: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (N, N) of the patch positions' embeddings (1, 1 + N, D)."""
    positions = F.normalize(pos_embedding[0, 1:].detach().cpu(), dim=-1)  # (N, D)
    return positions @ positions.T  # (N, N)


def mean_by_offset(similarity: torch.Tensor, side: int) -> torch.Tensor:
    """(2·side − 1, 2·side − 1): the mean similarity of all pairs of grid positions with offset
    (Δrow, Δcol), stored at [Δrow + side − 1, Δcol + side − 1]."""
    row, col = torch.arange(side * side) // side, torch.arange(side * side) % side
    d_row = (row[None] - row[:, None] + side - 1).flatten()  # (N·N,): shifted to 0 … 2·side − 2
    d_col = (col[None] - col[:, None] + side - 1).flatten()  # (N·N,)
    total = torch.zeros(2 * side - 1, 2 * side - 1)
    total.index_put_((d_row, d_col), similarity.flatten(), accumulate=True)
    count = torch.zeros_like(total).index_put_((d_row, d_col), torch.ones(len(d_row)),
                                                accumulate=True)
    mean = total / count
    mean[side - 1, side - 1] = float("nan")  # a position with itself
    return mean


side = 8  # the grid is 8 × 8 patches
row, col = torch.arange(side * side) // side, torch.arange(side * side) % side
distance = (row[:, None] - row[None]).abs() + (col[:, None] - col[None]).abs()  # (64, 64)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1.4, 1, 1]},
                         constrained_layout=True)
for k, (name, pos_embedding) in enumerate([("at initialisation", initial_positions),
                                           ("after training", model.patch_embed.pos_embedding)]):
    similarity = position_similarity(pos_embedding)  # (64, 64)
    means = [similarity[distance == d].mean().item() for d in range(1, 11)]
    axes[0].plot(range(1, 11), means, "o-", label=name)
    offsets = mean_by_offset(similarity, side)[2:-2, 2:-2]  # offsets −5 … 5 (≥ 9 pairs each)
    shown = axes[1 + k].imshow(offsets, cmap="coolwarm", vmin=-0.2, vmax=0.2,
                               extent=(-5.5, 5.5, 5.5, -5.5))
    axes[1 + k].set(title=name, xlabel="Δ column", ylabel="Δ row" if k == 0 else None)
axes[0].axhline(0, color="gray", lw=0.8)
axes[0].set(xlabel="distance on the grid (patches)", ylabel="mean cosine similarity",
            title="position embeddings: similarity vs distance")
axes[0].legend()
fig.colorbar(shown, ax=axes[1:], label="mean cosine similarity")
plt.show()

# %% [markdown]
# In our reference run training did give nearby positions more similar embeddings: the curve
# fell with distance, and on the right the warmest offsets were the direct neighbours, most of
# all those just above and below. But the effect was faint: the similarity of single pairs of
# positions is still mostly noise, far from the crisp grid of a ViT trained on ImageNet. Is
# the model using positions at all? Test it: shuffle the patches of every test image (the
# jigsaws of section 3) and classify them.

# %%
generator = torch.Generator().manual_seed(0)
test_patches = patchify(test_set.images, 4)  # (1500, 64, 48)
shuffled = torch.stack([p[torch.randperm(64, generator=generator)] for p in test_patches])
jigsaws = unpatchify(shuffled, 4, 32, 32)  # (1500, 3, 32, 32)
jigsaw_logits = training.predict(model, jigsaws, device=device)
print(f"ViT accuracy on the test images {100 * training.accuracy(logits, test_set.labels):.1f} %,"
      f" on the same images with their patches shuffled "
      f"{100 * training.accuracy(jigsaw_logits, test_set.labels):.1f} %")
plotting.show_images(jigsaws[:8], [f"→ {data.CLASSES[i]}" for i in jigsaw_logits[:8].argmax(1)],
                     ncols=8, size=1.5, title="shuffled test images and the ViT's predictions")
plt.show()

# %% [markdown]
# ## 12 · Experiment: a ViT without position embeddings
#
# The jigsaw test asks whether *this* model uses positions. The experiment asks what positions
# are *for*. The next cell trains two fresh ViTs of the same configuration: one as usual, one
# whose `pos_embedding` is frozen at zero, so that nothing but the patches' contents tells the
# tokens apart. They learn a **layout label** read off each scene, `scene.objects[0].x < 0.5`:
# is the object in the left half of the image? As a control, two more ViTs learn the 15
# classes the same way. Each is trained for 300 steps on the first 3 000 training images and
# measured on the test images and on their jigsaws. The knob is the layout label: try
# `"top/bottom"` (`y < 0.5`) too. Under a minute on a laptop CPU.

# %% [markdown] tags=["predict"]
# **Predict before you run the next cell** (not graded; one or two lines): for the left/right
# label and for the classes, roughly what accuracy will the ViT with and the ViT without
# position embeddings reach, on normal test images and on jigsaws?
#
# *Your prediction:*

# %% tags=["experiment"]
# The knob: change it and run again ("left/right" or "top/bottom").
LAYOUT_LABEL = "left/right"


def layout_labels(dataset: data.ShapesClassification, label: str) -> torch.Tensor:
    """(N,) long: 1 if the object's centre is in the left (top) half of the image, else 0; or
    the 15 classes for label "class"."""
    if label == "class":
        return dataset.labels
    coordinate = {"left/right": "x", "top/bottom": "y"}[label]
    return torch.tensor([int(getattr(scene.objects[0], coordinate) < 0.5)
                         for scene in dataset.scenes])


def positions_experiment(label: str, train: data.ShapesClassification,
                         test: data.ShapesClassification, test_jigsaws: torch.Tensor,
                         vit_config: ViTConfig, device: torch.device, size: int = 3000,
                         steps: int = 300, batch_size: int = 50,
                         ) -> dict[tuple[str, str], list[float]]:
    """{(task, "with"/"without positions"): [accuracy on the test images, on their jigsaws]}
    for ViTs trained on `label` and on the classes, with learned and with zero position
    embeddings."""
    results = {}
    for task in (label, "class"):
        train_labels, test_labels = layout_labels(train, task)[:size], layout_labels(test, task)
        for variant in ("with positions", "without positions"):
            torch.manual_seed(0)
            net = make_vit(vit_config, num_classes=int(train_labels.max()) + 1)
            if variant == "without positions":  # zero, and never updated
                net.patch_embed.pos_embedding.data.zero_()
                net.patch_embed.pos_embedding.requires_grad_(False)
            training.train(net, classification_loss, [train.images[:size], train_labels],
                           epochs=round(steps * batch_size / size), batch_size=batch_size,
                           lr=vit_config.lr, weight_decay=vit_config.weight_decay,
                           device=device, seed=0, desc=f"{task}, {variant}")
            results[task, variant] = [
                training.accuracy(training.predict(net, images, device=device), test_labels)
                for images in (test.images, test_jigsaws)]
    return results


def positions_report(results: dict[tuple[str, str], list[float]]) -> None:
    """Print the accuracies as a table."""
    print(f"{'label':>12} {'ViT':>18} {'test images':>12} {'jigsaws':>9}")
    for (task, variant), (normal, shuffled) in results.items():
        print(f"{task:>12} {variant:>18} {100 * normal:11.1f}% {100 * shuffled:8.1f}%")
    print(f"(chance: 50 % for a two-way layout label, {100 / 15:.1f} % for the 15 classes)")


with torch.random.fork_rng():  # leaves the notebook's random state as it was
    positions_results = positions_experiment(LAYOUT_LABEL, train_set, test_set, jigsaws, config,
                                             device)
positions_report(positions_results)

# %% [markdown]
# **Explain what you measured (2 points).** Why does the ViT without position embeddings score
# what it does on the layout label, and why exactly the same on the test images and on their
# jigsaws? Why does the ViT *with* position embeddings fall on the jigsaws for the layout label
# but hardly for the classes? Three to six sentences.

# %% [markdown] nbgrader={"grade": true, "grade_id": "written_positions_layout", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer.** Without position embeddings every token is a function of its patch alone;
# self-attention, the MLP and the [CLS] read-out are permutation-equivariant (section 7), so
# [CLS]'s final state depends only on the *set* of patches, not on their order. A jigsaw is the
# same set in another order, so the model's output, and its accuracy, is identical on both;
# and an object on the left and its mirror position on the right give (nearly) the same set of
# patches, so the layout label is at chance (about 50 %). With learned position embeddings each
# token carries where it is, and the model learns the layout label almost perfectly (≈ 98 % in
# our reference run); shuffling moves the object's patches to random positions, so on jigsaws
# it guesses (≈ 50 %). The class, on the other hand, can be read off single patches (colour,
# and the piece of outline in an edge patch), so it needs no positions: both models learn it
# and both keep most of it on jigsaws.
# (Grading: 1 point for the bag-of-patches / permutation argument that explains chance and
# identical numbers without positions; 1 point for why positions give the layout label and why
# shuffling destroys it but not the class.)

# %% [markdown]
# **Discussion** (read after answering). The classes of our world are a bag-of-patches task:
# colour and shape can be read off single patches at the object's edge, which is where [CLS]
# looks, so the main ViT classified shuffled images almost as well as real ones in our
# reference run (99.8 % against 99.3 %; section 11 prints yours), and its position
# embeddings get little pressure to become a clean grid. A label about *where* is
# different: it cannot be read from any single patch, and from a bag of patches it cannot be
# read at all. Such labels are what gives the position embeddings their job; notebook 05's
# ViLT answers questions like "is the red circle left of the blue square?".

# %% [markdown]
# ## 13 · A question to answer in words (2 points)
#
# (a) Beyond the left/right label of section 12, what would a ViT **without position
# embeddings** fail at? Name two tasks (on the Shapes world or on real photos), say why each
# needs positions, and name one task it would still do well. (b) For our $32 \times 32$
# images, how many tokens does the ViT read with patches of 8, 4 and 2 pixels, and how does
# the cost of one layer grow as $P$ is halved: the attention itself, and the per-token layers
# (projections and MLP)? What do you gain from the smaller patches? Four to eight sentences in
# all.

# %% [markdown] nbgrader={"grade": true, "grade_id": "written_positions_patches", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# (a) Attention and the MLP are permutation-equivariant and [CLS] pools over all tokens, so
# apart from the position embeddings the model sees the image as an unordered bag of patches
# and cannot tell an image from its jigsaw. It fails at everything about *where*: spatial
# relations ("is the red circle left of the blue square?"), "what is at the top", reading text
# or a clock (the order of letters or the hands' direction), telling a face from a scrambled
# face, or any shape too big to recognise from one patch (whose pieces must be put together
# in the right arrangement). It still does well where the answer is in single patches:
# single-object colour-and-shape classification (every object patch carries the colour, and
# a 4×4 piece of a rim, a corner or a slanted edge already differs locally), or texture and
# colour classes ("grass", "sky") in photos.
# (b) N = (32/P)²: 16, 64 and 256 tokens for P = 8, 4, 2. Attention compares every pair, so
# its cost (about 2N²D) grows with N², ×16 each time P is halved (256 → 4 096 → 65 536
# pairs), while the per-token layers (MLP, projections, about 12ND²) grow ×4; at D = 64 the
# attention term overtakes them once N > 6D = 384. Smaller patches give finer detail (a small
# triangle is no longer one or two blurry patches) at a much higher cost.
# (Grading: 1 point for (a): the bag of patches / permutation equivariance, two tasks that
# need positions with a reason, one that does not; 1 point for (b): 16/64/256 tokens, the
# quadratic growth of attention against the linear growth of the per-token layers.)

# %% [markdown]
# ## What you built, and where it lives in real systems
#
# - `patchify` / `unpatchify` are `F.unfold` / `F.fold` with kernel = stride = P, or the einops
#   pattern `rearrange(x, "b c (h p1) (w p2) -> b (h w) (c p1 p2)")` that many ViT codebases
#   use. `unpatchify` is how MAE and DiT turn predicted tokens back into images.
# - `PatchEmbedding` is torchvision's `VisionTransformer.conv_proj` + `class_token` +
#   `encoder.pos_embedding`, timm's `PatchEmbed` + `cls_token` + `pos_embed`, and open_clip's
#   `conv1` + `class_embedding` + `positional_embedding`: all use the convolution form.
# - `scaled_dot_product_attention` is `torch.nn.functional.scaled_dot_product_attention`,
#   which picks a fused kernel (FlashAttention, Dao et al. 2022) that never stores the
#   $N \times N$ weights; `MultiHeadSelfAttention` is `nn.MultiheadAttention` and
#   `TransformerBlock` is `nn.TransformerEncoderLayer(norm_first=True, activation="gelu")`.
# - `VisionTransformer` is torchvision's `vit_b_16` and timm's `vit_base_patch16_224` (width
#   768, 12 blocks of 12 heads, 224×224 images in 16×16 patches), and the image tower of CLIP,
#   which notebook 04 trains with text (`course_utils.blocks.VisionTransformer` is the version
#   later notebooks import).
#
# **Further reading**
# - Dosovitskiy et al., *An Image is Worth 16x16 Words: Transformers for Image Recognition at
#   Scale*, ICLR 2021 (eq. 1–4, Fig. 7).
# - Vaswani et al., *Attention Is All You Need*, NeurIPS 2017 (§3.2, eq. 1).
# - Xiong et al., *On Layer Normalization in the Transformer Architecture*, ICML 2020 (pre-norm).
# - Beyer, Zhai & Kolesnikov, *Better plain ViT baselines for ImageNet-1k*, 2022 (what makes a
#   small ViT train well).
# - Abnar & Zuidema, *Quantifying Attention Flow in Transformers*, ACL 2020 (attention rollout).
# - Darcet et al., *Vision Transformers Need Registers*, ICLR 2024 (what else [CLS]-like tokens do).
#
# **Next:** notebook 03 asks how to tell when an image and a sentence mean the same thing:
# similarities and contrastive losses.
