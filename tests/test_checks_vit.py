"""The checks of notebook 02_vision_transformer: they accept the solution and reject wrong
answers (each common mistake with its hint, and generic wrong outputs)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import course_utils.blocks
from course_utils.checks import CheckFailure
from course_utils.checks import vit as checks
from tests.notebook_code import load_solution, rejects

S = load_solution("02_vision_transformer")
patchify, unpatchify = S["patchify"], S["unpatchify"]
attention = S["scaled_dot_product_attention"]
PatchEmbedding, MultiHeadSelfAttention = S["PatchEmbedding"], S["MultiHeadSelfAttention"]
TransformerBlock, VisionTransformer = S["TransformerBlock"], S["VisionTransformer"]

CHECKS = {
    "patchify": (checks.patchify, patchify),
    "unpatchify": (checks.unpatchify, unpatchify),
    "PatchEmbedding": (checks.PatchEmbedding, PatchEmbedding),
    "scaled_dot_product_attention": (checks.scaled_dot_product_attention, attention),
    "MultiHeadSelfAttention": (checks.MultiHeadSelfAttention, MultiHeadSelfAttention),
    "TransformerBlock": (checks.TransformerBlock, TransformerBlock),
    "VisionTransformer": (checks.VisionTransformer, VisionTransformer),
}



# --- the solution passes, quietly ------------------------------------------------------------


@pytest.mark.parametrize("name", CHECKS)
def test_accepts_the_solution_visible_and_hidden(name, capfd):
    check, solution = CHECKS[name]
    check(solution)
    check(solution, seed=2026, hidden=True)
    captured = capfd.readouterr()
    assert captured.err == ""
    assert "cases passed" in captured.out and "hidden cases passed" in captured.out


@pytest.mark.parametrize("name", CHECKS)
def test_blank_exercise_says_not_implemented(name):
    check, _ = CHECKS[name]

    def blank(*args, **kwargs):
        raise NotImplementedError()

    rejects(check, blank, "not implemented yet")


# --- patchify / unpatchify -----------------------------------------------------------------------


def patchify_pp_c(images, p):  # flattens each patch as (P, P, C)
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def patchify_columns_first(images, p):
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 4, 2, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def patchify_reshape_only(images, p):
    if images.shape[-1] % p or images.shape[-2] % p:
        raise ValueError("not divisible")
    return images.reshape(images.shape[0], -1, images.shape[1] * p * p)


def patchify_with_unfold(images, p):
    return F.unfold(images, p, stride=p).transpose(1, 2)


def patchify_without_checks(images, p):
    b, c, h, w = images.shape
    x = images[:, :, :h - h % p, :w - w % p]  # silently crops
    return patchify(x, p)


@pytest.mark.parametrize("wrong, expected", [
    (patchify_pp_c, "(P, P, C)"),
    (patchify_columns_first, "column-major"),
    (patchify_reshape_only, "single reshape"),
    (patchify_with_unfold, "it called torch.nn.functional.unfold"),
    (patchify_without_checks, "expected it to raise ValueError"),
    (lambda x, p: patchify(x, p).double(), "dtype torch.float64"),
    (lambda x, p: patchify(x, p).to("meta"), "is on meta"),
    (lambda x, p: patchify(x, p).detach(), "no gradient reached `images`"),
])
def test_patchify_rejects(wrong, expected):
    rejects(checks.patchify, wrong, expected)


def unpatchify_pp_c(patches, p, h, w):
    b, n, d = patches.shape
    c = d // (p * p)
    x = patches.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, h, w)


def unpatchify_without_checks(patches, p, h, w):
    b, n, d = patches.shape
    c = d // (p * p)
    x = patches.reshape(b, h // p, -1, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, -1)


@pytest.mark.parametrize("wrong, expected", [
    (unpatchify_pp_c, "(P, P, C)"),
    (lambda x, p, h, w: x.reshape(x.shape[0], -1, h, w), "single reshape"),
    (lambda x, p, h, w: F.fold(x.transpose(1, 2), (h, w), p, stride=p),
     "it called torch.nn.functional.fold"),
    (unpatchify_without_checks, "expected it to raise ValueError"),
    (lambda x, p, h, w: unpatchify(x, p, h, w) + 1e-7, "wrong values"),  # must be exact
])
def test_unpatchify_rejects(wrong, expected):
    rejects(checks.unpatchify, wrong, expected)


def test_unpatchify_inverts_patchify_exactly():
    x = torch.randn(2, 3, 12, 8)
    assert torch.equal(unpatchify(patchify(x, 4), 4, 12, 8), x)


# --- PatchEmbedding --------------------------------------------------------------------------


class CLSLast(PatchEmbedding):
    def forward(self, images):
        x = self.proj(patchify(images, self.patch_size))
        return torch.cat([x, self.cls_token.expand(len(x), -1, -1)], 1) + self.pos_embedding


class PositionsOnPatchesOnly(PatchEmbedding):
    def forward(self, images):
        x = self.proj(patchify(images, self.patch_size)) + self.pos_embedding[:, 1:]
        return torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1)


class ConvEmbedding(PatchEmbedding):
    def forward(self, images):
        kernel = self.proj.weight.reshape(self.proj.out_features, -1, self.patch_size,
                                          self.patch_size)
        x = F.conv2d(images, kernel, self.proj.bias, stride=self.patch_size)
        x = x.flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embedding


class NoSizeCheck(PatchEmbedding):
    def forward(self, images):
        x = self.proj(patchify(images, self.patch_size))
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1)
        return x + self.pos_embedding[:, :x.shape[1]]


class RenamedParameters(PatchEmbedding):  # `proj` called `linear`
    def __init__(self, image_size, patch_size, in_channels, dim):
        super().__init__(image_size, patch_size, in_channels, dim)
        self.linear = self.proj
        del self.proj

    def forward(self, images):
        x = self.linear(patchify(images, self.patch_size))
        return torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embedding


class BufferPositions(PatchEmbedding):  # position embedding not learned (a buffer)
    def __init__(self, image_size, patch_size, in_channels, dim):
        super().__init__(image_size, patch_size, in_channels, dim)
        del self.pos_embedding
        self.register_buffer("pos_embedding", torch.zeros(1, 1 + (image_size // patch_size) ** 2,
                                                           dim))


@pytest.mark.parametrize("wrong, expected", [
    (CLSLast, "[CLS] is appended after the patches"),
    (PositionsOnPatchesOnly, "added to the patch tokens only"),
    (ConvEmbedding, "it called torch.nn.functional.conv2d"),
    (NoSizeCheck, "expected it to raise ValueError"),
    (RenamedParameters, "has no parameter `proj.weight`"),
    (BufferPositions, "has no parameter `pos_embedding`"),
    (lambda **a: course_utils.blocks.PatchEmbedding(**a), "course_utils.blocks.PatchEmbedding"),
])
def test_patch_embedding_rejects(wrong, expected):
    rejects(checks.PatchEmbedding, wrong, expected)


def test_patch_embedding_rejects_a_wrong_parameter_shape():
    class FlatCLS(PatchEmbedding):
        def __init__(self, image_size, patch_size, in_channels, dim):
            super().__init__(image_size, patch_size, in_channels, dim)
            self.cls_token = nn.Parameter(torch.zeros(1, dim))

    rejects(checks.PatchEmbedding, FlatCLS, "cls_token has shape (1, 6), expected (1, 1, 6)")


# --- scaled_dot_product_attention ----------------------------------------------------------------


def attention_with(scale=None, softmax_dim=-1, fill=-math.inf, invert=False, detach=False):
    def wrong(q, k, v, mask=None):
        d = q.shape[-1]
        if d != k.shape[-1] or k.shape[-2] != v.shape[-2]:
            raise ValueError("shapes")
        scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(d) if scale is None else scale(d))
        if mask is not None:
            scores = scores.masked_fill(mask if invert else ~mask, fill)
        weights = scores.softmax(dim=softmax_dim)
        out = weights @ v
        return (out.detach(), weights.detach()) if detach else (out, weights)

    return wrong


@pytest.mark.parametrize("wrong, expected", [
    (attention_with(scale=lambda d: 1.0), "the scores are not scaled"),
    (attention_with(scale=lambda d: 1 / d), "divided by d; divide by √d"),
    (attention_with(softmax_dim=-2), "the softmax runs over the queries"),
    (attention_with(invert=True), "the mask is inverted"),
    (attention_with(fill=0.0), "masked scores are set to 0"),
    (attention_with(detach=True), "no gradient reached `q`"),
    (lambda q, k, v, mask=None: (attention(q, k, v, mask)[0],),
     "output[1] is missing"),
    (lambda q, k, v, mask=None: attention(q, k, v, mask)[0], "expected a tuple of 2 values"),
    (lambda q, k, v, mask=None: (F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                                 attention(q, k, v, mask)[1]),
     "it called torch.nn.functional.scaled_dot_product_attention"),
    (lambda q, k, v, mask=None: (torch.ops.aten.scaled_dot_product_attention(q, k, v, mask),
                                 attention(q, k, v, mask)[1]),
     "which this exercise builds from scratch"),
])
def test_attention_rejects(wrong, expected):
    rejects(checks.scaled_dot_product_attention, wrong, expected)


def test_attention_refuses_a_swallowed_forbidden_call():
    def sneaky(q, k, v, mask=None):
        try:
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        except Exception:
            pass
        return attention(q, k, v, mask)

    rejects(checks.scaled_dot_product_attention, sneaky, "it called")


# --- MultiHeadSelfAttention ----------------------------------------------------------------------


class SplitWithoutTranspose(MultiHeadSelfAttention):
    def forward(self, x, mask=None, return_weights=False):
        b, n, d = x.shape
        q, k, v = (t.reshape(b, self.num_heads, n, d // self.num_heads)
                   for t in self.qkv(x).chunk(3, dim=-1))
        if mask is not None and mask.ndim == 2:
            mask = mask[:, None, None, :]
        out, weights = attention(q, k, v, mask)
        out = self.proj(out.transpose(1, 2).reshape(b, n, d))
        return (out, weights) if return_weights else out


class MergeWithoutTranspose(MultiHeadSelfAttention):
    def forward(self, x, mask=None, return_weights=False):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        if mask is not None and mask.ndim == 2:
            mask = mask[:, None, None, :]
        out, weights = attention(q, k, v, mask)
        out = self.proj(out.reshape(b, n, d))
        return (out, weights) if return_weights else out


class InvertedPadding(MultiHeadSelfAttention):
    def forward(self, x, mask=None, return_weights=False):
        return super().forward(x, None if mask is None else ~mask, return_weights)


class TorchAttention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, x, mask=None, return_weights=False):
        return self.mha(x, x, x)[0]


class FunctionalTorchAttention(MultiHeadSelfAttention):
    def forward(self, x, mask=None, return_weights=False):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class LibraryAttention(course_utils.blocks.Attention):  # the course's own reference block
    def forward(self, x, mask=None, return_weights=False):
        return super().forward(x, mask, return_weights)


class NoWeights(MultiHeadSelfAttention):
    def forward(self, x, mask=None, return_weights=False):
        return super().forward(x, mask)


@pytest.mark.parametrize("wrong, expected", [
    (SplitWithoutTranspose, "split without the transpose"),
    (MergeWithoutTranspose, "merged without the transpose"),
    (InvertedPadding, "the padding mask is inverted"),
    (TorchAttention, "torch.nn.MultiheadAttention"),
    (FunctionalTorchAttention, "scaled_dot_product_attention"),
    (LibraryAttention, "which this exercise builds from scratch"),
    (NoWeights, "expected a tuple of 2 values"),
])
def test_multi_head_attention_rejects(wrong, expected):
    rejects(checks.MultiHeadSelfAttention, wrong, expected)


def test_multi_head_attention_names_a_missing_parameter():
    class Separate(nn.Module):
        def __init__(self, dim, num_heads):
            super().__init__()
            self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
            self.proj = nn.Linear(dim, dim)

        def forward(self, x, mask=None, return_weights=False):
            return x

    message = rejects(checks.MultiHeadSelfAttention, Separate, "has no parameter `qkv.weight`")
    assert "your code raised WrongParameters" in message


# --- TransformerBlock --------------------------------------------------------------------------


class PostNorm(TransformerBlock):
    def forward(self, x, mask=None, return_weights=False):
        attended, weights = self.attn(x, mask, return_weights=True)
        x = self.norm1(x + attended)
        x = self.norm2(x + self.mlp(x))
        return (x, weights) if return_weights else x


class NoResidual(TransformerBlock):
    def forward(self, x, mask=None, return_weights=False):
        x, weights = self.attn(self.norm1(x), mask, return_weights=True)
        x = self.mlp(self.norm2(x))
        return (x, weights) if return_weights else x


class ReLUBlock(TransformerBlock):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__(dim, num_heads, mlp_ratio)
        self.mlp[1] = nn.ReLU()


class SwappedNorms(TransformerBlock):
    def forward(self, x, mask=None, return_weights=False):
        attended, weights = self.attn(self.norm2(x), mask, return_weights=True)
        x = x + attended
        x = x + self.mlp(self.norm1(x))
        return (x, weights) if return_weights else x


class IgnoresMask(TransformerBlock):
    def forward(self, x, mask=None, return_weights=False):
        return super().forward(x, None, return_weights)


class LibraryBlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.inner = course_utils.blocks.TransformerBlock(dim, num_heads, mlp_ratio)

    def forward(self, x, mask=None, return_weights=False):
        return self.inner(x, mask, return_weights)


class TorchEncoderLayer(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(dim, num_heads, int(dim * mlp_ratio), 0.0,
                                                "gelu", batch_first=True, norm_first=True)

    def forward(self, x, mask=None, return_weights=False):
        return self.layer(x)


@pytest.mark.parametrize("wrong, expected", [
    (PostNorm, "post-norm"),
    (NoResidual, "residual connections are missing"),
    (ReLUBlock, "uses ReLU"),
    (SwappedNorms, "wrong values"),
    (IgnoresMask, "wrong values"),
    (LibraryBlock, "course_utils.blocks.TransformerBlock"),
    (TorchEncoderLayer, "torch.nn.TransformerEncoderLayer"),
])
def test_transformer_block_rejects(wrong, expected):
    rejects(checks.TransformerBlock, wrong, expected)


# --- VisionTransformer: architecture --------------------------------------------------------------


class MeanPooling(VisionTransformer):
    def forward(self, images):
        x = self.patch_embed(images)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 1:].mean(dim=1))


class NoFinalNorm(VisionTransformer):
    def forward(self, images):
        x = self.patch_embed(images)
        for block in self.blocks:
            x = block(x)
        return self.head(x[:, 0])


class LastToken(VisionTransformer):
    def forward(self, images):
        x = self.patch_embed(images)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, -1])


class SharedBlock(VisionTransformer):  # one block applied depth times
    def forward(self, images):
        x = self.patch_embed(images)
        for _ in self.blocks:
            x = self.blocks[0](x)
        return self.head(self.norm(x)[:, 0])


@pytest.mark.parametrize("wrong, expected", [
    (MeanPooling, "mean of the patch tokens"),
    (NoFinalNorm, "final LayerNorm"),
    (LastToken, "classifies the last token"),
    (SharedBlock, "wrong values"),
    (lambda **a: course_utils.blocks.VisionTransformer(**a),
     "course_utils.blocks.VisionTransformer"),
])
def test_vit_architecture_rejects(wrong, expected):
    rejects(checks.VisionTransformer, wrong, expected)


def test_vit_architecture_is_the_old_name_of_the_architecture_check():
    assert checks.vit_architecture is checks.VisionTransformer


def test_the_architecture_check_given_a_trained_model_says_to_pass_the_class():
    # notebooks before the rename called checks.VisionTransformer(model) on the trained model
    model = course_utils.blocks.VisionTransformer(image_size=8, patch_size=4, in_channels=3,
                                                  dim=8, depth=1, num_heads=2, num_classes=5)
    with pytest.raises(CheckFailure, match=r"pass the class itself.*quality check"):
        checks.VisionTransformer(model)


# --- vit_quality: the quality check of a trained model -----------------------------------------


def held_out_labels(seed: int, hidden: bool) -> dict[bytes, int]:
    """The answers to the check's own held-out images, for a model that knows them by heart."""
    generator = torch.Generator().manual_seed(seed)
    (case,) = checks.vit_quality.cases(generator, hidden)
    return {image.numpy().tobytes(): int(label)
            for image, label in zip(case.inputs["images"], case.private["labels"], strict=True)}


class Memorised(nn.Module):
    """Stands in for a trained ViT: right on every image it was shown, or on a fraction."""

    def __init__(self, answers: dict[bytes, int], fraction: float = 1.0):
        super().__init__()
        self.answers, self.fraction = answers, fraction
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, images):
        labels = [self.answers.get(image.cpu().numpy().tobytes(), 0) for image in images]
        labels = [y if (i * 7919) % 100 < 100 * self.fraction else (y + 1) % 15
                  for i, y in enumerate(labels)]
        return F.one_hot(torch.tensor(labels), 15).float().to(images.device) + 0 * self.dummy


def test_quality_check_accepts_a_model_that_is_right_on_its_images(capfd):
    checks.vit_quality(Memorised(held_out_labels(0, False)))
    checks.vit_quality(Memorised(held_out_labels(2026, True)), seed=2026, hidden=True)
    captured = capfd.readouterr()
    assert captured.err == ""
    assert "✓ ViT held-out accuracy: 100.0 % (at least 95.0 %): passed" in captured.out


def test_quality_check_makes_new_images_for_the_hidden_test():
    visible, hidden = held_out_labels(0, False), held_out_labels(2026, True)
    assert len(hidden) > len(visible) and not set(visible) & set(hidden)
    with pytest.raises(CheckFailure, match="needs at least 95.0 %"):
        checks.vit_quality(Memorised(visible), seed=2026, hidden=True)


@pytest.mark.parametrize("model, expected", [
    (lambda: Memorised(held_out_labels(0, False), fraction=0.9), "needs at least 95.0 %"),
    (lambda: (lambda images: torch.zeros(len(images), 15)), "needs at least 95.0 %"),
    (lambda: (lambda images: torch.zeros(len(images), 12)), "cannot be scored"),
    (lambda: (lambda images: images.mean(dim=(1, 2, 3)).tolist()), "expected logits"),
    (lambda: course_utils.blocks.VisionTransformer(32, 4, 3, 16, 1, 2, 15),
     "called course_utils.blocks.VisionTransformer"),
    (lambda: VisionTransformer(32, 4, 3, 16, 1, 2, 15), "needs at least 95.0 %"),  # untrained
])
def test_quality_check_fails_a_bad_model(model, expected):
    rejects(checks.vit_quality, model(), expected)


def test_quality_check_fails_a_model_that_swallows_a_forbidden_call():
    answers = held_out_labels(0, False)

    class Sneaky(Memorised):
        def forward(self, images):
            try:
                q = torch.zeros(1, 2, 4)
                F.scaled_dot_product_attention(q, q, q)
            except Exception:
                pass
            return super().forward(images)

    rejects(checks.vit_quality, Sneaky(answers), "the model called")


def test_quality_check_keeps_the_answers_private():
    seen = []

    def spy(images):
        seen.append(images)
        return torch.zeros(len(images), 15)

    with pytest.raises(CheckFailure):
        checks.vit_quality(spy)
    assert seen and all(type(s) is torch.Tensor and s.shape[1:] == (3, 32, 32) for s in seen)


# --- CUDA ---------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_a_cuda_input_needs_a_cuda_output():
    rejects(checks.patchify, lambda x, p: patchify(x, p).cpu(), "is on cpu, expected cuda")
    rejects(checks.scaled_dot_product_attention,
            lambda q, k, v, mask=None: tuple(t.cpu() for t in attention(q, k, v, mask)),
            "is on cpu, expected cuda")


@pytest.mark.cuda
def test_quality_check_runs_a_model_on_the_gpu():
    model = Memorised(held_out_labels(0, False)).cuda()
    checks.vit_quality(model)
