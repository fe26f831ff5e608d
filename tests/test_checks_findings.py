"""What a student found: wrong answers that passed, hints that misled, mistakes without hints.

Each wrong answer below is written as a student wrote it (not taken from the checks' own
lists of mistakes). Each must fail with the hint that names its mistake, and with no other
mistake's hint; each correct variant beside it must pass.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.blocks import TransformerBlock
from course_utils.checks import clip, contrastive, convolution, core, diffusion, vit
from course_utils.checks.failure import CheckFailure


def failure_of(check, implementation, **kwargs) -> str:
    with pytest.raises(CheckFailure) as failure:
        check(implementation, **kwargs)
    return str(failure.value)


def hints(check) -> set[str]:
    return {mistake.hint for mistake in check.mistakes}


def only_hint(message: str, check, expected: str) -> None:
    """``message`` carries the hint that contains ``expected``, and no other."""
    shown = [hint for hint in hints(check) if hint in message]
    assert len(shown) == 1 and expected in shown[0], (message, shown)


# --- 03 cosine_similarity: right values, NaN gradients at a zero vector ----------------------


def _broadcastable(a, b) -> None:
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError as error:
        raise ValueError(f"shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast") \
            from error


def _cosine_sqrt(a, b, dim=-1, eps=1e-8):
    _broadcastable(a, b)
    return (a * b).sum(dim) / ((a * a).sum(dim).sqrt().clamp_min(eps)
                               * (b * b).sum(dim).sqrt().clamp_min(eps))


def _cosine_normalised_first(a, b, dim=-1, eps=1e-8):
    _broadcastable(a, b)
    na = torch.linalg.vector_norm(a, dim=dim, keepdim=True).clamp_min(eps)
    nb = torch.linalg.vector_norm(b, dim=dim, keepdim=True).clamp_min(eps)
    return ((a / na) * (b / nb)).sum(dim)


def _cosine_squares_clamped(a, b, dim=-1, eps=1e-8):
    _broadcastable(a, b)
    return (a * b).sum(dim) / ((a * a).sum(dim).clamp_min(eps ** 2).sqrt()
                               * (b * b).sum(dim).clamp_min(eps ** 2).sqrt())


def test_cosine_similarity_with_nan_gradients_at_zero_fails_with_its_hint():
    message = failure_of(contrastive.cosine_similarity, _cosine_sqrt)
    assert "NaN" in message and "zero vectors" in message
    only_hint(message, contrastive.cosine_similarity, "gradient at a zero vector is NaN")


@pytest.mark.parametrize("right", [_cosine_normalised_first, _cosine_squares_clamped])
def test_cosine_similarity_written_other_right_ways_passes(right):
    contrastive.cosine_similarity(right)
    contrastive.cosine_similarity(right, seed=2026, hidden=True)


# --- 04 tokenize: <start> and <end> written in as numbers ------------------------------------


def _tokenize(start_end):
    def tokenize(captions, vocab, context_length):
        if isinstance(captions, str):
            captions = [captions]
        if context_length < 2:
            raise ValueError("context_length must be at least 2")
        start, end = start_end(vocab)
        tokens = torch.zeros(len(captions), context_length, dtype=torch.long)
        for row, caption in enumerate(captions):
            ids = [start, *vocab.encode(caption)[:context_length - 2], end]
            tokens[row, :len(ids)] = torch.tensor(ids)
        return tokens

    return tokenize


def test_tokenize_with_fixed_start_and_end_ids_fails_the_visible_test_with_its_hint():
    message = failure_of(clip.tokenize, _tokenize(lambda vocab: (1, 2)))  # visible tests only
    assert "largest ids" in message
    only_hint(message, clip.tokenize, "vocab.start_id, vocab.end_id")
    clip.tokenize(_tokenize(lambda vocab: (vocab.start_id, vocab.end_id)))


# --- 06 cosine_beta_schedule: computed in float32 ----------------------------------------------


def _schedule(dtype, python=False):
    def cosine_beta_schedule(num_steps, s=0.008):
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError("num_steps must be a positive int")
        if python:
            def f(u):
                return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
            return torch.tensor([min(1 - f((t + 1) / num_steps) / f(t / num_steps), 0.999)
                                 for t in range(num_steps)], dtype=torch.float32)
        u = torch.arange(num_steps + 1, dtype=dtype) / num_steps
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999).to(torch.float32)

    return cosine_beta_schedule


def test_a_cosine_schedule_computed_in_float32_fails_with_its_hint():
    message = failure_of(diffusion.cosine_beta_schedule, _schedule(torch.float32))
    only_hint(message, diffusion.cosine_beta_schedule, "computed in float32")


@pytest.mark.parametrize("right", [_schedule(torch.float64), _schedule(None, python=True)])
def test_a_cosine_schedule_in_float64_passes(right):
    diffusion.cosine_beta_schedule(right)
    diffusion.cosine_beta_schedule(right, seed=2026, hidden=True)


# --- 06 sample: the model called with float timesteps ----------------------------------------


def test_sample_calling_the_model_with_float_timesteps_fails_and_says_why():
    def sample(model, cond, betas, guidance_scale, generator=None):
        if betas.ndim != 1:
            raise ValueError("betas must be (T,)")
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        x = torch.randn((cond.shape[0], *model.image_shape), generator=generator,
                        device=cond.device, dtype=betas.dtype)
        for t in range(len(betas) - 1, -1, -1):
            steps = torch.full((cond.shape[0],), float(t), device=cond.device)  # float!
            eps_c, eps_u = model(x, steps, cond), model(x, steps, torch.zeros_like(cond))
            eps = eps_u + guidance_scale * (eps_c - eps_u)
            x = (x - betas[t] / (1 - abar[t]).sqrt() * eps) / alphas[t].sqrt()
        return x

    message = failure_of(diffusion.sample, sample)
    assert "integer timesteps" in message and "dtype=torch.long" in message


# --- hints that misled ------------------------------------------------------------------------


def test_recall_with_topk_is_told_about_ties_not_an_off_by_one():
    def recall_at_k(image_features, text_features, k):
        if image_features.ndim != 2 or image_features.shape != text_features.shape:
            raise ValueError("expected (N, D) and (N, D)")
        if int(k) != k or k < 1:
            raise ValueError("k must be a positive integer")
        similarity = image_features @ text_features.T  # (N, N)
        n, k = len(similarity), min(k, len(similarity))
        truth = torch.arange(n)
        found_text = (similarity.topk(k, dim=1).indices == truth[:, None]).any(1)
        found_image = (similarity.topk(k, dim=0).indices == truth[None, :]).any(0)
        return found_text.float().mean().item(), found_image.float().mean().item()

    message = failure_of(clip.recall_at_k, recall_at_k)
    assert "off by one" not in message
    only_hint(message, clip.recall_at_k, "topk breaks ties")


# --- mistakes the lessons warn about, now with hints ------------------------------------------


class _ReshapeOnlyAttention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        if dim % num_heads:
            raise ValueError("dim must be divisible by num_heads")
        self.num_heads = num_heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x, mask=None, return_weights=False):
        batch, tokens, dim = x.shape
        heads, d = self.num_heads, dim // self.num_heads
        q, k, v = (t.reshape(batch, heads, tokens, d) for t in self.qkv(x).chunk(3, -1))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        if mask is not None:
            mask = mask[:, None, None, :] if mask.ndim == 2 else mask
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        out = self.proj((weights @ v).reshape(batch, tokens, dim))
        return (out, weights) if return_weights else out


def test_attention_reshaped_without_the_transpose_gets_its_hint():
    message = failure_of(vit.MultiHeadSelfAttention, _ReshapeOnlyAttention)
    only_hint(message, vit.MultiHeadSelfAttention, "split and merged with reshapes alone")


class _TextTransformer2DMask(nn.Module):
    def __init__(self, vocab_size, context_length, dim, depth, num_heads):
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, context_length, dim) * 0.01)
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens):
        if tokens.ndim != 2 or tokens.shape[1] > self.context_length:
            raise ValueError("expected (B, L)")
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.pos_embedding[:, :length]
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        for block in self.blocks:
            x = block(x, causal)  # (L, L): read as a (B, L) padding mask
        x = self.norm(x)
        return x[torch.arange(len(x)), (tokens != 0).sum(1) - 1]


def test_a_2d_causal_mask_is_explained_in_the_students_terms():
    with pytest.raises(CheckFailure) as failure:
        clip.TextTransformer(_TextTransformer2DMask)
    message = str(failure.value)
    assert "needs the shape (1, 1, N, N)" in message and "key-padding mask" in message
    rendered = "\n".join(failure.value._render_traceback_())
    assert "in forward" in rendered
    assert "course_utils" not in rendered.replace("CheckFailure", "")


def _conv_bias_last_axis(x, weight, bias=None, stride=1, padding=0):
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError("expected x (B, C, H, W) and weight (O, C, KH, KW)")
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    patches = F.pad(x, (pw, pw, ph, ph)).unfold(2, weight.shape[2], sh).unfold(
        3, weight.shape[3], sw)  # (B, C, H', W', KH, KW)
    out = torch.einsum("bchwij,ocij->bohw", patches, weight)  # (B, O, H', W')
    return out if bias is None else out + bias  # lines bias up with W', not O


def test_a_bias_added_along_the_wrong_axis_gets_its_hint():
    message = failure_of(convolution.conv2d, _conv_bias_last_axis, seed=2026, hidden=True)
    only_hint(message, convolution.conv2d, "added along the wrong axis")


def test_a_shape_error_from_the_wrong_broadcast_gets_the_hint_too():
    case = next(c for c in convolution.conv2d.all_cases(0) if c.inputs.get("bias") is not None
                and c.raises is None and c.inputs["weight"].shape[0] != c.inputs["x"].shape[-1]
                - c.inputs["weight"].shape[-1] + 1 + 2 * _padding(c))
    with pytest.raises(CheckFailure) as failure:
        convolution.conv2d.run_student(_conv_bias_last_axis, case)
    assert "your code raised RuntimeError" in str(failure.value)
    assert "added along the wrong axis" in str(failure.value)


def _padding(case) -> int:
    padding = case.inputs.get("padding", 0)
    return padding if isinstance(padding, int) else padding[1]


# --- the result line of a graded cell --------------------------------------------------------


def test_a_quality_check_ends_with_its_graded_figure_threshold_and_verdict(capsys):
    check = core.QualityCheck(
        exercise="toy", cases=lambda generator, hidden: [core.Case("one", {})],
        run=lambda model, case: {"output": model()},
        score=lambda case, outputs: {"graded figure": 0.97, "context figure": 0.10},
        thresholds={"graded figure": 0.95})
    check(lambda: 1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "✓ graded figure: 97.0 % (at least 95.0 %): passed"
    assert lines.index("context figure: 10.0 %") < len(lines) - 1
