# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Image captioning: generating text from pixels
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/multimodal-from-scratch/course/blob/main/notebooks/07_captioning/07_captioning.ipynb)

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

import torch
import torch.nn.functional as F
from torch import nn

import course_utils
from course_utils import data
from course_utils.checks import captioning as checks

device = course_utils.get_device()
course_utils.seed_everything(0)
print(f"course_utils {course_utils.__version__}, torch {torch.__version__}, device: {device}")

# %% [markdown]
# ### Exercise 1 · `teacher_forcing` (1 point)
#
# A captioner is a language model that also looks at the image: at position $t$ it reads the
# caption so far and predicts the next word, $p(w_{t+1} \mid w_{\le t}, \text{image})$, and a
# caption's loss is $-\sum_t \log p(w_{t+1} \mid w_{\le t}, \text{image})$ (Vinyals et al.,
# *Show and Tell*, 2015). In training the decoder reads the *true* caption, not its own guesses
# (**teacher forcing**, Williams & Zipser 1989), so one forward pass predicts every position
# at once: the inputs are the caption without its last token, the targets the caption without
# its start token, and a target that is padding is replaced by $-100$, the index that
# `F.cross_entropy` ignores. Captions are rows `[start, w1, …, end, pad, …]` of the course's
# vocabulary (pad 0, start 1, end 2). Raise a `ValueError` unless `tokens` is `(B, L)` with
# $L \ge 2$, and leave `tokens` as it was.

# %% nbgrader={"grade": false, "grade_id": "teacher_forcing", "locked": false, "schema_version": 3, "solution": true, "task": false}
def teacher_forcing(tokens: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's inputs and next-token targets for teacher forcing.

    Args:
        tokens: long (B, L), each row [start, w1, ..., end, pad, ...]; not modified.
        pad_id: the id of the padding token.

    Returns:
        inputs: long (B, L - 1) = tokens[:, :-1], what the decoder reads at each position.
        targets: long (B, L - 1) = tokens[:, 1:], the token each position must predict, with
            -100 (F.cross_entropy's ignore_index) where that token is pad_id.

    Raises:
        ValueError: if tokens is not 2-D or L < 2.
    """
    ### BEGIN SOLUTION
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"expected tokens (B, L) with L >= 2, got {tuple(tokens.shape)}")
    # 1. position t reads token t and predicts token t + 1 (Vinyals et al. 2015)
    inputs = tokens[:, :-1]  # (B, L - 1): [start, w1, ..., end] and padding
    targets = tokens[:, 1:]  # (B, L - 1): [w1, ..., end] and padding
    # 2. nothing to learn where the target is padding: -100, ignored by the loss
    #    (masked_fill makes a new tensor: the caller's tokens stay as they were)
    targets = targets.masked_fill(targets == pad_id, -100)  # (B, L - 1)
    return inputs, targets
    ### END SOLUTION


# %% [markdown]
# **Try it.** The next cell should print `<start> a red circle <end> <pad>` and
# `a red circle <end> -100 -100`.

# %%
vocab = data.build_vocabulary()
caption = [vocab.start_id, *vocab.encode("a red circle"), vocab.end_id, vocab.pad_id,
           vocab.pad_id]
inputs_demo, targets_demo = teacher_forcing(torch.tensor([caption]), vocab.pad_id)  # (1, 6)
print(vocab.decode(inputs_demo[0], skip_special=False))
print(" ".join(vocab.word(int(i)) if i >= 0 else str(int(i)) for i in targets_demo[0]))

# %% nbgrader={"grade": true, "grade_id": "test_teacher_forcing", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Checks teacher_forcing: the shift by one, -100 on padding, tokens left unchanged, bad shapes.
checks.teacher_forcing(teacher_forcing)
### BEGIN HIDDEN TESTS
checks.teacher_forcing(teacher_forcing, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 · `CrossAttention` (3 points)
#
# How does the text look at the image? With **cross-attention**, the encoder–decoder attention
# of the original transformer (Vaswani et al. 2017, §3.2.3): the same scaled dot-product
# attention as in notebook 02, but the queries come from one sequence and the keys and values
# from another. Each text token $x_t$ asks a question, $q_t = W_q x_t$; each image token $c_m$
# offers a key and a value, $[k_m, v_m] = W_{kv}\, c_m$; and
# $\text{out}_t = W_O \sum_m \text{softmax}_m\!\left(q_t \cdot k_m / \sqrt{d}\right) v_m$, head by
# head. The output has one row per *text* token, $(B, T, D)$, whatever the number $M$ of image
# tokens. `context_mask` (B, M) is True for a real image token (notebook 02's convention:
# torch's `key_padding_mask` means the opposite); a False one is never attended. You may use
# `F.scaled_dot_product_attention` (you wrote it in notebook 02); `nn.MultiheadAttention`
# is refused, and the test compares your module with it, given the same weights (its
# `in_proj` is the rows of `q` followed by those of `kv`).

# %% nbgrader={"grade": false, "grade_id": "CrossAttention", "locked": false, "schema_version": 3, "solution": true, "task": false}
class CrossAttention(nn.Module):
    """Multi-head cross-attention: text queries, image keys and values (Vaswani et al. 2017).

    Args:
        dim: D, the width of the text and of the image tokens; divisible by ``num_heads``.
        num_heads: h; each head works on d = D / h features.

    Attributes:
        q: nn.Linear(D, D), the queries of every head, from the text.
        kv: nn.Linear(D, 2·D), the keys (first D outputs) then the values of every head, from
            the image tokens.
        proj: nn.Linear(D, D), W_O, mixes the concatenated heads.

    Shapes: forward x (B, T, D) text tokens, context (B, M, D) image tokens, context_mask
    (B, M) bool, True = a real image token (optional) -> (B, T, D).

    Raises:
        ValueError: if D is not divisible by h, or x, context or context_mask has another shape.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        ### BEGIN SOLUTION
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        ### END SOLUTION

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        ### BEGIN SOLUTION
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x (B, T, {self.dim}), got {tuple(x.shape)}")
        if context.ndim != 3 or context.shape[0] != x.shape[0] or context.shape[-1] != self.dim:
            raise ValueError(f"expected context ({x.shape[0]}, M, {self.dim}), got "
                             f"{tuple(context.shape)}")
        if context_mask is not None and context_mask.shape != context.shape[:2]:
            raise ValueError(f"expected context_mask {tuple(context.shape[:2])}, got "
                             f"{tuple(context_mask.shape)}")
        batch, tokens, dim = x.shape
        images, h = context.shape[1], self.num_heads
        # 1. queries from the text, keys and values from the image (Vaswani et al., §3.2.3)
        q = self.q(x).reshape(batch, tokens, h, dim // h).transpose(1, 2)  # (B, h, T, d)
        kv = self.kv(context).reshape(batch, images, 2, h, dim // h)  # (B, M, 2, h, d)
        k, v = kv.permute(2, 0, 3, 1, 4)  # each (B, h, M, d)
        # 2. a padding image token is never attended: True = may attend, for every query
        mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, M)
        # 3. scaled dot-product attention in every head at once (eq. 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, T, d)
        # 4. concatenate the heads and mix them with W_O
        out = out.transpose(1, 2).reshape(batch, tokens, dim)  # (B, T, h, d) -> (B, T, D)
        return self.proj(out)  # (B, T, D)
        ### END SOLUTION


# %% [markdown]
# **Try it.** Your module and `nn.MultiheadAttention` with the same weights, 6 text tokens
# looking at 5 image tokens (the last 2 of the second image are padding): the next cell should
# print `torch.Size([2, 6, 16])` and a largest difference below `1e-6`.

# %%
cross_demo = CrossAttention(dim=16, num_heads=4)
torch_cross = nn.MultiheadAttention(16, 4, batch_first=True)
with torch.no_grad():
    torch_cross.in_proj_weight.copy_(torch.cat([cross_demo.q.weight, cross_demo.kv.weight]))
    torch_cross.in_proj_bias.copy_(torch.cat([cross_demo.q.bias, cross_demo.kv.bias]))
    torch_cross.out_proj.weight.copy_(cross_demo.proj.weight)
    torch_cross.out_proj.bias.copy_(cross_demo.proj.bias)
text_demo, image_demo = torch.randn(2, 6, 16), torch.randn(2, 5, 16)
real_demo = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
with torch.no_grad():
    mine = cross_demo(text_demo, image_demo, real_demo)
    theirs, _ = torch_cross(text_demo, image_demo, image_demo, key_padding_mask=~real_demo)
print(mine.shape, f"largest difference {(mine - theirs).abs().max():.1e}")

# %% nbgrader={"grade": true, "grade_id": "test_CrossAttention", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Checks CrossAttention against nn.MultiheadAttention with the same weights: values, gradients.
checks.CrossAttention(CrossAttention)
### BEGIN HIDDEN TESTS
checks.CrossAttention(CrossAttention, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 3 · `CaptionDecoderBlock` (3 points)
#
# A captioner's decoder is a stack of blocks like notebook 02's, with a cross-attention
# sub-layer between the self-attention and the MLP, each pre-norm (Xiong et al. 2020):
# $x \leftarrow x + \text{SelfAttn}(\text{LN}_1(x))$, then
# $x \leftarrow x + \text{CrossAttn}(\text{LN}_2(x), \text{image})$, then
# $x \leftarrow x + \text{MLP}(\text{LN}_3(x))$. The self-attention is **causal** (Vaswani et
# al. 2017, §3.2.3): position $t$ may attend to positions $\le t$ only, so that in training,
# when the whole caption is read at once, no position can look at the word it must predict.
# Use your `CrossAttention`, and `F.scaled_dot_product_attention(..., is_causal=True)` or a
# lower-triangular mask of your own. The test compares your block with one built from torch's
# layers, and checks causality on its own: changing the tokens from position $t$ on must leave
# every output before $t$ exactly as it was.

# %% nbgrader={"grade": false, "grade_id": "CaptionDecoderBlock", "locked": false, "schema_version": 3, "solution": true, "task": false}
class CaptionDecoderBlock(nn.Module):
    """Pre-norm decoder block: causal self-attention, cross-attention to the image, MLP.

    Args:
        dim: D, the token width; divisible by ``num_heads``.
        num_heads: h, in both attentions.
        mlp_ratio: the MLP's hidden width is int(D · mlp_ratio).

    Attributes:
        norm1, qkv (nn.Linear(D, 3·D): q, k, v rows), proj (nn.Linear(D, D)): the causal
            self-attention;
        norm2, cross_attn (a CrossAttention(D, h)): the cross-attention to the image;
        norm3, mlp (nn.Sequential(nn.Linear(D, int(D · mlp_ratio)), nn.GELU(), nn.Linear back)).

    Shapes: forward x (B, T, D) text tokens, context (B, M, D) image tokens, context_mask
    (B, M) bool, True = a real image token (optional) -> (B, T, D):
        x = x + proj(causal_self_attention(qkv(norm1(x))))
        x = x + cross_attn(norm2(x), context, context_mask)
        x = x + mlp(norm3(x))

    Raises:
        ValueError: if x is not (B, T, D), or the context has another shape (CrossAttention).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        ### BEGIN SOLUTION
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm3 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        ### END SOLUTION

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        ### BEGIN SOLUTION
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x (B, T, {self.dim}), got {tuple(x.shape)}")
        batch, tokens, dim = x.shape
        h = self.num_heads
        # 1. causal self-attention over the caption so far (Vaswani et al. 2017, §3.2.3)
        qkv = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, h, dim // h)  # (B, T, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, h, T, d)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, T, d)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim))  # (B, T, D)
        # 2. cross-attention: every text token looks at the image tokens
        x = x + self.cross_attn(self.norm2(x), context, context_mask)  # (B, T, D)
        # 3. the MLP, token by token
        return x + self.mlp(self.norm3(x))  # (B, T, D)
        ### END SOLUTION


# %% [markdown]
# **Try it.** Change the last text token: only the last output may move. The next cell should
# print `torch.Size([2, 6, 16])`, `0.0` for the first five positions and a number above `0.1`
# for the last.

# %%
block_demo = CaptionDecoderBlock(dim=16, num_heads=4)
words_demo, pixels_demo = torch.randn(2, 6, 16), torch.randn(2, 5, 16)  # text, image tokens
changed_demo = words_demo.clone()
changed_demo[:, -1] = torch.randn(2, 16)  # another last word
with torch.no_grad():
    before = block_demo(words_demo, pixels_demo)
    after = block_demo(changed_demo, pixels_demo)
print(before.shape, f"{(after - before)[:, :-1].abs().max():.1f}",
      f"{(after - before)[:, -1].abs().max():.2f}")

# %% nbgrader={"grade": true, "grade_id": "test_CaptionDecoderBlock", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Checks CaptionDecoderBlock against torch layers with the same weights, and its causality.
checks.CaptionDecoderBlock(CaptionDecoderBlock)
### BEGIN HIDDEN TESTS
checks.CaptionDecoderBlock(CaptionDecoderBlock, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 4 · `caption_loss` (2 points)
#
# The decoder's logits $(B, T, V)$ give, at every position, a score for each word of the
# vocabulary; the loss is the mean over the real targets of $-\log p(\text{target})$, with
# $\log p = \text{log-softmax}$ over the vocabulary. The $-100$ targets count neither in the
# sum nor in the number of terms: the mean is over the tokens of the whole batch, so a long
# caption weighs more than a short one, as in `F.cross_entropy(logits.reshape(-1, V),
# targets.reshape(-1), ignore_index=-100)`, the reference, refused here (with `F.nll_loss`).
# Use `log_softmax` (or `logsumexp`), which subtracts the largest logit before exponentiating:
# a confident model's logits are large, and $\exp$ overflows in float32 above 88. Pick each
# target's log-probability with `gather` (a $-100$ is no index: replace it first), and raise
# a `ValueError` unless `logits` is $(B, T, V)$ and `targets` $(B, T)$.

# %% nbgrader={"grade": false, "grade_id": "caption_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def caption_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean next-token cross-entropy over the targets that are not -100.

    Args:
        logits: (B, T, V), the decoder's scores for every word at every position.
        targets: long (B, T), the word each position must predict; -100 = ignore.

    Returns:
        A scalar tensor: -sum over real (b, t) of log_softmax(logits[b, t])[targets[b, t]],
        divided by the number of real targets; in logits' dtype, on its device.

    Raises:
        ValueError: if logits is not (B, T, V) or targets not (B, T).
    """
    ### BEGIN SOLUTION
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (B, T, V) and targets (B, T), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    # 1. log-probabilities over the vocabulary, computed stably (the max is subtracted)
    log_probs = logits.log_softmax(dim=-1)  # (B, T, V)
    # 2. the log-probability of each target; a -100 becomes index 0, masked out below
    real = targets != -100  # (B, T)
    index = targets.clamp(min=0).unsqueeze(-1)  # (B, T, 1)
    picked = log_probs.gather(-1, index).squeeze(-1)  # (B, T)
    # 3. the mean of -log p over the real targets of the batch (Vinyals et al. 2015)
    return -(picked * real).sum() / real.sum()
    ### END SOLUTION


# %% [markdown]
# **Try it.** A model that knows nothing (all logits 0) gives every word probability $1/V$, so
# its loss is $\ln V$ whatever the targets: the next cell should print `3.9703` three times
# ($\ln 53$, the course's 53 words), for $\ln V$, your loss and `F.cross_entropy`'s.

# %%
V_demo = len(data.build_vocabulary())
zeros_demo = torch.zeros(2, 6, V_demo)  # (B, T, V): every word equally likely
targets_demo = torch.randint(0, V_demo, (2, 6))
targets_demo[0, 4:] = -100  # the first caption is shorter
print(f"{torch.log(torch.tensor(float(V_demo))):.4f}",
      f"{caption_loss(zeros_demo, targets_demo):.4f}",
      f"{F.cross_entropy(zeros_demo.reshape(-1, V_demo), targets_demo.reshape(-1)):.4f}")

# %% nbgrader={"grade": true, "grade_id": "test_caption_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks caption_loss against F.cross_entropy(ignore_index=-100): values, gradients, big logits.
checks.caption_loss(caption_loss)
### BEGIN HIDDEN TESTS
checks.caption_loss(caption_loss, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 5 · `greedy_decode` (3 points)
#
# To caption a new image the model writes one word at a time, reading its own words back:
# start from the start token, ask the model for the logits of every position,
# `model(images, tokens)` $(B, T, V)$, where position $t$ predicts token $t + 1$, append the
# most likely word of the *last* position, and repeat (greedy decoding; beam search keeps
# several candidates instead, as Vinyals et al. 2015 do). The whole batch is decoded
# together: a row that has produced the end token gets padding (0) from then on, and decoding
# stops when every row has ended or the result has `max_len` columns, the start token
# included. Return the tokens, a long $(B, L)$ tensor with $L \le$ `max_len` that starts with
# `start_id` (so that `vocab.decode` reads it like a training caption), on the images'
# device, and run the model under `torch.no_grad()`: decoding trains nothing. Raise a
# `ValueError` if `max_len` is below 1.

# %% nbgrader={"grade": false, "grade_id": "greedy_decode", "locked": false, "schema_version": 3, "solution": true, "task": false}
def greedy_decode(model: nn.Module, images: torch.Tensor, max_len: int, start_id: int,
                  end_id: int) -> torch.Tensor:
    """Greedy captions of a batch of images, the batch decoded together.

    Args:
        model: model(images, tokens (B, T)) -> logits (B, T, V); position t predicts token
            t + 1.
        images: (B, C, H, W).
        max_len: the most columns the result may have, the start token included (>= 1).
        start_id, end_id: the start and end tokens.

    Returns:
        long (B, L), L <= max_len, on the images' device: column 0 is start_id, then each
        row's greedy tokens up to and including its end_id, then padding (0). Decoding stops
        when every row has ended or L reaches max_len. The model runs under torch.no_grad().

    Raises:
        ValueError: if max_len < 1.
    """
    ### BEGIN SOLUTION
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    batch = images.shape[0]
    # 1. every caption starts with the start token
    tokens = torch.full((batch, 1), start_id, dtype=torch.long, device=images.device)  # (B, 1)
    ended = torch.zeros(batch, dtype=torch.bool, device=images.device)  # (B,)
    with torch.no_grad():  # decoding trains nothing: no autograd graph
        while tokens.shape[1] < max_len and not ended.all():
            # 2. the last position's most likely word is the next token (Vinyals et al. 2015)
            following = model(images, tokens)[:, -1].argmax(dim=-1)  # (B,)
            # 3. a row that has ended gets padding; it ends when it produces the end token
            following = following.masked_fill(ended, 0)  # (B,)
            tokens = torch.cat([tokens, following[:, None]], dim=1)  # (B, T + 1)
            ended |= following == end_id
    return tokens
    ### END SOLUTION


# %% [markdown]
# **Try it.** A toy "model" that always predicts the next id up (`start` 5, then 6, 7, …):
# with the end token 8 the caption stops there; with the end token 30 it stops at `max_len`.
# The next cell should print `[[5, 6, 7, 8]]` and `[[5, 6, 7, 8, 9, 10]]`.

# %%
def count_up(images, tokens):
    return F.one_hot(tokens + 1, 40).float()  # (B, T, 40): position t predicts tokens[t] + 1


print(greedy_decode(count_up, torch.zeros(1, 3, 8, 8), 6, 5, 8).tolist())
print(greedy_decode(count_up, torch.zeros(1, 3, 8, 8), 6, 5, 30).tolist())

# %% nbgrader={"grade": true, "grade_id": "test_greedy_decode", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Checks greedy_decode on stub captioners whose greedy captions are known: end, padding, max_len.
checks.greedy_decode(greedy_decode)
### BEGIN HIDDEN TESTS
checks.greedy_decode(greedy_decode, seed=2026, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 6 · `coca_loss` (2 points)
#
# CoCa (Yu et al. 2022, *Contrastive Captioners are Image-Text Foundation Models*) trains one
# model for both jobs: its image and text embeddings are pulled together by CLIP's contrastive
# loss (eq. 1, notebook 03's `clip_loss`), and its decoder learns to caption with the loss you
# just wrote (eq. 2); the two are added with weights, $\mathcal{L} = \lambda_\text{Con}
# \mathcal{L}_\text{Con} + \lambda_\text{Cap} \mathcal{L}_\text{Cap}$ (eq. 3; CoCa uses
# $\lambda_\text{Cap} = 2$, $\lambda_\text{Con} = 1$). Return the two terms, each already
# multiplied by its weight, `(clip_weight · contrastive, caption_weight · captioning)`,
# exactly what `open_clip.loss.CoCaLoss` returns (refused here, with `ClipLoss`). The features
# come L2-normalised; `logit_scale` is the multiplier $1/\tau$. Use `F.cross_entropy` for the
# contrastive part and your `caption_loss` for the captioning part, and raise a `ValueError`
# unless the image and text features are both $(N, D)$ and there is one caption per image.

# %% nbgrader={"grade": false, "grade_id": "coca_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def coca_loss(image_features: torch.Tensor, text_features: torch.Tensor, logits: torch.Tensor,
              targets: torch.Tensor, logit_scale: torch.Tensor | float, caption_weight: float,
              clip_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """CoCa's two losses, each weighted (Yu et al. 2022, eq. 1-3).

    Args:
        image_features, text_features: (N, D), L2-normalised; pair i is image i and text i.
        logits: (N, T, V), the decoder's scores for caption i of image i.
        targets: long (N, T), the words to predict; -100 = ignore.
        logit_scale: 1/τ, a scalar tensor or a float.
        caption_weight, clip_weight: λ_Cap and λ_Con.

    Returns:
        (contrastive, captioning), scalar tensors: clip_weight · the symmetric cross-entropy
        over logit_scale · image_features @ text_features.T, and caption_weight ·
        caption_loss(logits, targets).

    Raises:
        ValueError: on features of different or non-(N, D) shapes, or logits and targets
            that are not (N, T, V) and (N, T).
    """
    ### BEGIN SOLUTION
    if image_features.ndim != 2 or image_features.shape != text_features.shape:
        raise ValueError(f"expected image and text features of one shape (N, D), got "
                         f"{tuple(image_features.shape)} and {tuple(text_features.shape)}")
    if logits.shape[0] != image_features.shape[0]:
        raise ValueError(f"expected one caption per image: {image_features.shape[0]} images, "
                         f"{logits.shape[0]} captions")
    # 1. the contrastive loss: CLIP's symmetric cross-entropy (Yu et al. 2022, eq. 1)
    scores = logit_scale * image_features @ text_features.T  # (N, N)
    labels = torch.arange(len(scores), device=scores.device)  # pair i is the right answer
    contrastive = (F.cross_entropy(scores, labels) + F.cross_entropy(scores.T, labels)) / 2
    # 2. the captioning loss: next-token cross-entropy over the real targets (eq. 2)
    captioning = caption_loss(logits, targets)
    # 3. each weighted, as CoCa adds them (eq. 3)
    return clip_weight * contrastive, caption_weight * captioning
    ### END SOLUTION


# %% [markdown]
# **Try it.** Your two losses and open_clip's `CoCaLoss` on the same random batch: the next
# cell should print the same two pairs of numbers.

# %%
from open_clip.loss import CoCaLoss

image_f, text_f = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
logits_demo = torch.randn(4, 5, 53)  # (N, T, V)
targets_coca = torch.randint(0, 53, (4, 5)).masked_fill(torch.rand(4, 5) < 0.3, -100)
mine = coca_loss(image_f, text_f, logits_demo, targets_coca, 10.0, 2.0, 1.0)
theirs = CoCaLoss(caption_loss_weight=2.0, clip_loss_weight=1.0, pad_id=-100)(
    image_f, text_f, logits_demo, targets_coca, 10.0)
print([f"{v:.4f}" for v in mine], [f"{v:.4f}" for v in theirs])

# %% nbgrader={"grade": true, "grade_id": "test_coca_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Checks coca_loss against open_clip's CoCaLoss: both weighted terms, gradients, bad shapes.
checks.coca_loss(coca_loss)
### BEGIN HIDDEN TESTS
checks.coca_loss(coca_loss, seed=2026, hidden=True)
### END HIDDEN TESTS
