# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Bringing matched pairs together: similarity and contrastive losses
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/multimodal-from-scratch/course/blob/main/notebooks/03_similarity_contrastive/03_similarity_contrastive.ipynb)
#
# Notebooks 01 and 02 built encoders that turn an image into a vector. A multimodal model
# needs a second encoder for text, and a reason for the two to agree: the vector of a photo
# of a red circle should lie close to the vector of the words "a red circle", and far from
# "a blue square". This notebook builds that reason — the *losses* that pull matched pairs
# together and push mismatched ones apart — and ends by training a tiny image–caption model
# with them.
#
# **You will learn**
# - why embeddings are compared by their angle (cosine similarity) rather than their distance;
# - how a whole batch is compared at once: the similarity matrix;
# - the triplet loss, its margin, and the difference between FaceNet's squared distances and
#   PyTorch's plain ones;
# - batch-hard mining: learning from the hardest pairs in the batch (Hermans et al. 2017);
# - CLIP's symmetric InfoNCE loss and what its temperature does;
# - how these losses shape an embedding space, seen in a small experiment on the Shapes world,
#   and what happens to it when nothing pushes the mismatched pairs apart.
#
# **Time:** about 2–2.3 hours: 35 minutes of reading, 1.5 hours of exercises and written
# answers (the batch-hard loss alone takes about 30 minutes), and about a minute of running on
# a laptop CPU.
#
# **Prerequisites:** notebook 00 (tensors and the Shapes world); the softmax and the
# cross-entropy loss of a classifier. Notebooks 01–02 help but are not needed: the image
# encoder here is a three-layer CNN.

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
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import course_utils
from course_utils import data, plotting, training
from course_utils.checks import contrastive as checks

device = course_utils.get_device()
course_utils.seed_everything(0)
print(f"course_utils {course_utils.__version__}, torch {torch.__version__}, device: {device}")

# %% [markdown]
# ## 1 · Cosine similarity: compare directions, not lengths
#
# An encoder maps an image or a sentence to a vector, its **embedding**. Two inputs are
# "similar" when their embeddings are. But similar how? The length of an embedding often
# carries things we do not care about — how bright the photo is, how long the caption, how
# frequent a word — while its *direction* carries the meaning. So we compare directions, with
# the cosine of the angle $\theta$ between two vectors:
#
# $$\cos(a, b) = \frac{a \cdot b}{\lVert a\rVert_2\,\lVert b\rVert_2}
#   = \frac{\sum_k a_k b_k}{\sqrt{\sum_k a_k^2}\,\sqrt{\sum_k b_k^2}} \in [-1, 1].$$
#
# It is 1 for vectors pointing the same way, 0 for orthogonal ones, −1 for opposite ones, and
# it does not change when either vector is scaled by a positive number. Two more reasons the
# field uses it:
#
# - **On the unit sphere, angle and distance agree.** For unit vectors
#   $\hat a = a / \lVert a\rVert$, $\lVert \hat a - \hat b\rVert^2 = 2 - 2\cos(a, b)$: the
#   nearest neighbours by distance and by angle are the same, and all similarities of a batch
#   are one matrix product (section 2). CLIP, SimCLR and most retrieval systems normalise
#   their embeddings for this reason (Wang & Isola 2020 study the geometry of that sphere).
# - **High-dimensional space is roomy.** Two random directions in $D$ dimensions are almost
#   orthogonal: their cosine has mean 0 and standard deviation $1/\sqrt{D}$. With
#   $D = 512$, thousands of concepts can each get a direction of their own. You will see this
#   in the picture below.
#
# A **zero vector** has no direction. Dividing by its length 0 would give $0/0$ = NaN, which
# then spreads through a whole training run. PyTorch's `F.cosine_similarity` clamps each length
# at a small $\varepsilon$:
#
# $$\cos_\varepsilon(a, b) = \frac{a \cdot b}{\max(\lVert a\rVert_2, \varepsilon)\,
#   \max(\lVert b\rVert_2, \varepsilon)},$$
#
# so that a zero vector gets similarity 0 with everything.
#
# ### Exercise 1 · `cosine_similarity` (2 points)
#
# Write `cosine_similarity(a, b, dim=-1, eps=1e-8)` with the formula above.
#
# - `a` and `b` are tensors whose shapes **broadcast** (as in `a * b`): the vectors lie along
#   axis `dim` of the broadcast shape, and the result has that axis removed. A query
#   `(1, D)` against keys `(K, D)` gives `(K,)`; `(3, 1, D)` against `(1, 4, D)` gives all
#   `(3, 4)` pairs. `torch.broadcast_tensors(a, b)` gives you both at the broadcast shape.
# - Clamp **each** length separately with `clamp_min(eps)`.
# - If the shapes do not broadcast, raise a `ValueError` that says so (`torch.broadcast_shapes`
#   raises a `RuntimeError` you can catch).
# - The test compares with `F.cosine_similarity`; you may not call it, nor `F.normalize`.

# %% nbgrader={"grade": false, "grade_id": "cosine_similarity", "locked": false, "schema_version": 3, "solution": true, "task": false}
def cosine_similarity(a: torch.Tensor, b: torch.Tensor, dim: int = -1,
                      eps: float = 1e-8) -> torch.Tensor:
    """Cosine of the angle between the vectors of ``a`` and ``b`` along ``dim``.

    cos(a, b) = a·b / (max(‖a‖₂, eps) · max(‖b‖₂, eps)), so a zero vector gives 0.

    Args:
        a, b: float tensors whose shapes broadcast, e.g. (N, D) and (N, D), or (1, D) and
            (K, D); the vectors lie along ``dim`` of the broadcast shape.
        dim: the axis holding the vectors (default: the last).
        eps: the smallest length a vector is divided by.

    Returns:
        the broadcast shape without ``dim`` (e.g. (N,)), same dtype and device as the inputs.

    Raises:
        ValueError: if the shapes of ``a`` and ``b`` do not broadcast.
    """
    ### BEGIN SOLUTION
    try:
        a, b = torch.broadcast_tensors(a, b)  # both (...), the broadcast shape
    except RuntimeError:
        raise ValueError(f"the shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast "
                         "to one shape") from None
    # 1. the dot product of each pair of vectors along `dim`
    dot = (a * b).sum(dim=dim)  # (...) without `dim`
    # 2. the two lengths, each clamped at eps, so that a zero vector gives 0/eps = 0
    length_a = torch.linalg.vector_norm(a, dim=dim).clamp_min(eps)  # (...) without `dim`
    length_b = torch.linalg.vector_norm(b, dim=dim).clamp_min(eps)
    # 3. the cosine
    return dot / (length_a * length_b)
    ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `0.7071`, then `0.0` (a zero vector, not `nan`), then
# `torch.Size([3, 4])`.

# %%
print(f"{cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])).item():.4f}")
print(cosine_similarity(torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])).item())
print(cosine_similarity(torch.randn(3, 1, 8), torch.randn(1, 4, 8)).shape)

# %% nbgrader={"grade": true, "grade_id": "test_cosine_similarity", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks cosine_similarity against F.cosine_similarity: broadcasting, dim, eps, zeros, gradients.
checks.cosine_similarity(cosine_similarity)
### BEGIN HIDDEN TESTS
checks.cosine_similarity(cosine_similarity, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# **Random directions are nearly orthogonal.** Each histogram holds the cosine similarities of
# 2,000 pairs of random Gaussian vectors, computed with your function. In 2 dimensions every
# angle is equally likely; in 512 the cosines huddle around 0 with a spread of about
# $1/\sqrt{512} \approx 0.044$. A trained embedding space uses that room: unrelated things sit
# at right angles, and "similar" means a cosine well above the noise.

# %%
generator = torch.Generator().manual_seed(0)
fig, axes = plt.subplots(1, 3, figsize=(10, 2.6), sharey=True)
for ax, dim in zip(axes, (2, 32, 512), strict=True):
    a = torch.randn(2000, dim, generator=generator)
    b = torch.randn(2000, dim, generator=generator)
    cosines = cosine_similarity(a, b)  # (2000,)
    ax.hist(cosines.numpy(), bins=40, range=(-1, 1), color="tab:blue")
    ax.set_title(f"D = {dim}: std {cosines.std():.3f} (1/√D = {1 / math.sqrt(dim):.3f})",
                 fontsize=9)
    ax.set_xlabel("cosine similarity")
axes[0].set_ylabel("pairs")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Length is a nuisance, direction is content.** Below, a red circle; the same picture at
# 30 % brightness; and, of 40 Shapes images of other classes, the one nearest to the original
# by Euclidean distance. Each image is flattened into one vector of $3 \cdot 32 \cdot 32$ pixel
# values. By distance, the dimmed copy is farther from the original than a picture of a
# different object; by cosine it is the same picture.

# %%
scenes = data.generate_single_object_scenes(40, seed=1, split="train", hold_out=False)
images = data.images_to_tensor(data.render_scenes(scenes, image_size=32))  # (40, 3, 32, 32)
labels = torch.tensor([scene.objects[0].label for scene in scenes])  # (40,)
original = images[int((labels == 0).nonzero()[0])]  # the first red circle (class 0)
dimmed = 0.3 * original
distances = torch.linalg.vector_norm((images - original).flatten(1), dim=1)  # (40,)
distances[labels == 0] = math.inf  # search the other classes only
nearest = int(distances.argmin())
titles = ["original"]
for name, image in (("30 % brightness", dimmed),
                    (f"nearest other class: {data.CLASSES[labels[nearest]]}", images[nearest])):
    distance = torch.linalg.vector_norm(original - image).item()
    cosine = cosine_similarity(original.flatten(), image.flatten()).item()
    titles.append(f"{name}: distance {distance:.2f}, cosine {cosine:.2f}")
plotting.show_images([original, dimmed, images[nearest]], titles, ncols=3, size=2.6)
plt.show()

# %% [markdown]
# ## 2 · The similarity matrix of a batch
#
# Training compares many pairs at once: $N$ images with $M$ captions, every image with every
# caption. Normalise the rows first, $\hat A = A / \lVert A\rVert$ row by row, and every
# cosine is an entry of one matrix product:
#
# $$S = \hat A \hat B^\top \in \mathbb{R}^{N \times M}, \qquad S_{ij} = \cos(a_i, b_j).$$
#
# That one `matmul` is the heart of CLIP: a batch of 32,768 images against 32,768 captions
# is a $32{,}768 \times 32{,}768$ similarity matrix (Radford et al. 2021).
#
# ### Exercise 2 · `similarity_matrix` (2 points)
#
# Write `similarity_matrix(a, b)`: `(N, D)` and `(M, D)` → `(N, M)`, entry `[i, j]` the cosine
# similarity of `a[i]` and `b[j]`. Normalise the rows (clamp the lengths with `clamp_min` as
# in exercise 1, so that a zero row gives zeros, not NaN), then one matrix product. Raise a
# `ValueError` unless both inputs are matrices with the same width `D`. `F.cosine_similarity`
# is not allowed; your own `cosine_similarity` and `F.normalize` are.

# %% nbgrader={"grade": false, "grade_id": "similarity_matrix", "locked": false, "schema_version": 3, "solution": true, "task": false}
def similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All cosine similarities between the rows of ``a`` and the rows of ``b``.

    S[i, j] = cos(a[i], b[j]) = (Â B̂ᵀ)[i, j], with each row scaled to unit length.

    Args:
        a: (N, D) embeddings.
        b: (M, D) embeddings.

    Returns:
        (N, M) similarities in [-1, 1] (0 for a zero row), same dtype and device as ``a``.

    Raises:
        ValueError: if ``a`` or ``b`` is not a matrix, or their widths D differ.
    """
    ### BEGIN SOLUTION
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected a (N, D) and b (M, D) with the same D, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    eps = 1e-8
    # 1. scale every row to unit length (a zero row stays zero)
    a_hat = a / torch.linalg.vector_norm(a, dim=1, keepdim=True).clamp_min(eps)  # (N, D)
    b_hat = b / torch.linalg.vector_norm(b, dim=1, keepdim=True).clamp_min(eps)  # (M, D)
    # 2. every dot product at once
    return a_hat @ b_hat.T  # (N, D) @ (D, M) -> (N, M)
    ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `torch.Size([4, 6])` and `True` (each row of `S`
# against itself: the diagonal of $\hat A \hat A^\top$ is all ones).

# %%
print(similarity_matrix(torch.randn(4, 8), torch.randn(6, 8)).shape)
x = torch.randn(5, 8)
print(torch.allclose(similarity_matrix(x, x).diagonal(), torch.ones(5)))

# %% nbgrader={"grade": true, "grade_id": "test_similarity_matrix", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks similarity_matrix against F.cosine_similarity on all pairs: shapes, zero rows, gradients.
checks.similarity_matrix(similarity_matrix)
### BEGIN HIDDEN TESTS
checks.similarity_matrix(similarity_matrix, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# **What raw pixels know.** The similarity matrix of eight Shapes images, two of each of four
# classes, each flattened into its $3072$ pixel values (minus the mean image, so that the
# shared dark background does not make everything look alike). A good embedding would light up
# the four $2 \times 2$ blocks on the diagonal. The cell also prints the most similar pair of
# different images and the similarity of each same-class pair: compare them. Pixels compare
# *where* colour is, not *what* is there. The losses below teach an encoder the difference, and
# section 6 shows the matrix again after training.

# %%
shown_classes = (0, 1, 5, 6)  # red circle, red square, green triangle, blue circle
picked = [int(i) for k in shown_classes for i in (labels == k).nonzero()[:2, 0]]  # 2 of each
names = [f"{data.CLASSES[labels[i]]} ({n})" for n, i in enumerate(picked)]
pixels = images.flatten(1)  # (40, 3072)
pixels = pixels - pixels.mean(dim=0)  # remove the mean image
S = similarity_matrix(pixels[picked], pixels[picked])  # (8, 8)
plotting.show_images(images[picked], names, ncols=8, size=1.3)
plotting.show_heatmap(S, names, names, title="cosine similarity of centred pixels",
                      vmin=-1, vmax=1, size=5.0)
plt.show()
off_diagonal = S - 2 * torch.eye(len(picked))  # hide each image's similarity with itself
top = int(off_diagonal.argmax())
row, col = divmod(top, len(picked))
print(f"most similar pair of different images: {names[row]} and {names[col]}, "
      f"cosine {S[row, col]:.2f}")
for k in range(len(shown_classes)):
    print(f"the two {data.CLASSES[shown_classes[k]]}s: cosine {S[2 * k, 2 * k + 1]:.2f}")

# %% [markdown]
# ## 3 · The triplet loss
#
# Supervision for an embedding often comes as *comparisons*: this face is the same person as
# that one, and not this other one. A **triplet** is an anchor $a$, a positive $p$ (matches
# the anchor) and a negative $n$ (does not). We want the positive closer than the negative, by
# at least a **margin** $m$:
#
# $$d(a, p) + m \le d(a, n).$$
#
# Every triplet that breaks this costs how much it breaks it by; one that keeps it costs
# nothing (the **hinge** $[x]_+ = \max(0, x)$). Over a batch of $B$ triplets:
#
# $$L_{\text{tri}} = \frac{1}{B}\sum_{i=1}^{B} \big[\, d(a_i, p_i) - d(a_i, n_i) + m \,\big]_+,
#   \qquad d(x, y) = \lVert x - y\rVert_2 .$$
#
# This is PyTorch's `F.triplet_margin_loss` (after Balntas et al. 2016). FaceNet, which made
# the loss famous (Schroff et al. 2015, eq. 1–3), and many lecture slides write it with
# **squared** distances, $[\lVert a - p\rVert^2 - \lVert a - n\rVert^2 + \alpha]_+$, on
# unit-length embeddings. Both say the same thing; they weigh mistakes differently (the
# picture below the test).
#
# **Why a margin?** With $m = 0$, mapping *every* input to the same point makes every
# distance 0 and the loss 0: the embedding collapses. The margin demands a gap, so the trivial
# solution costs $m$ per triplet (section 6.4 lets you test this argument on a real model).
# **Why a hinge?** Once a triplet is satisfied by the margin it stops pulling: the loss
# spends its effort on the triplets still wrong.
#
# ### Exercise 3 · `triplet_loss` (2 points)
#
# Write `triplet_loss(anchor, positive, negative, margin=1.0)` with the formula above: plain
# (not squared) Euclidean distances, the hinge, the mean over the batch. All three inputs are
# `(B, D)`; raise a `ValueError` if they are not three matrices of one shape.
# `F.triplet_margin_loss` and `nn.TripletMarginLoss` are not allowed. (PyTorch adds a tiny
# $10^{-6}$ to $x - y$ before taking the norm, so that two equal points still have a gradient;
# you need not, the test allows for it.)

# %% nbgrader={"grade": false, "grade_id": "triplet_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = 1.0) -> torch.Tensor:
    """The triplet margin loss with plain Euclidean distances (F.triplet_margin_loss).

    L = mean_i max(0, ‖a_i − p_i‖₂ − ‖a_i − n_i‖₂ + margin)

    Args:
        anchor, positive, negative: (B, D) embeddings; row i of each forms triplet i.
        margin: the gap m by which each negative must be farther than its positive.

    Returns:
        a scalar (0-d tensor), same dtype and device as ``anchor``.

    Raises:
        ValueError: if the three are not (B, D) matrices of one shape.
    """
    ### BEGIN SOLUTION
    if anchor.ndim != 2 or positive.shape != anchor.shape or negative.shape != anchor.shape:
        raise ValueError(f"expected anchor, positive and negative of one shape (B, D), got "
                         f"{tuple(anchor.shape)}, {tuple(positive.shape)} and "
                         f"{tuple(negative.shape)}")
    # 1. the two distances of every triplet
    d_pos = torch.linalg.vector_norm(anchor - positive, dim=1)  # (B,)
    d_neg = torch.linalg.vector_norm(anchor - negative, dim=1)  # (B,)
    # 2. the hinge: satisfied triplets cost nothing
    losses = (d_pos - d_neg + margin).clamp_min(0)  # (B,)
    # 3. the mean over the batch
    return losses.mean()
    ### END SOLUTION


# %% [markdown]
# **Try it.** Anchor at the origin, positive at distance 1, negative at distance 1.5: with
# margin 1 the triplet misses by $1 - 1.5 + 1 = 0.5$; with the negative at distance 3 it is
# satisfied. The next cell should print `0.5` and `0.0`.

# %%
a, p = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])
print(round(triplet_loss(a, p, torch.tensor([[0.0, 1.5]])).item(), 4))
print(round(triplet_loss(a, p, torch.tensor([[0.0, 3.0]])).item(), 4))

# %% nbgrader={"grade": true, "grade_id": "test_triplet_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks triplet_loss against F.triplet_margin_loss: margins, active and inactive hinges, gradients.
checks.triplet_loss(triplet_loss)
### BEGIN HIDDEN TESTS
checks.triplet_loss(triplet_loss, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# **The two forms side by side.** Put the anchor at the origin and the positive at distance 1,
# and move the negative around the plane. The colour is the loss of that one triplet, with
# your `triplet_loss` on the left and FaceNet's squared form (below) on the right, both with
# margin 1. The white circle is where the loss becomes 0: at distance $1 + m = 2$ for plain
# distances, at $\sqrt{1 + m} \approx 1.41$ for squared ones — the same margin means a
# different gap. Inside, the plain loss grows linearly as the negative approaches; the squared
# one flattens out near the anchor (its gradient $2\,(n - a)$ vanishes there), so the hardest
# negatives push the least.

# %%
def triplet_loss_squared(anchor, positive, negative, margin=1.0):
    """FaceNet's form (Schroff et al. 2015, eq. 3): squared Euclidean distances."""
    d_pos = ((anchor - positive) ** 2).sum(dim=1)  # (B,)
    d_neg = ((anchor - negative) ** 2).sum(dim=1)  # (B,)
    return (d_pos - d_neg + margin).clamp_min(0).mean()


ticks = torch.linspace(-3, 3, 61)
grid = torch.stack(torch.meshgrid(ticks, ticks, indexing="xy"), dim=-1).reshape(-1, 2)  # (G, 2)
anchor, positive = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for ax, (name, loss_fn, radius) in zip(axes, [("plain (yours)", triplet_loss, 2.0),
                                              ("squared (FaceNet)", triplet_loss_squared,
                                               math.sqrt(2.0))], strict=False):
    values = torch.stack([loss_fn(anchor, positive, n[None]) for n in grid])  # (G,)
    shown = ax.imshow(values.reshape(61, 61).numpy(), extent=(-3, 3, -3, 3), origin="lower",
                      cmap="magma")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    ax.add_patch(plt.Circle((0, 0), radius, fill=False, color="white", lw=1.5))
    ax.plot([0], [0], "o", color="tab:cyan", label="anchor")
    ax.plot([1], [0], "s", color="tab:green", label="positive")
    ax.set_title(f"{name}: loss by where the negative is", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
distances = torch.linspace(0, 3, 100)
negatives = torch.stack([torch.zeros(100), distances], dim=1)  # (100, 2) on the y-axis
for name, loss_fn in (("plain (yours)", triplet_loss), ("squared (FaceNet)",
                                                         triplet_loss_squared)):
    curve = [loss_fn(anchor, positive, n[None]).item() for n in negatives]
    axes[2].plot(distances.numpy(), curve, label=name)
axes[2].set_xlabel("d(anchor, negative), with d(anchor, positive) = 1")
axes[2].set_ylabel("loss")
axes[2].set_title("the same, along one line", fontsize=9)
axes[2].legend(fontsize=8)
axes[2].grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4 · Batch-hard mining
#
# Pick triplets at random and most of them are already satisfied: their loss is 0 and they
# teach nothing. Training then crawls. FaceNet searched large batches for hard negatives;
# Hermans et al. (2017, §2, "Batch Hard") made it simple. Fill a batch with a few images of
# each of several identities; then **for every anchor** in the batch take
#
# - its **hardest positive**: the *farthest* embedding with the same label, and
# - its **hardest negative**: the *nearest* embedding with a different label,
#
# and apply the triplet loss to that one triplet:
#
# $$L_{\text{BH}} = \frac{1}{|\mathcal{A}|}\sum_{a \in \mathcal{A}} \Big[\, m
#   + \max_{p:\, y_p = y_a,\, p \ne a} D_{ap} - \min_{n:\, y_n \ne y_a} D_{an} \Big]_+ ,
#   \qquad D_{ij} = \lVert x_i - x_j\rVert_2 ,$$
#
# where $\mathcal{A}$ is the set of anchors that have at least one positive and one negative
# in the batch (a label that appears once has no positive; a batch of one label has no
# negatives). The paper sums over anchors; like `F.triplet_margin_loss`, we average. Hermans
# et al. use the plain Euclidean distance: they found squared distances made training collapse
# more easily.
#
# ### Exercise 4 · `batch_hard_triplet_loss` (3 points)
#
# Write `batch_hard_triplet_loss(embeddings, labels, margin=0.2)` with the formula above.
#
# - All $B \times B$ distances at once: `torch.cdist(x, x)`, or
#   `torch.linalg.vector_norm(x[:, None] - x[None], dim=-1)` (shape comments help). If you take
#   `torch.sqrt` of squared distances yourself, clamp them first: the square root's derivative
#   at 0 is infinite, and the diagonal (each embedding with itself) is 0.
# - Boolean `(B, B)` masks for "same label, not itself" and "different label"; `masked_fill`
#   or `torch.where` with $\mp\infty$ lets `amax`/`amin` ignore the rest.
# - Skip anchors without a positive or a negative. If no anchor qualifies, return a 0-d zero
#   of the embeddings' dtype and device (`embeddings.new_zeros(())`): the mean of nothing is
#   NaN.
# - Raise a `ValueError` unless `embeddings` is `(B, D)` and `labels` is `(B,)`.

# %% nbgrader={"grade": false, "grade_id": "batch_hard_triplet_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor,
                            margin: float = 0.2) -> torch.Tensor:
    """The batch-hard triplet loss (Hermans et al. 2017).

    For every anchor a with a positive and a negative in the batch:
        loss_a = max(0, margin + max_{p: y_p = y_a, p ≠ a} D[a, p] − min_{n: y_n ≠ y_a} D[a, n])
    with D the plain Euclidean distances; the result is the mean of loss_a over those anchors.

    Args:
        embeddings: (B, D) embeddings.
        labels: (B,) integer labels; equal labels mark positives.
        margin: the margin m.

    Returns:
        a scalar (0-d tensor), same dtype and device as ``embeddings``; 0 when no anchor has
        both a positive and a negative.

    Raises:
        ValueError: if ``embeddings`` is not (B, D) or ``labels`` is not (B,).
    """
    ### BEGIN SOLUTION
    if embeddings.ndim != 2 or labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"expected embeddings (B, D) and labels (B,), got "
                         f"{tuple(embeddings.shape)} and {tuple(labels.shape)}")
    batch = embeddings.shape[0]
    # 1. all pairwise distances D[i, j] = ‖x_i − x_j‖ (plain Euclidean, Hermans et al. 2017)
    differences = embeddings[:, None, :] - embeddings[None, :, :]  # (B, B, D)
    distances = torch.linalg.vector_norm(differences, dim=-1)  # (B, B)
    # 2. who is a positive and who a negative of whom
    same = labels[:, None] == labels[None, :]  # (B, B)
    itself = torch.eye(batch, dtype=torch.bool, device=labels.device)  # (B, B)
    is_positive = same & ~itself
    is_negative = ~same
    # 3. the hardest positive (farthest) and the hardest negative (nearest) of every anchor
    hardest_positive = distances.masked_fill(~is_positive, -math.inf).amax(dim=1)  # (B,)
    hardest_negative = distances.masked_fill(~is_negative, math.inf).amin(dim=1)  # (B,)
    # 4. the hinge, averaged over the anchors that have both
    valid = is_positive.any(dim=1) & is_negative.any(dim=1)  # (B,)
    if not valid.any():
        return embeddings.new_zeros(())
    losses = (hardest_positive - hardest_negative + margin).clamp_min(0)  # (B,)
    return losses[valid].mean()
    ### END SOLUTION


# %% [markdown]
# **Try it.** Two tight pairs far apart: within each label the positive is at distance 0.1,
# the nearest negative at about 5, so every hinge is inactive and the first loss is `0.0`. Now
# give the last point the label 0. It sits 0.1 from a point of label 1 and about 5 from its
# new positives: its loss is $0.2 + 5.08 - 0.1 = 5.18$. For the two points near the origin
# the hardest positive (the moved point, 5.08 and 5.02 away) is now farther than their
# negative (5.00 and 4.94 away): $0.2 + 0.08 = 0.28$ each. The point of label 1 has no
# positive left and is skipped. The second loss is the mean of the three, `1.914`.

# %%
points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 4.0], [3.0, 4.1]])
print(round(batch_hard_triplet_loss(points, torch.tensor([0, 0, 1, 1])).item(), 4))
print(round(batch_hard_triplet_loss(points, torch.tensor([0, 0, 1, 0])).item(), 4))

# %% nbgrader={"grade": true, "grade_id": "test_batch_hard_triplet_loss", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Checks batch_hard_triplet_loss against a brute-force loop: skipped anchors, margins, gradients.
checks.batch_hard_triplet_loss(batch_hard_triplet_loss)
### BEGIN HIDDEN TESTS
checks.batch_hard_triplet_loss(batch_hard_triplet_loss, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# **Why mine?** Twelve points of three labels in the plane, and both losses with margin 0.5:
# your `batch_hard_triplet_loss` (left) and your `triplet_loss` averaged over *all* 288 valid
# triplets of the batch (right). The arrows are the direction in which one step of gradient
# descent moves each point, $-\nabla L$, computed by autograd through your code (scaled to
# fit each panel). Both mostly pull the stragglers — the points farthest from the rest of their
# label — back toward their own kind. But compare the two losses (the cell prints their
# ratio): the average over all triplets is several times smaller, because most triplets are
# already satisfied (the right title says what fraction is still active) and contribute 0,
# diluting the few that matter. Batch hard keeps one triplet per anchor, its worst, so the
# signal stays strong however easy the rest of the batch is.

# %%
generator = torch.Generator().manual_seed(3)
toy_labels = torch.arange(3).repeat_interleave(4)  # (12,)
centres = torch.tensor([[0.0, 0.0], [1.6, 0.4], [0.6, 1.5]])
toy = centres[toy_labels] + 0.45 * torch.randn(12, 2, generator=generator)  # (12, 2)
triplets = [(a, p, n) for a in range(12) for p in range(12) for n in range(12)
            if p != a and toy_labels[p] == toy_labels[a] and toy_labels[n] != toy_labels[a]]
index = torch.tensor(triplets)  # (T, 3)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
mined_losses = {}
for ax, name in zip(axes, ("batch hard", "all triplets"), strict=True):
    x = toy.clone().requires_grad_(True)
    if name == "batch hard":
        loss = batch_hard_triplet_loss(x, toy_labels, margin=0.5)
        title = f"batch hard: loss {loss.item():.3f}"
    else:
        loss = triplet_loss(x[index[:, 0]], x[index[:, 1]], x[index[:, 2]], margin=0.5)
        with torch.no_grad():
            per_triplet = [triplet_loss(x[None, a], x[None, p], x[None, n], margin=0.5).item()
                           for a, p, n in triplets]
        active = np.mean(np.array(per_triplet) > 0)
        title = f"all {len(triplets)} triplets: loss {loss.item():.3f}, {active:.0%} active"
    mined_losses[name] = loss.item()
    loss.backward()
    step = -x.grad  # (12, 2)
    scale = 0.6 / step.norm(dim=1).max()
    for k, colour in enumerate(("tab:red", "tab:blue", "tab:green")):
        pts = toy[toy_labels == k]
        ax.scatter(pts[:, 0], pts[:, 1], color=colour, s=40, label=f"label {k}", zorder=3)
    for point, arrow in zip(toy, step * scale, strict=True):
        if arrow.norm() > 1e-6:
            ax.annotate("", xy=(point + arrow).tolist(), xytext=point.tolist(),
                        arrowprops=dict(arrowstyle="->", color="black", lw=1.2))
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
print(f"the batch-hard loss is {mined_losses['batch hard'] / mined_losses['all triplets']:.1f} "
      f"times the mean over all {len(triplets)} triplets")

# %% [markdown]
# ## 5 · CLIP's symmetric InfoNCE loss
#
# A triplet compares one positive with one negative. Why not all negatives at once? Take a
# batch of $N$ matched image–caption pairs, with L2-normalised embeddings $I_1, \dots, I_N$
# and $T_1, \dots, T_N$. Image $i$'s caption is $T_i$; the other $N - 1$ captions are its
# negatives. Treat "which caption belongs to image $i$?" as an $N$-way **classification**
# whose logits are the scaled similarities
#
# $$\ell_{ij} = s \cdot I_i \cdot T_j, \qquad s = 1/\tau ,$$
#
# and the right class is $j = i$, on the diagonal. Its cross-entropy is the **InfoNCE** loss
# (van den Oord et al. 2018, eq. 4):
#
# $$L_{I \to T} = -\frac{1}{N}\sum_{i=1}^{N} \log \frac{e^{\ell_{ii}}}{\sum_{j} e^{\ell_{ij}}} .$$
#
# CLIP (Radford et al. 2021, Figure 3) asks the question both ways — which caption for this
# image (the rows of $\ell$), and which image for this caption (the columns) — and averages:
#
# $$L_{\text{CLIP}} = \tfrac{1}{2}\big(L_{I \to T} + L_{T \to I}\big), \qquad
#   L_{T \to I} = -\frac{1}{N}\sum_{i=1}^{N} \log \frac{e^{\ell_{ii}}}{\sum_{j} e^{\ell_{ji}}} .$$
#
# Each direction is `F.cross_entropy(logits, labels)` with `labels = [0, 1, …, N−1]`: the
# text → image one on `logits.T`.
#
# **The temperature** $\tau$ decides how peaked the softmax is. Cosines lie in $[-1, 1]$, so
# without scaling the logits could differ by at most 2 and the softmax could never be
# confident. CLIP learns $s = e^{t}$, starting at $1/0.07 \approx 14.3$ and clamped at 100;
# open_clip's models return it already exponentiated, as `logit_scale`, and that is what this
# function receives.
#
# ### Exercise 5 · `clip_loss` (3 points)
#
# Write `clip_loss(image_features, text_features, logit_scale)` the way open_clip's `ClipLoss`
# does: the logits, then the targets, then the two cross-entropies and their mean.
#
# - Both feature tensors are `(N, D)` and already L2-normalised by their encoders: use them as
#   given (do not normalise them again). Raise a `ValueError` if their shapes differ or they
#   are not matrices.
# - `logit_scale` is $s = 1/\tau$: a 0-d tensor (which may need gradients, when it is learned)
#   or a Python float.
# - Create the labels on the features' device. `F.cross_entropy` is allowed;
#   `open_clip.loss.ClipLoss` is not.

# %% nbgrader={"grade": false, "grade_id": "clip_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
              logit_scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss (Radford et al. 2021), as open_clip's ClipLoss.

    logits = logit_scale · I Tᵀ;  loss = (CE(logits, arange(N)) + CE(logitsᵀ, arange(N))) / 2

    Args:
        image_features: (N, D) L2-normalised image embeddings; row i matches text i.
        text_features: (N, D) L2-normalised text embeddings.
        logit_scale: s = 1/τ, a 0-d tensor or a float.

    Returns:
        a scalar (0-d tensor), same dtype and device as the features.

    Raises:
        ValueError: if the features are not two matrices of one shape (N, D).
    """
    ### BEGIN SOLUTION
    if image_features.ndim != 2 or image_features.shape != text_features.shape:
        raise ValueError(f"expected image and text features of one shape (N, D), got "
                         f"{tuple(image_features.shape)} and {tuple(text_features.shape)}")
    # 1. the logits: scaled cosine similarities of every image with every text
    logits_per_image = logit_scale * image_features @ text_features.T  # (N, D) @ (D, N) -> (N, N)
    logits_per_text = logits_per_image.T  # (N, N): row j holds text j against every image
    # 2. the targets: pair i is the right answer for row i, in both directions
    labels = torch.arange(image_features.shape[0], device=image_features.device)  # (N,)
    # 3. the symmetric cross-entropy (Radford et al. 2021, Figure 3)
    return (F.cross_entropy(logits_per_image, labels)
            + F.cross_entropy(logits_per_text, labels)) / 2
    ### END SOLUTION


# %% [markdown]
# **Try it.** Three perfectly matched pairs of orthogonal unit vectors: with `logit_scale` 1
# each row's softmax is $e^1 / (e^1 + 2)$, a loss of $\log(1 + 2/e) \approx 0.5514$; with
# `logit_scale` 100 the loss is almost 0. The next cell should print `0.5514` and `0.0`.

# %%
eye = torch.eye(3)
print(round(clip_loss(eye, eye, 1.0).item(), 4))
print(round(clip_loss(eye, eye, torch.tensor(100.0)).item(), 4))

# %% nbgrader={"grade": true, "grade_id": "test_clip_loss", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Checks clip_loss against open_clip's ClipLoss: batch sizes, logit scales, directions, gradients.
checks.clip_loss(clip_loss)
### BEGIN HIDDEN TESTS
checks.clip_loss(clip_loss, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# **What the temperature does.** Six image–text pairs: image $i$ and text $i$ are two noisy
# copies of one random vector, and pairs 4 and 5 start from nearly the same vector, a
# confusable pair. Each panel shows the
# image → text softmax of every row, $\mathrm{softmax}_j(\ell_{ij})$, at one temperature, with
# your `clip_loss` in the title. At $\tau = 1$ every row is almost flat — cosines differ by at
# most 2, so the logits do too — and the loss stays above 1 although every image is closest to
# its own text. At $\tau = 0.1$ the right caption wins clearly except for the confusable pair.
# At $\tau = 0.01$ each row is nearly one-hot: almost all that is left of the loss, and of its
# gradient, sits on that one pair.

# %%
generator = torch.Generator().manual_seed(5)
base = torch.randn(6, 16, generator=generator)
base[5] = base[4] + 0.3 * torch.randn(16, generator=generator)  # a confusable pair
image_emb = F.normalize(base + 0.3 * torch.randn(6, 16, generator=generator), dim=1)  # (6, 16)
text_emb = F.normalize(base + 0.3 * torch.randn(6, 16, generator=generator), dim=1)  # (6, 16)
similarities = similarity_matrix(image_emb, text_emb)  # (6, 6)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for ax, tau in zip(axes, (1.0, 0.1, 0.01), strict=True):
    probabilities = (similarities / tau).softmax(dim=1)  # (6, 6), rows sum to 1
    ax.imshow(probabilities.numpy(), cmap="viridis", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(probabilities.numpy()):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="black" if v > 0.5 else "white")
    loss = clip_loss(image_emb, text_emb, 1 / tau).item()
    ax.set_title(f"τ = {tau}: clip_loss {loss:.3f}", fontsize=10)
    ax.set_xlabel("text j")
    ax.set_ylabel("image i")
fig.suptitle("image → text probabilities softmax(cos / τ)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6 · An experiment: an image–caption embedding space
#
# Now the losses train something. The data: one-object Shapes scenes, each with a caption in
# varied words ("a photo of a small red circle", "there is a green square", …), all 15
# colour–shape classes.

# %%
train_set = data.ShapesCaptions("train", size=1500, seed=0, num_objects=1, hold_out=False)
test_set = data.ShapesCaptions("test", size=600, seed=0, num_objects=1, hold_out=False)
print(f"train {tuple(train_set.images.shape)}, test {tuple(test_set.images.shape)}")
plotting.show_images(train_set.images[:8], train_set.captions[:8], ncols=8, size=1.5)
plt.show()

# %% [markdown]
# Two small encoders map into one 32-dimensional space:
#
# - **images**: a three-layer CNN (notebook 01's kind) with global max-pooling, so that the
#   object may be anywhere, and a linear projection;
# - **captions**: a *bag of words*, the mean of one learned vector per word, then a linear
#   projection. It ignores word order ("red circle" and "circle red" are the same), which is
#   enough here; notebook 04 replaces it with a transformer.
#
# Both outputs are L2-normalised, so that every similarity is a cosine. Captions become
# tensors of word ids, padded with 0 (`<pad>`), which the bag of words leaves out of its mean.
# One dataclass, `DualEncoderConfig`, holds every number of the model and of its training runs.

# %%
@dataclass
class DualEncoderConfig:
    """The dual encoder of this section and how it is trained (each number is explained in the
    text)."""

    embed_dim: int = 32        # the shared space
    width: int = 16            # channels of the CNN's first layer (then 2·width, 2·width)
    caption_length: int = 12   # word ids per caption, padded with <pad>
    epochs: int = 8            # 8 epochs of 1,500 pairs: 184 steps of 64
    batch_size: int = 64
    lr: float = 3e-3
    margin: float = 0.2        # the batch-hard triplet margin of section 6.1
    reference_step_s: float = 0.011  # one training step of the solution, reference machine


config = DualEncoderConfig()
vocab = data.build_vocabulary()


def word_ids(captions: list[str], vocab: data.Vocabulary, length: int = 12) -> torch.Tensor:
    """Captions -> (N, length) word ids, padded with vocab.pad_id (0)."""
    ids = torch.full((len(captions), length), vocab.pad_id, dtype=torch.long)  # (N, L)
    for row, caption in enumerate(captions):
        words = vocab.encode(caption)[:length]
        ids[row, :len(words)] = torch.tensor(words)
    return ids


class DualEncoder(nn.Module):
    """A small image encoder and a bag-of-words caption encoder with one embedding space.

    Args:
        vocab_size: the number of word ids.
        embed_dim: the width of the shared space.
        width: the channels of the CNN's first layer (then 2·width, 2·width).
        pad_id: the word id left out of the bag of words.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 32, width: int = 16, pad_id: int = 0):
        super().__init__()
        self.image_encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, 16, 16)
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8 × 8
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),  # (B, 2w, 8, 8)
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),  # (B, 2w): the strongest response anywhere
            nn.Linear(2 * width, embed_dim),  # (B, E)
        )
        self.word_embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean",
                                              padding_idx=pad_id)
        self.text_projection = nn.Linear(embed_dim, embed_dim)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, E) unit-length embeddings."""
        return F.normalize(self.image_encoder(images), dim=-1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) word ids -> (B, E) unit-length embeddings."""
        bag = self.word_embedding(ids)  # (B, E): the mean of the non-padding words
        return F.normalize(self.text_projection(bag), dim=-1)


train_ids = word_ids(train_set.captions, vocab, config.caption_length)  # (1500, 12)
test_ids = word_ids(test_set.captions, vocab, config.caption_length)  # (600, 12)
prompt_ids = word_ids([f"a {name}" for name in data.CLASSES], vocab,
                      config.caption_length)  # (15, 12)
print(train_set.captions[0], "->", train_ids[0].tolist())

# %% [markdown]
# **How we measure.** Retrieval: for every test image, rank the 15 captions "a red circle",
# …, "a purple triangle" by cosine similarity (your `similarity_matrix`); the image is right
# when the top caption names its colour and shape. Chance is $1/15 \approx 7\,\%$. Every model
# below starts from the same random weights, so only the loss differs.


# %%
@torch.no_grad()
def embed(model: DualEncoder, images: torch.Tensor, ids: torch.Tensor, prompts: torch.Tensor,
          device: torch.device | str = "cpu"):
    """Image, caption and prompt embeddings of ``model`` (computed on ``device``, returned on
    the CPU)."""
    model.eval()
    image_emb = training.predict(model.encode_image, images, device=device)  # (N, E)
    text_emb = training.predict(model.encode_text, ids, device=device)  # (N, E)
    prompt_emb = training.predict(model.encode_text, prompts, device=device)  # (15, E)
    return image_emb, text_emb, prompt_emb


def retrieval_accuracy(image_emb: torch.Tensor, prompt_emb: torch.Tensor,
                       labels: torch.Tensor) -> float:
    """The fraction of images whose most similar prompt is their own class."""
    return (similarity_matrix(image_emb, prompt_emb).argmax(dim=1) == labels).float().mean().item()


def new_model(config: DualEncoderConfig, vocab: data.Vocabulary,
              device: torch.device | str = "cpu") -> DualEncoder:
    """A DualEncoder as ``config`` says, with the same initial weights every time."""
    torch.manual_seed(0)  # the same initial weights for every run
    return DualEncoder(len(vocab), config.embed_dim, config.width, vocab.pad_id).to(device)


def train_dual_encoder(model: DualEncoder, step_loss, dataset: data.ShapesCaptions,
                       ids: torch.Tensor, config: DualEncoderConfig, desc: str,
                       device: torch.device | str = "cpu", epochs: int | None = None
                       ) -> list[float]:
    """Train ``model`` on the image–caption pairs of ``dataset`` with
    ``step_loss(model, images, ids, labels)``; return the loss of every step."""
    return training.train(model, step_loss, (dataset.images, ids, dataset.labels),
                          epochs=config.epochs if epochs is None else epochs,
                          batch_size=config.batch_size, lr=config.lr, device=device, desc=desc,
                          reference_step_s=config.reference_step_s)


untrained = embed(new_model(config, vocab, device), test_set.images, test_ids, prompt_ids,
                  device)
untrained_accuracy = retrieval_accuracy(untrained[0], untrained[2], test_set.labels)
print(f"untrained: retrieval accuracy {untrained_accuracy:.1%}")

# %% [markdown]
# ### 6.1 · Trained with the batch-hard triplet loss
#
# Images and captions live in one space, so one batch holds both: the 64 image embeddings and
# their 64 caption embeddings, each labelled with its class. Every embedding is an anchor;
# its hardest positive may be a caption *or* an image of its class, its hardest negative
# anything of another class. Eight epochs, about 180 steps.

# %%
def triplet_step(model: DualEncoder, images, ids, labels, margin=config.margin) -> torch.Tensor:
    both = torch.cat([model.encode_image(images), model.encode_text(ids)])  # (2B, E)
    return batch_hard_triplet_loss(both, torch.cat([labels, labels]), margin=margin)


triplet_model = new_model(config, vocab, device)
triplet_losses = train_dual_encoder(triplet_model, triplet_step, train_set, train_ids, config,
                                    "batch-hard triplet", device)
plotting.plot_losses(triplet_losses, title="batch-hard triplet loss", smooth=10)
plt.show()

# %% [markdown]
# ### 6.2 · Trained with CLIP's loss, at several temperatures
#
# The same model and data, with `clip_loss` on the batch's 64 image–caption pairs, at six
# fixed temperatures (CLIP would learn $\tau$; notebook 04 does). One subtlety: with 15
# classes, a batch of 64 holds about four pairs of each class, and the loss treats the other
# three captions of "a red circle" as *negatives* of every red-circle image. These false
# negatives are why the loss cannot reach 0: at best an image spreads its probability over
# the $k$ captions of its class, a loss of about $\log k \approx 1.4$ (a little less where
# the captions' size words tell some of them apart).

# %%
temperatures = (0.01, 0.03, 0.07, 0.2, 0.5, 1.0)
clip_losses, clip_models = {}, {}
for tau in temperatures:
    def clip_step(model: DualEncoder, images, ids, labels, tau=tau) -> torch.Tensor:
        return clip_loss(model.encode_image(images), model.encode_text(ids), 1 / tau)

    clip_models[tau] = new_model(config, vocab, device)
    clip_losses[tau] = train_dual_encoder(clip_models[tau], clip_step, train_set, train_ids,
                                          config, f"CLIP loss, τ = {tau}", device)

accuracies = {}
for tau, model in clip_models.items():
    image_emb, _, prompt_emb = embed(model, test_set.images, test_ids, prompt_ids, device)
    accuracies[tau] = retrieval_accuracy(image_emb, prompt_emb, test_set.labels)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for tau, losses in clip_losses.items():
    smoothed = np.convolve(losses, np.ones(10) / 10, mode="valid")
    axes[0].plot(np.arange(9, len(losses)), smoothed, label=f"τ = {tau}")
axes[0].axhline(math.log(64), color="grey", ls=":", label="log 64 (a uniform guess)")
axes[0].set_xlabel("step")
axes[0].set_ylabel("clip_loss (mean of 10 steps)")
axes[0].set_title("training loss by temperature")
axes[0].legend(fontsize=8)
axes[0].grid(alpha=0.3)
axes[1].plot(temperatures, [100 * accuracies[t] for t in temperatures], "o-")
axes[1].set_xscale("log")
axes[1].set_xlabel("temperature τ (log scale)")
axes[1].set_ylabel("test retrieval accuracy (%)")
axes[1].set_ylim(0, 105)
axes[1].set_title("retrieval accuracy by temperature")
axes[1].grid(alpha=0.3)
for t in temperatures:
    axes[1].annotate(f"{100 * accuracies[t]:.0f} %", (t, 100 * accuracies[t]),
                     textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
fig.tight_layout()
plt.show()
best_tau = max(accuracies, key=accuracies.get)
print(f"best retrieval at τ = {best_tau}: {accuracies[best_tau]:.1%}; at the extremes, "
      f"τ = {temperatures[0]}: {accuracies[temperatures[0]]:.1%} and "
      f"τ = {temperatures[-1]}: {accuracies[temperatures[-1]]:.1%}")

# %% [markdown]
# Read the two panels together. Losses are only comparable at one temperature: at
# $\tau = 1$ the logits are bare cosines, which differ by at most 2, so even a perfect
# embedding cannot bring the loss below $\log(1 + 63\,e^{-2}) \approx 2.2$. The smallest
# temperature starts with a huge loss (confident random guesses are expensive). The line under
# the figure says which temperature retrieved best in your run and how the two extremes did
# (in our reference run, the middle of the range, near CLIP's initial 0.07, was best, and both
# ends clearly worse). The written question in section 7 asks you why, in terms of the
# gradient.

# %% [markdown]
# ### 6.3 · The embedding space, before and after
#
# Each panel projects the 600 test images (small markers: colour = the object's colour,
# marker = its shape) and the 15 prompts (large outlined markers) onto the two main directions
# of the embeddings (principal component analysis by an SVD of the centred embeddings). What
# we saw in our reference run (yours should look much the same):
#
# - **Untrained**, images and captions lie in two separate regions: the first direction simply
#   tells the modalities apart, since two random encoders have no reason to agree. The images
#   spread along one line, sorted by colour, which the CNN's random filters already respond to.
# - **Batch-hard triplet**: classes form clusters and each prompt sits near its own, but the
#   clusters are loose and some prompts sit at the edge. The loss curve of section 6.1 settled
#   near the margin 0.2 (the cell prints where it ended in your run): for a typical anchor the hardest positive (often a caption in other words) and
#   the hardest negative end up about equally far, and that single worst pair is all the loss
#   sees.
# - **CLIP's loss** uses all 63 negatives of every pair at once, weighted by how confusable
#   they are: tighter clusters, each prompt with its class, and the best retrieval of the three
#   (the panel titles give each one's).
#
# (Two dimensions cannot show 15 clusters of a 32-dimensional space faithfully; some overlap in
# the picture is the projection's.)

# %%
def project_2d(*embeddings: torch.Tensor) -> list[torch.Tensor]:
    """Project several (N_k, E) sets onto the first two principal axes of all of them."""
    stacked = torch.cat(embeddings)  # (sum N_k, E)
    mean = stacked.mean(dim=0)
    _, _, v_t = torch.linalg.svd(stacked - mean, full_matrices=False)  # v_t: (E, E)
    return [(e - mean) @ v_t[:2].T for e in embeddings]  # each (N_k, 2)


MARKERS = {"circle": "o", "square": "s", "triangle": "^"}
spaces = {"untrained": untrained,
          "batch-hard triplet": embed(triplet_model, test_set.images, test_ids, prompt_ids,
                                      device),
          "CLIP loss, τ = 0.07": embed(clip_models[0.07], test_set.images, test_ids,
                                       prompt_ids, device)}
fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
for ax, (name, (image_emb, _, prompt_emb)) in zip(axes, spaces.items(), strict=True):
    images_2d, prompts_2d = project_2d(image_emb, prompt_emb)
    for k, class_name in enumerate(data.CLASSES):
        colour, shape = class_name.split()
        rgb = data.COLOUR_RGB[colour]
        chosen = test_set.labels == k
        ax.scatter(images_2d[chosen, 0], images_2d[chosen, 1], color=rgb, marker=MARKERS[shape],
                   s=12, alpha=0.5)
        ax.scatter(prompts_2d[k, 0], prompts_2d[k, 1], color=rgb, marker=MARKERS[shape], s=160,
                   edgecolors="black", linewidths=1.5)
    accuracy = retrieval_accuracy(image_emb, prompt_emb, test_set.labels)
    ax.set_title(f"{name}: retrieval {accuracy:.0%}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("test images (small) and the 15 prompts (large), first two principal components")
fig.tight_layout()
plt.show()
print(f"batch-hard triplet loss, mean of the last 20 steps: {np.mean(triplet_losses[-20:]):.3f} "
      f"(margin {config.margin})")

# %% [markdown]
# And the similarity matrix the trained CLIP-loss model computes between one test image of
# each class and the 15 prompts: a bright diagonal, and off it, the classes that share a
# colour or a shape are the ones that stay a little alike.

# %%
first_of_each = [int((test_set.labels == k).nonzero()[0]) for k in range(15)]
image_emb, _, prompt_emb = spaces["CLIP loss, τ = 0.07"]
plotting.show_heatmap(similarity_matrix(image_emb[first_of_each], prompt_emb),
                      [f"image: {c}" for c in data.CLASSES], [f"a {c}" for c in data.CLASSES],
                      title="trained: cosine similarity, images × prompts", cmap="coolwarm",
                      vmin=-1, vmax=1, annotate=False, size=6.0)
plt.show()

# %% [markdown]
# The retrieval accuracies of the two losses, measured on the 600 test images:

# %%
course_utils.report_metric("retrieval accuracy, untrained",
                           retrieval_accuracy(untrained[0], untrained[2], test_set.labels), "%")
course_utils.report_metric("retrieval accuracy, batch-hard triplet",
                           retrieval_accuracy(spaces["batch-hard triplet"][0],
                                              spaces["batch-hard triplet"][2], test_set.labels),
                           "%")
for tau in temperatures:
    course_utils.report_metric(f"retrieval accuracy, CLIP loss, tau {tau}", accuracies[tau], "%")

# %% [markdown]
# ### 6.4 · Experiment: pull together, never push apart
#
# Every loss above has two halves: it **pulls** each image towards its own caption and
# **pushes** it away from the others (the triplet's negative, CLIP's $N - 1$ other captions).
# Section 3 argued, in words, that the triplet loss needs its margin. What happens to a loss
# with no push at all? The next cell trains a fresh dual encoder for about 100 steps with a
# loss that only pulls, the mean over the batch of
#
# $$L_{\text{pull}} = 1 - \cos(I_i, T_i),$$
#
# which is 0 exactly when every image points the same way as its own caption. Nothing in it
# mentions a mismatched pair. The knob `COLLAPSE_LOSS` switches between this pull-only loss and
# your `clip_loss` (τ = 0.07), trained for the same number of steps. The cell measures, on the
# 600 test images:
#
# - the mean cosine of **matched** pairs (each image with its own caption) and of
#   **unrelated** pairs (an image with the caption of an image of another class);
# - the retrieval accuracy of section 6 (chance: $1/15 \approx 7\,\%$).

# %% [markdown] tags=["predict"]
# **Predict before you run the next cell** (not graded; one or two lines): after training with
# the pull-only loss, what will the mean cosine of *unrelated* image–caption pairs be, and the
# retrieval accuracy?
#
# *Your prediction:*

# %% tags=["experiment"]
# The knob: change it and run again.
COLLAPSE_LOSS = "pull-only"  # or "clip": your clip_loss at τ = 0.07
COLLAPSE_STEPS = 100         # roughly; training runs whole epochs of 23 steps


def pull_only_loss(model: DualEncoder, images, ids, labels) -> torch.Tensor:
    """1 − cos(I_i, T_i), averaged over the batch: pulls matched pairs, pushes nothing."""
    return (1 - (model.encode_image(images) * model.encode_text(ids)).sum(dim=1)).mean()


def collapse_clip_step(model: DualEncoder, images, ids, labels) -> torch.Tensor:
    """Your clip_loss at τ = 0.07, as in section 6.2."""
    return clip_loss(model.encode_image(images), model.encode_text(ids), 1 / 0.07)


def collapse_pair_cosines(image_emb: torch.Tensor, text_emb: torch.Tensor, labels: torch.Tensor):
    """The mean cosine of matched pairs (diagonal) and of image–caption pairs of different
    classes, and all the latter (for a histogram)."""
    similarities = similarity_matrix(image_emb, text_emb)  # (N, N)
    unrelated = similarities[labels[:, None] != labels[None, :]]  # (pairs,)
    return similarities.diagonal().mean().item(), unrelated.mean().item(), unrelated


def collapse_experiment(loss_name: str, steps: int, config: DualEncoderConfig,
                        vocab: data.Vocabulary, train_set: data.ShapesCaptions,
                        train_ids: torch.Tensor, test_set: data.ShapesCaptions,
                        test_ids: torch.Tensor, prompt_ids: torch.Tensor,
                        device: torch.device | str = "cpu") -> dict:
    """Train a fresh DualEncoder with ``loss_name`` for about ``steps`` steps; measure it and
    the untrained model on the test set."""
    step_loss = {"pull-only": pull_only_loss, "clip": collapse_clip_step}[loss_name]
    steps_per_epoch = len(train_set.images) // config.batch_size
    model = new_model(config, vocab, device)
    results = {"untrained": embed(model, test_set.images, test_ids, prompt_ids, device)}
    losses = train_dual_encoder(model, step_loss, train_set, train_ids, config,
                                f"{loss_name} loss", device,
                                epochs=max(1, round(steps / steps_per_epoch)))
    results[f"{loss_name}, {len(losses)} steps"] = embed(model, test_set.images, test_ids,
                                                         prompt_ids, device)
    return results


def show_collapse(results: dict, labels: torch.Tensor) -> None:
    """Print the cosines and the retrieval accuracy of each model in ``results``; draw the
    unrelated pairs' cosines and each model's images × prompts similarity matrix."""
    fig, axes = plt.subplots(1, 1 + len(results), figsize=(5 * (1 + len(results)), 4.2))
    first_of_each = [int((labels == k).nonzero()[0]) for k in range(15)]
    for ax, (name, (image_emb, text_emb, prompt_emb)) in zip(axes[1:], results.items(),
                                                            strict=True):
        matched, unrelated, unrelated_all = collapse_pair_cosines(image_emb, text_emb, labels)
        accuracy = retrieval_accuracy(image_emb, prompt_emb, labels)
        print(f"{name:>22}: cosine of matched pairs {matched:+.3f}, of unrelated pairs "
              f"{unrelated:+.3f}; retrieval accuracy {accuracy:.1%} (chance {1 / 15:.1%})")
        axes[0].hist(unrelated_all.numpy(), bins=60, range=(-1, 1), density=True, alpha=0.6,
                     label=name)
        shown = ax.imshow(similarity_matrix(image_emb[first_of_each], prompt_emb).numpy(),
                          cmap="coolwarm", vmin=-1, vmax=1)
        ax.set_title(f"{name}: images × prompts, retrieval {accuracy:.0%}", fontsize=10)
        ax.set_xlabel("prompt (class)")
        ax.set_ylabel("one test image per class")
    fig.colorbar(shown, ax=axes[-1], fraction=0.046)
    axes[0].set_xlabel("cosine of an image with a caption of another class")
    axes[0].set_ylabel("density")
    axes[0].set_title("unrelated image–caption pairs", fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    plt.show()


with torch.random.fork_rng():
    collapse_results = collapse_experiment(COLLAPSE_LOSS, COLLAPSE_STEPS, config, vocab,
                                           train_set, train_ids, test_set, test_ids,
                                           prompt_ids, device)
show_collapse(collapse_results, test_set.labels)

# %% [markdown]
# **A question to answer in words (2 points).** Explain what you measured (run the cell once
# more with `COLLAPSE_LOSS = "clip"` to compare). Why does the pull-only loss drive the
# embeddings where it did, and what does that do to retrieval? Why can a loss that only looks
# at matched pairs not tell a good embedding from a useless one, and which term of `clip_loss`
# (or of the triplet loss) prevents it? Three to five sentences; quote your numbers.

# %% [markdown] nbgrader={"grade": true, "grade_id": "written_collapse", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# The pull-only loss is minimised, with value 0, by *any* map that sends each image and its
# caption to the same direction, and the cheapest such map sends **everything** to one
# direction: a constant output (e.g. the bias of the last layer, with the weights shrunk)
# satisfies every pair at once without looking at the input. Gradient descent finds it within
# a few dozen steps: the matched cosine goes to about 1, but so does the cosine of *unrelated*
# pairs (+0.99 in our reference run, against −0.13 untrained), the similarity matrix becomes
# one colour, and retrieval falls to about chance (1/15 ≈ 7 %), since every prompt is equally
# close to every image. The loss cannot tell this useless embedding from a good one because it never sees a
# mismatched pair: alignment alone has a trivial solution. CLIP's denominator
# $\sum_j e^{\ell_{ij}}$ (the $N - 1$ negatives; the triplet's $-d(a, n)$ with its margin)
# makes collapse expensive: if all cosines are equal the loss is $\log N$, not 0, so the
# gradient pushes other captions away and spreads the classes over the sphere (Wang & Isola's
# "uniformity"). With `COLLAPSE_LOSS = "clip"`, after the same 92 steps, the unrelated cosine
# stays near 0 while matched pairs reach about +0.7, and retrieval is far above chance (77 % in
# our reference run). (Grading: 1 point for collapse — all embeddings to one direction, a
# constant solution with zero loss, unrelated cosine → 1, retrieval → chance, with the
# measured numbers; 1 point for the role of the negatives/margin — the pull-only loss is
# blind to mismatched pairs, while the softmax denominator or the triplet's negative term makes
# the collapsed solution cost log N or the margin.)

# %% [markdown]
# **Discussion.** This is why every contrastive loss of this notebook has a "push" term, and
# why section 3's margin matters: with $m = 0$, a collapsed triplet embedding costs nothing,
# exactly like the pull-only loss here. Methods that do learn from positive pairs alone (BYOL,
# SimSiam) avoid collapse by other means: an asymmetric predictor and a stop-gradient on one
# branch (Grill et al. 2020; Chen & He 2021), not by the loss.

# %% [markdown]
# ## 7 · A question to answer in words (2 points)
#
# For one image $i$, the image → text part of CLIP's loss is
# $L_i = -\log p_{ii}$ with $p_{ij} = \mathrm{softmax}_j(c_{ij}/\tau)$ and $c_{ij}$ the cosine
# similarities. Its gradient with respect to the similarities is
#
# $$\frac{\partial L_i}{\partial c_{ij}} = \frac{1}{\tau}\,\big(p_{ij} - \mathbb{1}[j = i]\big).$$
#
# **Using this formula, explain what happens to the gradients, and to learning, as the
# temperature goes to 0 and as it goes to infinity. Which negatives does a very small
# temperature concentrate on (compare with batch-hard mining), and what does that mean for the
# false negatives of section 6.2? Relate your answer to the temperature sweep you ran.**
# Three to six sentences.

# %% [markdown] nbgrader={"grade": true, "grade_id": "written_temperature", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# As $\tau \to \infty$, every $p_{ij} \to 1/N$: the gradient is
# $\tfrac{1}{\tau}(1/N - \mathbb{1}[j=i])$, which shrinks like $1/\tau$ and treats all
# negatives alike, hard or easy, so the model learns slowly and the loss stays near $\log N$
# (the $\tau = 1$ run: bare cosines cannot make a confident softmax, lowest accuracy). As
# $\tau \to 0$, the softmax becomes an arg-max: the negative weights $p_{ij}$ ($j \ne i$) all go
# to 0 except on the most similar negative, so the loss becomes a hinge on the hardest negative
# alone — batch-hard mining with margin 0 — and its gradient is scaled by $1/\tau$, large and
# spiky when that negative wins and almost zero once the positive wins by any margin. Hard
# *false* negatives (captions of the same class in the batch) are then pushed away with the
# full force of the loss, which tears apart what should stay together and makes training noisy
# (in the sweep, $\tau = 0.01$ retrieves clearly worse than 0.07). An intermediate $\tau$ (about
# 0.03–0.2 here; 0.07 in CLIP) weights negatives by how hard they are without ignoring the
# rest; this is why CLIP learns $\tau$ and clamps $1/\tau$ at 100 (Wang & Liu 2021 analyse this
# "hardness-aware" role of the temperature). (Grading: 1 point for the two limits of the
# gradient — vanishing/uniform vs. concentrated on the hardest negative and scaled by
# $1/\tau$; 1 point for the link to hard/false negatives or to the measured sweep.)

# %% [markdown]
# ## What you built, and where it lives in real systems
#
# - `cosine_similarity` is `torch.nn.functional.cosine_similarity` (with the same per-length
#   clamp); normalising rows is `F.normalize`. Every CLIP-style model normalises its
#   embeddings before comparing them.
# - `similarity_matrix` is the `image_features @ text_features.T` at the heart of open_clip's
#   `ClipLoss.get_logits`, and of every retrieval system that searches by cosine (FAISS's
#   inner-product indices on normalised vectors).
# - `triplet_loss` is `nn.TripletMarginLoss` / `F.triplet_margin_loss`; FaceNet's squared form
#   is the one in most lecture slides.
# - `batch_hard_triplet_loss` is the "batch hard" of Hermans et al.; libraries such as
#   pytorch-metric-learning offer it as a miner (`BatchHardMiner`) plus a triplet loss, and
#   VSE++ (Faghri et al. 2018) used the same hardest-negative idea for image–caption retrieval.
# - `clip_loss` is open_clip's `ClipLoss` on one device; across many GPUs it gathers the
#   features of every device first, so that each image meets the whole global batch of
#   captions. SigLIP (Zhai et al. 2023) replaces the softmax with a sigmoid per pair, which
#   needs no batch-wide normalisation: every image must still meet every caption of the
#   global batch, but the devices can pass chunks of captions around instead of gathering
#   all features in one place.
#
# **Further reading**
# - Schroff, Kalenichenko & Philbin, *FaceNet: A Unified Embedding for Face Recognition and
#   Clustering*, CVPR 2015 (the triplet loss, §3).
# - Hermans, Beyer & Leibe, *In Defense of the Triplet Loss for Person Re-Identification*,
#   arXiv:1703.07737, 2017 (batch hard, §2).
# - van den Oord, Li & Vinyals, *Representation Learning with Contrastive Predictive Coding*,
#   arXiv:1807.03748, 2018 (InfoNCE, eq. 4).
# - Radford et al., *Learning Transferable Visual Models From Natural Language Supervision*,
#   ICML 2021 (CLIP; the loss in Figure 3).
# - Wang & Isola, *Understanding Contrastive Representation Learning through Alignment and
#   Uniformity on the Hypersphere*, ICML 2020.
# - Wang & Liu, *Understanding the Behaviour of Contrastive Loss*, CVPR 2021 (the temperature).
#
# **Next:** notebook 04 puts a transformer behind the captions and a learned temperature in
# the loss: a mini CLIP, with zero-shot classification and retrieval.
