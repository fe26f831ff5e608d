# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Welcome: images as tensors and the Shapes world
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/multimodal-from-scratch/course/blob/main/notebooks/00_welcome/00_welcome.ipynb)
#
# **Multimodal from Scratch** builds the pieces of today's text-and-image models one at a
# time: convolutions and vision transformers that read images, losses that pull matching
# image–text pairs together, a small CLIP, a ViLT that answers questions about pictures, and a
# diffusion model that draws them. This first notebook says what "multimodal" means, sets up
# your tools and introduces the data every later notebook uses.
#
# **You will learn**
# - what a modality is, and the four multimodal tasks this course builds;
# - how an image becomes a tensor a network can read: `(H, W, 3)` bytes → `(3, H, W)` floats;
# - how colour becomes brightness (luma), and what is lost on the way;
# - the *Shapes world*: generated scenes with captions and questions, the course's data set;
# - how exercises, tests and grading work in this course.
#
# **Time:** about 35 minutes: 15 minutes of reading, 20 of exercises; the notebook runs top to
# bottom in under a minute on a laptop CPU.
#
# **Prerequisites:** Python and NumPy; a first contact with PyTorch tensors helps but is not
# needed.

# %% [markdown]
# ## 0 · What is a modality?
#
# We meet the world through our **senses**: sight, hearing, touch, smell, taste. Each is a
# different *kind* of signal about the same world, and neuroscience calls each such channel a
# **modality**. Computers meet the world through **digital modalities**: text (sequences of
# tokens), images (grids of pixels), audio (waveforms), video (images in time) and sensor
# streams (depth, temperature, GPS, …). The same scene can arrive in several of them at once: a
# photo and its caption, a video and its soundtrack.
#
# A model is **multimodal** when it takes in, relates or produces more than one modality. The
# hard part is that the modalities do not share a format: a caption is a handful of discrete
# words, a picture thousands of continuous numbers. Every model in this course answers the
# same question in its own way: *how do we bring the two into one space where they can be
# compared, combined, or turned into each other?*
#
# This course works with **text and images**, and builds the four tasks that the lecture it
# follows names, each on the same small world of generated scenes (the figure after the set-up
# shows one scene through all four):
#
# - **retrieval**: find the picture that matches a caption, and the reverse (a mini CLIP,
#   notebook 04);
# - **visual question answering**: answer a question about a picture (a ViLT, notebook 05);
# - **captioning**: describe a picture in words (a captioner that generates text, notebook 07);
# - **generation**: draw a picture from a caption (a diffusion model, notebook 06).
#
# Notebooks 01–03 build what all four need: encoders that turn an image into vectors (a CNN,
# a vision transformer), and losses that bring a matched image–text pair together.

# %% [markdown]
# ## Set-up
#
# Run the next cell first. On Google Colab it installs the course package (about a minute);
# on your own machine it only imports what the notebook needs. It then picks the fastest
# device you have (a CUDA GPU, Apple's MPS, or the CPU) and seeds the random number
# generators, so that you see the same numbers as everyone else.

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

import matplotlib.pyplot as plt
import numpy as np
import torch

import course_utils
from course_utils import data, plotting
from course_utils.checks import welcome as checks

device = course_utils.get_device()
course_utils.seed_everything(0)
print(f"course_utils {course_utils.__version__}, torch {torch.__version__}, device: {device}")

# %% [markdown]
# ### One scene, four tasks
#
# The next cell takes one scene of the Shapes world (section 3 shows how it is made) and lays
# out the four tasks on it: what goes in, and what comes out.

# %%
task_scenes = data.generate_scenes(4, seed=1)
task_images = data.render_scenes(task_scenes, image_size=64)  # (4, 64, 64, 3) uint8
task_caption = data.caption_scenes(task_scenes[:1], seed=0)[0]
task_question = data.make_question(task_scenes[0], "count", np.random.default_rng(0))
plotting.show_four_tasks(task_images[0], task_caption, task_question.question,
                         task_question.answer, task_images[1:])
plt.show()

# %% [markdown]
# ## How this course works
#
# Every notebook alternates four kinds of cells:
#
# 1. **Explanations** like this one, with the maths you need.
# 2. **Exercises**: a function or class whose signature and docstring are given. Replace
#    `raise NotImplementedError()` with your code. The docstring is the contract: shapes in,
#    shapes out.
# 3. **Tests** (locked cells): run them after your exercise. A test compares your code with the
#    library the field uses (here torchvision) on many random inputs, and when it fails it
#    tells you the input, what it expected and what it got, and often the likely mistake.
#    When you submit, the grader also runs **hidden tests**: the same checks on other inputs.
#    Passing the visible test is a good sign, not a guarantee.
# 4. **Pictures** that show what your code just did.
#
# The heading of each exercise says how many points it is worth. Some questions are answered in
# words and graded by a person.
#
# Before you submit, use *Kernel → Restart & Run All*: the grader runs your notebook from top
# to bottom in a fresh kernel, so it must not depend on cells you ran out of order. If your
# course uses nbgrader, `nbgrader validate 00_welcome.ipynb` runs the same visible tests from
# a terminal.

# %% [markdown]
# ## 1 · Images are arrays of numbers
#
# A colour photo is stored as a grid of pixels, each with a red, green and blue intensity
# between 0 and 255: a NumPy array of shape `(H, W, 3)` and dtype `uint8`. Here is one that
# ships with matplotlib (a portrait of computing pioneer Grace Hopper), so nothing is
# downloaded.

# %%
photo = data.load_sample_photo()
print(type(photo).__name__, photo.shape, photo.dtype, photo.min(), photo.max())
plotting.show_images([photo], ["Grace Hopper, (H, W, 3) uint8"], size=3.5)
plt.show()

# %% [markdown]
# Networks want something else. PyTorch puts the **channels first**, `(C, H, W)`, so that each
# channel is one contiguous image (convolutions slide over `H` and `W` of every channel), and
# stacks images into batches `(B, C, H, W)`. And networks learn best from small floating-point
# numbers, so each byte $u \in \{0, \dots, 255\}$ becomes
#
# $$x = \frac{u}{255} \in [0, 1].$$
#
# ### Exercise 1 · `to_chw_float` (2 points)
#
# Write `to_chw_float(image)`: a `uint8` array `(H, W, 3)` → a `float32` tensor `(3, H, W)`
# with values in $[0, 1]$. This is what torchvision's `transforms.functional.to_tensor` does
# (the test compares with it, and you may not call it).
#
# - `torch.from_numpy` turns an array into a tensor without copying;
# - `permute` reorders axes; `reshape` would not (try to see why in the picture below);
# - a `uint8` tensor must become `float32` before you divide (NumPy's `/` would give `float64`).
# - Anything else (a `(H, W)` array, 4 channels) must raise a `ValueError` that says what was
#   expected.

# %% nbgrader={"grade": false, "grade_id": "to_chw_float", "locked": false, "schema_version": 3, "solution": true, "task": false}
def to_chw_float(image: np.ndarray) -> torch.Tensor:
    """Convert an RGB image to the tensor layout networks use.

    Args:
        image: uint8 array of shape (H, W, 3), values 0..255.

    Returns:
        float32 tensor of shape (3, H, W), values in [0, 1].

    Raises:
        ValueError: if ``image`` is not a (H, W, 3) array.
    """
    ### BEGIN SOLUTION
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"expected a (H, W, 3) array, got shape {np.shape(image)}")
    x = torch.from_numpy(image)  # (H, W, 3) uint8, shares memory with the array
    x = x.permute(2, 0, 1)  # (3, H, W): channels first
    return x.float() / 255.0
    ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `torch.Size([3, 600, 512]) torch.float32 0.0 1.0`.

# %%
x = to_chw_float(photo)
print(x.shape, x.dtype, x.min().item(), x.max().item())

# %% nbgrader={"grade": true, "grade_id": "test_to_chw_float", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks to_chw_float against torchvision's to_tensor: shape, dtype, values, and ValueErrors.
checks.to_chw_float(to_chw_float)
### BEGIN HIDDEN TESTS
checks.to_chw_float(to_chw_float, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Each channel of `x` is now a grey image of its own: the red channel is bright on the flag's
# red stripes and on the skin, the blue channel in the blue backdrop. The last panel shows what
# `reshape` instead of `permute` does to the same bytes.

# %%
scrambled = torch.from_numpy(photo).reshape(3, *photo.shape[:2]).float() / 255
plotting.show_images([x, x[0], x[1], x[2], scrambled[0]],
                     ["x (as RGB)", "x[0]: red", "x[1]: green", "x[2]: blue",
                      "reshape, not permute: channel 0"], ncols=5, size=2.4)
plt.show()

# %% [markdown]
# ## 2 · From colour to brightness
#
# Many classic vision operations (the edge detectors of notebook 01, for one) work on a single
# brightness channel. Our eyes are most sensitive to green and least to blue, so brightness
# (*luma*) is a weighted sum, not a plain average. The weights come from the ITU-R BT.601
# standard, (0.299, 0.587, 0.114), which torchvision writes as 0.2989 for red; we use
# torchvision's constants so that your function can be checked against it:
#
# $$Y = 0.2989\,R + 0.587\,G + 0.114\,B.$$
#
# ### Exercise 2 · `rgb_to_grayscale` (2 points)
#
# Write `rgb_to_grayscale(x)`: a tensor `(..., 3, H, W)` → `(..., 1, H, W)`. The `...` means any
# number of leading batch dimensions (none, one, or more), so index the channel axis from the
# end (`dim=-3`). Keep the channel axis (size 1), keep the input's dtype and device, and keep
# autograd working (no `.numpy()`, no `torch.tensor(...)` of the input). Raise a `ValueError` if
# the channel axis does not have 3 entries. The reference is torchvision's `rgb_to_grayscale`.

# %% nbgrader={"grade": false, "grade_id": "rgb_to_grayscale", "locked": false, "schema_version": 3, "solution": true, "task": false}
def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images: Y = 0.2989 R + 0.587 G + 0.114 B.

    Args:
        x: float tensor of shape (..., 3, H, W).

    Returns:
        tensor of shape (..., 1, H, W), same dtype and device as ``x``.

    Raises:
        ValueError: if ``x`` has fewer than 3 dimensions or its channel axis is not 3.
    """
    ### BEGIN SOLUTION
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected a tensor of shape (..., 3, H, W), got {tuple(x.shape)}")
    weights = torch.tensor([0.2989, 0.587, 0.114], dtype=x.dtype, device=x.device)
    weights = weights.view(3, 1, 1)  # (3, 1, 1): broadcasts over H and W
    return (x * weights).sum(dim=-3, keepdim=True)  # (..., 1, H, W)
    ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `torch.Size([1, 600, 512])` and then
# `torch.Size([8, 1, 32, 32])`.

# %%
print(rgb_to_grayscale(x).shape)
print(rgb_to_grayscale(torch.rand(8, 3, 32, 32)).shape)

# %% nbgrader={"grade": true, "grade_id": "test_rgb_to_grayscale", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks rgb_to_grayscale against torchvision: batch shapes, dtypes, gradients, ValueErrors.
checks.rgb_to_grayscale(rgb_to_grayscale)
### BEGIN HIDDEN TESTS
checks.rgb_to_grayscale(rgb_to_grayscale, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Luma against the plain average of the three channels: the average gives blue three times
# the weight luma does, so the blue backdrop comes out brighter than we see it.

# %%
plotting.show_images([x, rgb_to_grayscale(x), x.mean(dim=0, keepdim=True)],
                     ["colour", "luma (your rgb_to_grayscale)", "plain average of R, G, B"],
                     ncols=3, size=3.0)
plt.show()

# %% [markdown]
# ## 3 · The Shapes world
#
# Real multimodal models learn from hundreds of millions of image–text pairs. To build them
# from scratch on a laptop in minutes, this course uses a small world whose every picture and
# sentence is generated on your machine, in seconds, from a seed: the **Shapes world**. A scene
# holds 1 to 4 objects, each a *shape* (circle, square, triangle) with a *colour* (5 of them), a
# *size* (small, large) and a position; objects never overlap.

# %%
scenes = data.generate_scenes(8, seed=0)
images = data.render_scenes(scenes, image_size=32)  # (8, 32, 32, 3) uint8
print(images.shape, images.dtype)
for obj in scenes[0].objects:  # positions are fractions of the image: x to the right, y down
    print(f"{obj.size:>5} {obj.colour:>6} {obj.shape:<8} at x={obj.x:.2f}, y={obj.y:.2f}")
plotting.show_images(images, [f"{len(s.objects)} object(s)" for s in scenes], size=1.8)
plt.show()

# %% [markdown]
# Every image comes with **captions** in varied words, all true of the scene (the mini CLIP of
# notebook 04 learns from them), and **questions with answers** of five types (the ViLT of
# notebook 05 learns to answer them). Your `to_chw_float` turns each picture into the tensor
# the models read.

# %%
captions = data.caption_scenes(scenes, seed=0)
tensors = torch.stack([to_chw_float(image) for image in images])  # (8, 3, 32, 32)
plotting.show_images(tensors, captions, ncols=4, size=2.2)
plt.show()

rng = np.random.default_rng(0)
for qtype in data.QUESTION_TYPES:
    question = None
    for scene in scenes:
        question = data.make_question(scene, qtype, rng)
        if question is not None:
            break
    print(f"{qtype:>8}: {question.question:<45} -> {question.answer}")

# %% [markdown]
# ### Classes, splits and the vocabulary
#
# A single-object scene has one of **15 classes**, a colour and a shape ("red circle"). The
# notebooks on vision encoders train classifiers on them.
#
# Data come in **splits**: `train` to learn from, `test` to measure on (new scenes from the
# same world), and `compositional`. Three colour–shape pairs are held out of `train` and `test`
# altogether: a model trained on the rest has seen red things and triangles, but never a red
# triangle. The compositional split asks whether it can recognise one anyway, which is one of
# the promises of learning from language.

# %%
print(len(data.CLASSES), "classes:", ", ".join(data.CLASSES))
print("held out of training:", data.COMPOSITIONAL_PAIRS)
train = data.ShapesClassification("train", size=600, seed=0, hold_out=False)
print("train images", tuple(train.images.shape), "labels", tuple(train.labels.shape))
first_of_each = [int((train.labels == k).nonzero()[0]) for k in range(len(data.CLASSES))]
plotting.show_images(train.images[first_of_each], list(data.CLASSES), ncols=5, size=1.6)
plt.show()

# %% [markdown]
# Text is split into words, and each word gets an integer id from a fixed **vocabulary**. A few
# ids are special: `<pad>` fills short sentences up to a common length, `<start>` and `<end>`
# mark where a sentence begins and ends, and `<mask>` hides a word for the model to guess
# (notebook 05).

# %%
vocab = data.build_vocabulary()
ids = vocab.encode(captions[0])
print(f"{len(vocab)} words; the first ten: {vocab.words[:10]}")
print(captions[0], "->", ids, "->", vocab.decode(ids))

# %% [markdown]
# Finally, the data sets are ordinary PyTorch `Dataset`s, so a `DataLoader` batches them, and
# their tensors move to the device like any other.

# %%
loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
batch_images, batch_labels = next(iter(loader))
batch_images = batch_images.to(device)
print(batch_images.shape, batch_images.device, rgb_to_grayscale(batch_images).shape)

# %% [markdown]
# ## 4 · A question to answer in words (2 points)
#
# Suppose every Shapes-world image were converted to grayscale with your `rgb_to_grayscale`
# before a model saw it. What would a model lose? The next cell gives you evidence: the grey
# level your function gives each of the world's five colours and its background (the renderer
# also shifts each object's colour by up to ±0.04 per channel). Look at the question
# templates too: `data.questions.COUNT_TEMPLATES`, `COLOUR_TEMPLATE`, `SHAPE_TEMPLATE`,
# `EXISTS_TEMPLATE` and `RELATION_TEMPLATE`.

# %%
palette = torch.tensor([data.COLOUR_RGB[c] for c in data.COLOURS] + [data.world.BACKGROUND_RGB])
lumas = rgb_to_grayscale(palette[:, :, None, None])[:, 0, 0, 0]  # (6,): one grey level each
names_and_lumas = zip([*data.COLOURS, "background"], lumas.tolist(), strict=True)
for name, luma in sorted(names_and_lumas, key=lambda pair: pair[1]):
    print(f"{name:>10}: {luma:.3f}")
for template in (*data.questions.COUNT_TEMPLATES, data.questions.COLOUR_TEMPLATE,
                 data.questions.SHAPE_TEMPLATE, data.questions.EXISTS_TEMPLATE,
                 data.questions.RELATION_TEMPLATE):
    print(template)

# %% [markdown]
# **Which of the five question types (count, colour, shape, exists, relation) could a model
# still answer perfectly from grayscale images, which only sometimes, and why?** Use the grey
# levels above, and be specific about questions that name a colour ("is the red circle left of
# the blue square?"). Two to five sentences.

# %% [markdown] nbgrader={"grade": true, "grade_id": "written_grayscale", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# Only questions that name no colour survive perfectly: the count questions "how many objects",
# "how many {shapes}" and "how many {size} objects" (3 of the 5 count templates), because
# outlines, sizes and positions are intact in grayscale. Every other type names a colour in this
# world: colour questions ask for one, and shape ("what shape is the [size] red object"),
# exists ("is there a red circle"), relation ("is the red circle left of the blue square") and
# the two colour count templates refer to objects by colour. Those can be answered only when the
# grey level still identifies the colour: yellow (0.81) and green (0.55) stay distinct, but red
# (0.385), blue (0.420) and purple (0.450) lie within the ±0.04 colour jitter of each other, so
# a model must guess among them; no colour is confused with the background (0.07). (Grading:
# 1 point for the split — only the colour-free count questions survive, every type that names
# a colour is at risk; 1 point for the reason from the evidence — luma is many-to-one, and red,
# blue and purple collide while yellow and green remain identifiable.)

# %% [markdown]
# ## What you built, and where it lives in real systems
#
# - `to_chw_float` is torchvision's `transforms.ToTensor()` / `to_tensor`; every image pipeline
#   in PyTorch starts with it. open_clip's preprocessing, for one, resizes and crops the photo,
#   calls `ToTensor()`, and then normalises each channel with a mean and standard deviation.
# - `rgb_to_grayscale` is torchvision's `rgb_to_grayscale`; the same weights are in PIL's
#   `Image.convert("L")` (to three decimals) and OpenCV's `cvtColor`.
# - The Shapes world stands in for the web-scale image–text data sets (LAION, CC12M) and the
#   visual question answering sets (VQAv2, CLEVR) of real systems. CLEVR, a generated world
#   of 3-D shapes with questions, is its closest relative.
#
# **Further reading**
# - PyTorch, *Tensors* tutorial: https://pytorch.org/tutorials/beginner/basics/tensorqs_tutorial.html
# - Johnson et al., *CLEVR: A Diagnostic Dataset for Compositional Language and Elementary
#   Visual Reasoning*, CVPR 2017.
# - Poynton, *Digital Video and HD*, chapter on luma, for why the weights are what they are.
#
# **Next:** notebook 01 slides small filters over these tensors: convolution and pooling.
