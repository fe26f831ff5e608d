"""The checks of notebook 07_captioning accept its solution, and other right answers written
differently, and reject wrong answers: each known mistake (handed in as a student would write
it) with its hint, and further wrong answers (dtype, device, detached outputs, forbidden
functions, bad shapes)."""

from __future__ import annotations

import math
import re
import socket

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import CoCaLoss as EarlyCoCaLoss  # a student's import before the check
from torch import nn
from torch.nn import MultiheadAttention as EarlyMultiheadAttention
from torch.nn.functional import cross_entropy as early_cross_entropy

import course_utils
import course_utils.blocks
from course_utils import data
from course_utils.checks import CheckFailure
from course_utils.checks import captioning as checks
from course_utils.checks.captioning.caption_decoder_block import CAUSAL_HINT, LEAK
from course_utils.checks.captioning.greedy_decode import CALLS, NO_GRAD, StubCaptioner
from tests.notebook_code import check_skips_offline, load_solution, rejects, solution_notebook
from tests.test_forbidden_routes import arguments_for, callable_of, routes

S = load_solution("07_captioning")
teacher_forcing, CrossAttention = S["teacher_forcing"], S["CrossAttention"]
CaptionDecoderBlock, caption_loss = S["CaptionDecoderBlock"], S["caption_loss"]
greedy_decode, coca_loss = S["greedy_decode"], S["coca_loss"]

NAMES = ["teacher_forcing", "CrossAttention", "CaptionDecoderBlock", "caption_loss",
         "greedy_decode", "coca_loss"]


def fragments(expected: str | tuple[str, ...]) -> tuple[str, ...]:
    return (expected,) if isinstance(expected, str) else expected


def hint_of(check, fragment: str) -> str:
    """The hint of ``check``'s known mistake that contains ``fragment`` (exactly one)."""
    (hint,) = {m.hint for m in check.mistakes if fragment in m.hint}
    return hint


# --- the solution passes, quietly; a blank says "not implemented" -------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_accepts_the_solution_visible_and_hidden_quietly(name, capfd):
    check = getattr(checks, name)
    check(S[name])
    check(S[name], seed=2026, hidden=True)
    captured = capfd.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"✓ {name}: ") and "hidden cases passed" in lines[1]


@pytest.mark.parametrize("name", NAMES)
def test_blank_exercise_says_not_implemented(name):
    def blank(*args, **kwargs):
        raise NotImplementedError()

    rejects(getattr(checks, name), blank, "not implemented yet")


@pytest.mark.parametrize("name", NAMES)
def test_rejects_each_of_its_own_mistakes_with_its_hint(name):
    check = getattr(checks, name)
    assert len(check.mistakes) >= 5
    for mistake in check.mistakes:  # the visible cases alone catch every one
        with pytest.raises(CheckFailure) as failure:
            check(mistake.implementation)
        assert mistake.hint in str(failure.value), (mistake.hint, str(failure.value))


def test_every_case_of_each_check_is_distinct_and_named():
    for name in NAMES:
        cases = getattr(checks, name).cases(torch.Generator().manual_seed(0), True)
        names = [case.name for case in cases]
        assert len(names) == len(set(names)), name
        assert any(case.raises is ValueError for case in cases), f"{name}: no bad-shape case"
        assert any("batch 1" in n or "one pair" in n for n in names), f"{name}: no batch 1"
        if name not in ("teacher_forcing", "greedy_decode"):  # token ids in, token ids out
            assert any(case.grad for case in cases), f"{name}: no gradient case"
            assert any(torch.is_tensor(v) and v.dtype == torch.float64
                       for case in cases for v in case.inputs.values()), f"{name}: no float64"


#: The forbidden entries of this notebook's checks, each reached through every route a student
#: could save it by (tests/test_forbidden_routes.py's routes, which lists the other notebooks).
FORBIDDEN = [(name, dotted) for name in NAMES
             for dotted in (*getattr(checks, name).forbidden.functions,
                            *getattr(checks, name).forbidden.attributes)]
#: Arguments that reach a forbidden function where the generic ones do not (or warn).
ARGUMENTS = {"torch.nn.functional.nll_loss": lambda: (torch.rand(2, 3).log(),
                                                      torch.tensor([0, 2])),
             "torch.nn.functional.cross_entropy": lambda: (torch.randn(2, 3),
                                                           torch.tensor([0, 2]))}


@pytest.mark.parametrize("name, dotted", FORBIDDEN, ids=[f"{n}-{d}" for n, d in FORBIDDEN])
def test_a_forbidden_function_is_refused_through_every_route(name, dotted):
    forbidden = getattr(checks, name).forbidden
    target = callable_of(dotted)
    by_code = dotted in forbidden.attributes
    args = ARGUMENTS[dotted]() if dotted in ARGUMENTS else arguments_for(target, by_code)
    assert args is not None, f"no call of {dotted} found: add arguments that reach it"
    for route, call in routes(target, args).items():
        with forbidden.active() as active:
            try:
                call()  # a student who catches the refusal is refused all the same
            except Exception:
                pass
        assert active.violations, f"{name}: {dotted} through a {route} was not refused"


# --- teacher_forcing ----------------------------------------------------------------------------


def tf_not_shifted(tokens, pad_id):
    _shape(tokens)
    inputs = tokens[:, :-1]
    return inputs, torch.where(inputs == pad_id, -100, inputs)


def tf_wrong_way(tokens, pad_id):
    _shape(tokens)
    targets = tokens[:, :-1].clone()
    targets[targets == pad_id] = -100
    return tokens[:, 1:], targets


def tf_padding_kept(tokens, pad_id):
    _shape(tokens)
    return tokens[:, :-1], tokens[:, 1:]


def tf_ignore_in_inputs(tokens, pad_id):
    _shape(tokens)
    marked = torch.where(tokens == pad_id, torch.full_like(tokens, -100), tokens)
    return marked[:, :-1], marked[:, 1:]


def tf_in_place(tokens, pad_id):
    _shape(tokens)
    tokens[tokens == pad_id] = -100
    return tokens[:, :-1], tokens[:, 1:]


def tf_in_place_after_a_clone(tokens, pad_id):  # right outputs, the caller's tokens changed
    _shape(tokens)
    inputs = tokens[:, :-1].clone()
    targets = tokens[:, 1:]
    targets[targets == pad_id] = -100
    return inputs, targets


def _shape(tokens):
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError("expected (B, L), L >= 2")


@pytest.mark.parametrize("wrong, fragment", [
    (tf_not_shifted, "the targets are not shifted"),
    (tf_wrong_way, "the shift goes the wrong way"),
    (tf_padding_kept, "the padding is left in the targets"),
    (tf_ignore_in_inputs, "the inputs got -100 too"),
    (tf_in_place, "was changed in place"),
])
def test_teacher_forcing_names_each_mistake(wrong, fragment):
    rejects(checks.teacher_forcing, wrong, hint_of(checks.teacher_forcing, fragment))


@pytest.mark.parametrize("wrong, expected", [
    (tf_in_place_after_a_clone, ("tokens after the call differs", "was changed in place")),
    (lambda t, p: tuple(x.int() for x in teacher_forcing(t, p)), "dtype torch.int32"),
    (lambda t, p: tuple(x.to("meta") for x in teacher_forcing(t, p)), "is on meta"),
    (lambda t, p: teacher_forcing(t, p)[1], "must return a tuple (inputs, targets); it "
                                            "returned a Tensor of shape (3, 8)"),
    (lambda t, p: teacher_forcing(t, p)[:1], "output[1] is missing"),
    (lambda t, p: tuple(x.tolist() for x in teacher_forcing(t, p)),
     "should be a torch.Tensor"),
    (lambda t, p: (t[..., :-1], t[..., 1:].masked_fill(t[..., 1:] == p, -100)),
     "expected it to raise ValueError"),
])
def test_teacher_forcing_rejects(wrong, expected):
    rejects(checks.teacher_forcing, wrong, *fragments(expected))


def test_teacher_forcing_hidden_cases_catch_a_hard_coded_pad_id():
    def pad_zero(tokens, pad_id):
        return teacher_forcing(tokens, 0)

    checks.teacher_forcing(pad_zero)  # the visible cases pad with 0
    with pytest.raises(CheckFailure, match=r"output\[1\] differs.*\n  case: pad_id 7"):
        checks.teacher_forcing(pad_zero, seed=2026, hidden=True)


def teacher_forcing_by_loops(tokens, pad_id):
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError("expected (B, L), L >= 2")
    inputs = torch.empty_like(tokens[:, 1:])
    targets = torch.empty_like(tokens[:, 1:])
    for b in range(tokens.shape[0]):
        for t in range(tokens.shape[1] - 1):
            inputs[b, t] = tokens[b, t]
            targets[b, t] = -100 if tokens[b, t + 1] == pad_id else tokens[b, t + 1]
    return inputs, targets


def test_teacher_forcing_accepts_other_right_answers():
    for right in (teacher_forcing_by_loops,
                  lambda t, p: (t.narrow(1, 0, t.shape[1] - 1) if t.ndim == 2 and t.shape[1] > 1
                                else _shape(t),
                                torch.where(t[:, 1:] != p, t[:, 1:], -100))):
        checks.teacher_forcing(right)
        checks.teacher_forcing(right, seed=2026, hidden=True)


# --- CrossAttention -------------------------------------------------------------------------------


def heads(t, h):  # (B, N, D) -> (B, h, N, d)
    return t.reshape(t.shape[0], t.shape[1], h, -1).transpose(1, 2)


class KeysFromText(CrossAttention):
    def forward(self, x, context, context_mask=None):
        return super().forward(x, x)


class QueriesFromContext(CrossAttention):
    def forward(self, x, context, context_mask=None):
        return super().forward(context, x)


class InvertedMask(CrossAttention):
    def forward(self, x, context, context_mask=None):
        return super().forward(x, context, None if context_mask is None else ~context_mask)


class EinsumAttention(CrossAttention):
    """Attention by hand with einsum; ``scale`` and ``split`` make two mistakes."""

    scale, split = True, "right"

    def forward(self, x, context, context_mask=None):
        if x.ndim != 3 or context.ndim != 3 or context.shape[-1] != x.shape[-1] or (
                context_mask is not None and context_mask.shape != context.shape[:2]):
            raise ValueError("shapes")
        b, t, dim = x.shape
        h = self.num_heads
        split = heads if self.split == "right" else \
            (lambda z, h: z.reshape(z.shape[0], h, z.shape[1], -1))
        q = split(self.q(x), h)
        k, v = (split(z, h) for z in self.kv(context).chunk(2, dim=-1))
        scores = torch.einsum("bhtd,bhmd->bhtm", q, k)
        if self.scale:
            scores = scores / math.sqrt(dim // h)
        if context_mask is not None:
            scores = scores.masked_fill(~context_mask[:, None, None, :], float("-inf"))
        out = torch.einsum("bhtm,bhmd->bhtd", scores.softmax(-1), v)
        merged = out.transpose(1, 2).reshape(b, t, dim) if self.split == "right" else \
            out.reshape(b, t, dim)
        return self.proj(merged)


class Unscaled(EinsumAttention):
    scale = False


class SplitByReshape(EinsumAttention):
    split = "wrong"


class HeadLoop(CrossAttention):
    """One head at a time, with matmul, and the heads concatenated."""

    def forward(self, x, context, context_mask=None):
        if x.ndim != 3 or context.ndim != 3 or context.shape[-1] != x.shape[-1] or (
                context_mask is not None and context_mask.shape != context.shape[:2]):
            raise ValueError("shapes")
        d = x.shape[-1] // self.num_heads
        q, (k, v) = self.q(x), self.kv(context).chunk(2, dim=-1)
        outs = []
        for i in range(self.num_heads):
            part = slice(i * d, (i + 1) * d)
            scores = q[..., part] @ k[..., part].transpose(1, 2) / d ** 0.5  # (B, T, M)
            if context_mask is not None:
                scores = scores.masked_fill(~context_mask[:, None, :], -math.inf)
            outs.append(scores.softmax(-1) @ v[..., part])
        return self.proj(torch.cat(outs, dim=-1))


class TorchCross(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), \
            nn.Linear(dim, dim)
        self.mha = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, x, context, context_mask=None):
        return self.mha(x, context, context)[0]


class EarlyAliasCross(TorchCross):
    def __init__(self, dim, num_heads):
        nn.Module.__init__(self)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), \
            nn.Linear(dim, dim)
        self.mha = EarlyMultiheadAttention(dim, num_heads, batch_first=True)


class FunctionalMHA(CrossAttention):
    def forward(self, x, context, context_mask=None):
        weight = torch.cat([self.q.weight, self.kv.weight])
        bias = torch.cat([self.q.bias, self.kv.bias])
        out, _ = F.multi_head_attention_forward(
            x.transpose(0, 1), context.transpose(0, 1), context.transpose(0, 1), self.dim,
            self.num_heads, weight, bias, None, None, False, 0.0, self.proj.weight,
            self.proj.bias, need_weights=False)
        return out.transpose(0, 1)


class BlocksAttention(CrossAttention):  # the course's self-attention block, misused
    def forward(self, x, context, context_mask=None):
        return course_utils.blocks.Attention(self.dim, self.num_heads).to(x)(x)


class SeparateKeysAndValues(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x, context, context_mask=None):
        return x


class NoValidation(CrossAttention):
    def forward(self, x, context, context_mask=None):
        b, t, dim = x.shape
        q = heads(self.q(x), self.num_heads)
        k, v = (heads(z, self.num_heads) for z in self.kv(context).chunk(2, dim=-1))
        mask = None if context_mask is None else context_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, t, dim))


class IgnoresMask(CrossAttention):
    def forward(self, x, context, context_mask=None):
        return super().forward(x, context)


def cross_returning(transform):
    class Wrong(CrossAttention):
        def forward(self, x, context, context_mask=None):
            return transform(super().forward(x, context, context_mask))

    return Wrong


@pytest.mark.parametrize("wrong, fragment", [
    (KeysFromText, "keys and values come from the text"),
    (QueriesFromContext, "the roles are swapped"),
    (InvertedMask, "the mask is inverted"),
    (Unscaled, "the scores are not scaled"),
    (SplitByReshape, "split with a reshape alone"),
])
def test_cross_attention_names_each_mistake(wrong, fragment):
    rejects(checks.CrossAttention, wrong, hint_of(checks.CrossAttention, fragment))


@pytest.mark.parametrize("wrong, expected", [
    (TorchCross, "it called torch.nn.MultiheadAttention"),
    (EarlyAliasCross, "it called torch.nn.MultiheadAttention"),
    (FunctionalMHA, "it called torch.nn.functional.multi_head_attention_forward"),
    (BlocksAttention, "course_utils.blocks.Attention"),
    (SeparateKeysAndValues, "has no parameter `kv.weight`"),
    (NoValidation, "your code raised RuntimeError"),  # right values; no ValueError
    (IgnoresMask, "wrong values"),
    (cross_returning(lambda out: out.detach()), "no gradient reached `x`"),
    (cross_returning(lambda out: out.double()), "dtype torch.float64"),
    (cross_returning(lambda out: out.to("meta")), "is on meta"),
])
def test_cross_attention_rejects(wrong, expected):
    rejects(checks.CrossAttention, wrong, expected)


@pytest.mark.parametrize("right", [EinsumAttention, HeadLoop])
def test_cross_attention_accepts_other_right_answers(right):
    checks.CrossAttention(right, seed=2026, hidden=True)  # the hidden cases: every kind


# --- CaptionDecoderBlock ------------------------------------------------------------------------


class HandMaskBlock(CaptionDecoderBlock):
    """Causal self-attention by hand: einsum and a mask; ``allowed`` makes the mask."""

    @staticmethod
    def allowed(tokens, device):
        return torch.ones(tokens, tokens, dtype=torch.bool, device=device).tril()

    residual = ("self", "cross", "mlp")

    def self_attention(self, x):
        b, t, dim = x.shape
        q, k, v = (heads(z, self.num_heads) for z in self.qkv(x).chunk(3, dim=-1))
        scores = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(dim // self.num_heads)
        allowed = self.allowed(t, x.device)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        out = torch.einsum("bhij,bhjd->bhid", scores.softmax(-1), v)
        return self.proj(out.transpose(1, 2).reshape(b, t, dim))

    def forward(self, x, context, context_mask=None):
        if x.ndim != 3:
            raise ValueError("x must be (B, T, D)")
        x = (x if "self" in self.residual else 0) + self.self_attention(self.norm1(x))
        x = (x if "cross" in self.residual else 0) + self.cross_attn(self.norm2(x), context,
                                                                      context_mask)
        return (x if "mlp" in self.residual else 0) + self.mlp(self.norm3(x))


class NoCausalMask(HandMaskBlock):
    @staticmethod
    def allowed(tokens, device):
        return None


class FutureMask(HandMaskBlock):
    @staticmethod
    def allowed(tokens, device):
        return torch.ones(tokens, tokens, dtype=torch.bool, device=device).triu()


class OneTokenAhead(HandMaskBlock):  # off by one: each position also sees the next
    @staticmethod
    def allowed(tokens, device):
        return torch.ones(tokens, tokens, dtype=torch.bool, device=device).tril(1)


class PostNormBlock(HandMaskBlock):
    def forward(self, x, context, context_mask=None):
        x = self.norm1(x + self.self_attention(x))
        x = self.norm2(x + self.cross_attn(x, context, context_mask))
        return self.norm3(x + self.mlp(x))


class CrossOnText(HandMaskBlock):
    def forward(self, x, context, context_mask=None):
        x = x + self.self_attention(self.norm1(x))
        h = self.norm2(x)
        x = x + self.cross_attn(h, h)
        return x + self.mlp(self.norm3(x))


class NoCrossResidual(HandMaskBlock):
    residual = ("self", "mlp")


class NoSelfResidual(HandMaskBlock):
    residual = ("cross", "mlp")


class NoMLPResidual(HandMaskBlock):
    residual = ("self", "cross")


class SDPAWithTrilMask(CaptionDecoderBlock):
    def forward(self, x, context, context_mask=None):
        if x.ndim != 3:
            raise ValueError("x must be (B, T, D)")
        b, t, dim = x.shape
        q, k, v = (heads(z, self.num_heads) for z in self.qkv(self.norm1(x)).chunk(3, -1))
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(out.transpose(1, 2).reshape(b, t, dim))
        x = x + self.cross_attn(self.norm2(x), context, context_mask)
        return x + self.mlp(self.norm3(x))


class TorchDecoderLayer(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.layer = nn.TransformerDecoderLayer(dim, num_heads, int(dim * mlp_ratio), 0.0,
                                                "gelu", batch_first=True, norm_first=True)

    def forward(self, x, context, context_mask=None):
        return self.layer(x, context, tgt_is_causal=True)


class TorchSelfAttentionBlock(CaptionDecoderBlock):
    def forward(self, x, context, context_mask=None):
        mha = nn.MultiheadAttention(self.dim, self.num_heads, batch_first=True).to(x)
        h = self.norm1(x)
        return x + mha(h, h, h)[0]


def block_returning(transform):
    class Wrong(CaptionDecoderBlock):
        def forward(self, x, context, context_mask=None):
            return transform(super().forward(x, context, context_mask))

    return Wrong


@pytest.mark.parametrize("wrong, fragment", [
    (NoCausalMask, "the causal mask is missing"),
    (FutureMask, "the causal mask is on the wrong side"),
    (PostNormBlock, "post-norm"),
    (CrossOnText, "keys and values from the text"),
    (NoSelfResidual, "around the self-attention is missing"),
    (NoCrossResidual, "around the cross-attention is missing"),
    (NoMLPResidual, "around the MLP is missing"),
])
def test_decoder_block_names_each_mistake(wrong, fragment):
    rejects(checks.CaptionDecoderBlock, wrong, hint_of(checks.CaptionDecoderBlock, fragment))


def test_decoder_block_says_the_causal_mask_for_any_leak_from_the_future():
    message = rejects(checks.CaptionDecoderBlock, OneTokenAhead, LEAK, CAUSAL_HINT,
                      "case: causality")
    assert "expected 0.0" in message


def test_the_causal_case_comes_first_and_the_solution_leaks_nothing():
    check = checks.CaptionDecoderBlock
    first = check.cases(torch.Generator().manual_seed(0), False)[0]
    assert first.name.startswith("causality")
    assert check.run(CaptionDecoderBlock, first)[LEAK] == 0.0
    assert check.run(NoCausalMask, first)[LEAK] > 0.1
    # and directly: a future token never changes an earlier output of the solution
    block, x, context = CaptionDecoderBlock(8, 2), torch.randn(2, 6, 8), torch.randn(2, 3, 8)
    for t in range(1, 6):
        changed = x.clone()
        changed[:, t:] = torch.randn(2, 6 - t, 8)
        assert torch.equal(block(x, context)[:, :t], block(changed, context)[:, :t])


@pytest.mark.parametrize("wrong, expected", [
    (TorchDecoderLayer, "torch.nn.TransformerDecoderLayer"),
    (TorchSelfAttentionBlock, "torch.nn.MultiheadAttention"),
    (block_returning(lambda out: out.detach()), "no gradient reached `x`"),
    (block_returning(lambda out: out.float()), "dtype torch.float32"),
])
def test_decoder_block_rejects(wrong, expected):
    rejects(checks.CaptionDecoderBlock, wrong, expected)


@pytest.mark.parametrize("right", [HandMaskBlock, SDPAWithTrilMask])
def test_decoder_block_accepts_other_right_answers(right):
    checks.CaptionDecoderBlock(right, seed=2026, hidden=True)  # the hidden cases: every kind


# --- caption_loss -----------------------------------------------------------------------------


def _loss_shapes(logits, targets):
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError("expected (B, T, V) and (B, T)")


def _picked(log_probs, targets):  # (B, T): each target's log-probability, -100 -> 0
    return log_probs.gather(-1, targets.clamp(min=0)[..., None])[..., 0]


def loss_counting_padding(logits, targets):
    _loss_shapes(logits, targets)
    real = targets != -100
    return (-_picked(logits.log_softmax(-1), targets) * real).mean()


def loss_summed(logits, targets):
    _loss_shapes(logits, targets)
    picked = _picked(logits.log_softmax(-1), targets)
    return -picked[targets != -100].sum()


def loss_per_caption(logits, targets):
    _loss_shapes(logits, targets)
    real = targets != -100
    losses = -_picked(logits.log_softmax(-1), targets) * real
    return torch.stack([losses[b].sum() / real[b].sum() for b in range(len(real))
                        if real[b].any()]).mean()


def loss_softmax_over_time(logits, targets):
    _loss_shapes(logits, targets)
    picked = _picked(F.log_softmax(logits, dim=1), targets)
    return -picked[targets != -100].mean()


def loss_log_of_softmax(logits, targets):
    _loss_shapes(logits, targets)
    picked = _picked(torch.log(torch.softmax(logits, dim=-1)), targets)
    return -picked[targets != -100].mean()


def loss_gathering_minus_100(logits, targets):
    _loss_shapes(logits, targets)
    picked = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -picked[targets != -100].mean()


@pytest.mark.parametrize("wrong, fragment", [
    (loss_counting_padding, "the -100 positions are counted"),
    (loss_summed, "the loss is summed"),
    (loss_per_caption, "a mean per caption"),
    (loss_softmax_over_time, "the softmax runs over the wrong axis"),
    (loss_log_of_softmax, "not computed stably"),
    (loss_gathering_minus_100, "targets of -100 cannot index"),
])
def test_caption_loss_names_each_mistake(wrong, fragment):
    rejects(checks.caption_loss, wrong, hint_of(checks.caption_loss, fragment))


def loss_by_nll(logits, targets):
    _loss_shapes(logits, targets)
    return F.nll_loss(logits.log_softmax(-1).transpose(1, 2), targets)


@pytest.mark.parametrize("wrong, expected", [
    (lambda lg, t: F.cross_entropy(lg.transpose(1, 2), t), "torch.nn.functional.cross_entropy"),
    (lambda lg, t: early_cross_entropy(lg.transpose(1, 2), t),
     "torch.nn.functional.cross_entropy"),
    (lambda lg, t: nn.CrossEntropyLoss()(lg.transpose(1, 2), t), "torch.nn.CrossEntropyLoss"),
    (loss_by_nll, "torch.nn.functional.nll_loss"),
    (lambda lg, t: torch.ops.aten.nll_loss_nd(lg.log_softmax(-1).transpose(1, 2), t, None, 1,
                                              -100), "which this exercise builds from scratch"),
    (lambda lg, t: caption_loss(lg, t).detach(), "no gradient reached `logits`"),
    (lambda lg, t: caption_loss(lg, t).item(), "should be a torch.Tensor"),
    (lambda lg, t: caption_loss(lg, t).double(), "dtype torch.float64"),
    (lambda lg, t: caption_loss(lg, t).to("meta"), "is on meta"),
    (lambda lg, t: caption_loss(lg, t).reshape(1), "has shape (1,)"),
    (lambda lg, t: -_picked(lg.log_softmax(-1), t)[t != -100].mean(),
     "your code raised RuntimeError"),  # no ValueError: gather fails on the bad shape
])
def test_caption_loss_rejects(wrong, expected):
    rejects(checks.caption_loss, wrong, expected)


def loss_by_logsumexp(logits, targets):
    _loss_shapes(logits, targets)
    real = targets != -100
    picked = logits.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    losses = logits.logsumexp(-1) - picked  # (B, T)
    return losses[real].mean()


def loss_by_one_hot(logits, targets):
    _loss_shapes(logits, targets)
    real = (targets != -100).to(logits.dtype)
    one_hot = F.one_hot(targets.clamp(min=0), logits.shape[-1]).to(logits.dtype)
    losses = -(one_hot * F.log_softmax(logits, dim=-1)).sum(-1)  # (B, T)
    return (losses * real).sum() / real.sum()


def loss_by_loops(logits, targets):
    _loss_shapes(logits, targets)
    terms = []
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            if targets[b, t] != -100:
                row = logits[b, t]
                terms.append(torch.logsumexp(row, 0) - row[targets[b, t]])
    return torch.stack(terms).mean()


@pytest.mark.parametrize("right", [loss_by_logsumexp, loss_by_one_hot, loss_by_loops])
def test_caption_loss_accepts_other_right_answers(right):
    checks.caption_loss(right)
    checks.caption_loss(right, seed=2026, hidden=True)


def test_caption_loss_forbidden_functions_work_again_after_the_check():
    with pytest.raises(CheckFailure):
        checks.caption_loss(lambda lg, t: early_cross_entropy(lg.transpose(1, 2), t))
    logits, targets = torch.randn(2, 3, 5), torch.tensor([[1, 2, -100], [0, -100, -100]])
    torch.testing.assert_close(caption_loss(logits, targets),
                               early_cross_entropy(logits.transpose(1, 2), targets))


# --- greedy_decode ------------------------------------------------------------------------------


def decoder(*, pad=True, stop="all", position=-1, keep_start=True, limit=0, no_grad=True,
            extra_call=False):
    """greedy_decode as a student might write it, with switches for the mistakes."""
    def decode(model, images, max_len, start_id, end_id):
        if max_len < 1:
            raise ValueError("max_len must be at least 1")
        tokens = torch.full((len(images), 1), start_id, device=images.device)
        ended = torch.zeros(len(images), dtype=torch.bool, device=images.device)
        with torch.set_grad_enabled(not no_grad):
            while tokens.shape[1] < max_len + limit:
                nxt = model(images, tokens)[:, position].argmax(-1)
                if pad:
                    nxt[ended] = 0
                ended = ended | (nxt == end_id)
                tokens = torch.cat([tokens, nxt[:, None]], dim=1)
                if (stop == "all" and ended.all()) or (stop == "any" and ended.any()):
                    break
            if extra_call:
                model(images, tokens)
        return tokens if keep_start else tokens[:, 1:]

    return decode


@pytest.mark.parametrize("wrong, fragment", [
    (decoder(pad=False, stop="never"), "the rows go on after their end token"),
    (decoder(stop="any"), "stops as soon as one row has ended"),
    (decoder(position=0), "argmax of the first position"),
    (decoder(keep_start=False), "the start token is missing"),
    (decoder(limit=1), "one step too many"),
    (decoder(no_grad=False), "builds autograd graphs"),
])
def test_greedy_decode_names_each_mistake(wrong, fragment):
    rejects(checks.greedy_decode, wrong, hint_of(checks.greedy_decode, fragment))


def decode_per_row(model, images, max_len, start_id, end_id):
    """One image at a time, with a Python list: correct, only slower (accepted)."""
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    rows = []
    with torch.no_grad():
        for image in images:
            row = [start_id]
            while len(row) < max_len and row[-1] != end_id:
                tokens = torch.tensor([row], device=images.device)
                row.append(int(model(image[None], tokens)[0, -1].argmax()))
            rows.append(row)
    width = max(len(r) for r in rows)
    return torch.tensor([r + [0] * (width - len(r)) for r in rows], device=images.device)


def decode_max_len_always(model, images, max_len, start_id, end_id):
    """Always max_len - 1 steps, padding each row after its end (trailing padding accepted)."""
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    tokens = torch.full((len(images), max_len), 0, dtype=torch.long, device=images.device)
    tokens[:, 0] = start_id
    alive = torch.ones(len(images), dtype=torch.bool, device=images.device)
    with torch.inference_mode():
        for t in range(1, max_len):
            nxt = model(images, tokens[:, :t])[:, t - 1].argmax(-1)
            tokens[:, t] = torch.where(alive, nxt, 0)
            alive &= nxt != end_id
    return tokens.clone()


@pytest.mark.parametrize("right", [decode_per_row, decode_max_len_always])
def test_greedy_decode_accepts_other_right_answers(right):
    checks.greedy_decode(right)
    checks.greedy_decode(right, seed=2026, hidden=True)


@pytest.mark.parametrize("wrong, expected", [
    (decoder(extra_call=True), (f"{CALLS} is 1, expected 0", "none once every row has ended")),
    (lambda *a: greedy_decode(*a).int(), "dtype torch.int32"),
    (lambda *a: greedy_decode(*a).float(), "dtype torch.float32"),
    (lambda *a: greedy_decode(*a).to("meta"), "is on meta"),
    (lambda *a: greedy_decode(*a).tolist(), "should be a torch.Tensor"),
    (lambda *a: greedy_decode(*a).masked_fill(greedy_decode(*a) == 0, 2),
     "the output differs at"),  # "pads" with the end token
    (lambda m, i, n, s, e: greedy_decode(m, i, max(n, 1), s, e),
     "expected it to raise ValueError"),
])
def test_greedy_decode_rejects(wrong, expected):
    rejects(checks.greedy_decode, wrong, *fragments(expected))


def test_greedy_decode_on_the_stub_reads_each_script_and_counts_calls():
    (case, *_) = checks.greedy_decode.cases(torch.Generator().manual_seed(0), False)
    outputs = checks.greedy_decode.run(greedy_decode, case)
    assert outputs[CALLS] == 0 and outputs[NO_GRAD] is True
    tokens, scripts = outputs["output"], case.inputs["scripts"]
    assert tokens.shape == (3, 6)  # the longest caption: start, 4 words, end
    for row, words in enumerate([2, 4, 3]):
        assert torch.equal(tokens[row, :words + 2], scripts[row, :words + 2])
        assert (tokens[row, words + 2:] == 0).all()
    model = StubCaptioner(case.inputs["images"], scripts, case.inputs["noise"])
    with pytest.raises(ValueError, match="not one of `images`"):
        model(torch.zeros(1, 3, 4, 4), torch.ones(1, 1, dtype=torch.long))
    decode_per_row(model, case.inputs["images"], 9, 1, 2)
    assert model.calls.tolist() == [3, 5, 4]  # one call per word and end token, per image


# --- coca_loss --------------------------------------------------------------------------------


def coca(*, swap=False, directions="both", temperature="multiply", combine="mean",
         padding=False):
    """coca_loss as a student might write it, with switches for the mistakes."""
    def loss(image_features, text_features, logits, targets, logit_scale, caption_weight,
             clip_weight):
        if image_features.shape != text_features.shape or logits.shape[0] != len(targets):
            raise ValueError("shapes")
        sims = image_features @ text_features.t()
        scores = sims / logit_scale if temperature == "divide" else logit_scale * sims
        labels = torch.arange(len(scores), device=scores.device)
        per_image, per_text = F.cross_entropy(scores, labels), F.cross_entropy(scores.t(), labels)
        contrastive = per_image if directions == "image" else per_image + per_text
        if directions == "both" and combine == "mean":
            contrastive = contrastive / 2
        if padding:
            caption_losses = -_picked(logits.log_softmax(-1), targets) * (targets != -100)
            captioning = caption_losses.mean()
        else:
            captioning = caption_loss(logits, targets)
        if swap:
            return caption_weight * contrastive, clip_weight * captioning
        return clip_weight * contrastive, caption_weight * captioning

    return loss


@pytest.mark.parametrize("wrong, fragment", [
    (coca(swap=True), "the two weights are swapped"),
    (coca(directions="image"), "in one direction only"),
    (coca(temperature="divide"), "the temperature is inverted"),
    (coca(combine="sum"), "directions of the contrastive loss are summed"),
    (coca(padding=True), "the captioning loss counts the -100 positions"),
])
def test_coca_loss_names_each_mistake(wrong, fragment):
    rejects(checks.coca_loss, wrong, hint_of(checks.coca_loss, fragment))


EARLY_COCA = EarlyCoCaLoss(caption_loss_weight=2.0, clip_loss_weight=1.0, pad_id=-100)


def coca_with_open_clip_contrastive(i, t, lg, y, scale, cw, kw):
    from open_clip.loss import ClipLoss

    return kw * ClipLoss()(i, t, scale), cw * caption_loss(lg, y)


@pytest.mark.parametrize("wrong, expected", [
    (lambda i, t, lg, y, s, cw, kw: __import__("open_clip").loss.CoCaLoss(cw, kw, pad_id=-100)(
        i, t, lg, y, s), "it called open_clip.loss.CoCaLoss"),
    (lambda i, t, lg, y, s, cw, kw: EarlyCoCaLoss(cw, kw, pad_id=-100)(i, t, lg, y, s),
     "it called open_clip.loss.CoCaLoss"),
    (lambda i, t, lg, y, s, cw, kw: EARLY_COCA(i, t, lg, y, s), "it called open_clip.loss"),
    (coca_with_open_clip_contrastive, "it called open_clip.loss.ClipLoss"),
    (lambda *a: tuple(v.detach() for v in coca_loss(*a)), "no gradient reached"),
    (lambda i, t, lg, y, s, cw, kw: coca_loss(i, t, lg, y, s.detach() if torch.is_tensor(s)
                                              else s, cw, kw), "no gradient reached `logit_scale`"),
    (lambda *a: coca_loss(*a)[::-1], "wrong values"),  # (captioning, contrastive)
    (lambda *a: coca_loss(*a)[0] + coca_loss(*a)[1], "expected a tuple of 2 values"),
    (lambda *a: tuple(v.to("meta") for v in coca_loss(*a)), "is on meta"),
])
def test_coca_loss_rejects(wrong, expected):
    rejects(checks.coca_loss, wrong, expected)


def coca_by_log_softmax(i, t, lg, y, scale, caption_weight, clip_weight):
    if i.ndim != 2 or i.shape != t.shape or len(lg) != len(i):
        raise ValueError("shapes")
    logits = torch.einsum("nd,md->nm", i, t) * scale
    contrastive = -(logits.log_softmax(1).diagonal().mean()
                    + logits.log_softmax(0).diagonal().mean()) / 2
    return clip_weight * contrastive, caption_weight * loss_by_logsumexp(lg, y)


def test_coca_loss_accepts_another_right_answer():
    checks.coca_loss(coca_by_log_softmax)
    checks.coca_loss(coca_by_log_softmax, seed=2026, hidden=True)


def test_coca_loss_forbidden_objects_work_again_after_the_check():
    with pytest.raises(CheckFailure):
        checks.coca_loss(lambda i, t, lg, y, s, cw, kw: EARLY_COCA(i, t, lg, y, s))
    i, t = F.normalize(torch.randn(3, 4), dim=-1), F.normalize(torch.randn(3, 4), dim=-1)
    logits, targets = torch.randn(3, 2, 5), torch.tensor([[1, -100], [2, 3], [-100, 0]])
    for mine, theirs in zip(coca_loss(i, t, logits, targets, 10.0, 2.0, 1.0),
                            EARLY_COCA(i, t, logits, targets, 10.0), strict=True):
        torch.testing.assert_close(mine, theirs)


# --- CUDA -------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("name", NAMES)
def test_runs_on_cuda_and_wants_cuda_outputs(name, capsys):
    check = getattr(checks, name)
    check(S[name], hidden=True)
    assert "on cpu and cuda" in capsys.readouterr().out
    if name in ("CrossAttention", "CaptionDecoderBlock"):
        wrong = (cross_returning if name == "CrossAttention" else block_returning)(
            lambda out: out.cpu())
    elif name in ("teacher_forcing", "coca_loss"):
        def wrong(*args):
            return tuple(v.cpu() for v in S[name](*args))
    else:
        def wrong(*args):
            return S[name](*args).cpu()
    with pytest.raises(CheckFailure, match=re.escape("is on cpu, expected cuda")):
        check(wrong)


@pytest.mark.cuda
def test_decoder_block_on_cuda_accepts_a_hand_mask_and_rejects_a_leak():
    checks.CaptionDecoderBlock(HandMaskBlock, hidden=True)
    rejects(checks.CaptionDecoderBlock, OneTokenAhead, CAUSAL_HINT)


# --- the trained captioner's quality: judged by the world ---------------------------------------


class Scripted(nn.Module):
    """A stand-in captioner that knows a caption for each of the check's own images.

    It proves the grading pipeline end to end without training: position t of a row predicts
    token t + 1 of its image's script, ``edit(i, caption)`` giving scene i's script.
    """

    def __init__(self, seed: int, hidden: bool, edit=lambda i, caption: caption):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        case = checks.caption_quality.cases(torch.Generator().manual_seed(seed), hidden)[0]
        vocab = data.build_vocabulary()
        self.vocab_size, self.table = len(vocab), {}
        for i, (image, references) in enumerate(zip(case.inputs["images"],
                                                    case.private["references"], strict=True)):
            words = vocab.encode(edit(i, references[0]))
            script = [vocab.start_id, *words, vocab.end_id]
            script += [vocab.pad_id] * (40 - len(script))
            self.table[image.numpy().tobytes()] = script

    def forward(self, images, tokens):
        scripts = torch.tensor([self.table[i.cpu().numpy().tobytes()] for i in images])
        following = scripts[:, 1:tokens.shape[1] + 1]  # (B, T)
        return nn.functional.one_hot(following, self.vocab_size).float().to(images.device)


def swap_colour(caption: str) -> str:
    words = caption.split()
    i = next(k for k, w in enumerate(words) if w in data.COLOURS)
    words[i] = next(c for c in data.COLOURS if c != words[i])
    return " ".join(words)


def drop_last_object(caption: str) -> str:
    return caption.rsplit(" and ", 1)[0] if " and " in caption else caption


def test_the_quality_check_passes_true_captions_and_reports_bleu(capsys):
    checks.caption_quality(Scripted(0, False))
    checks.caption_quality(Scripted(2026, True), seed=2026, hidden=True)
    out = capsys.readouterr().out
    assert "✓ captions entirely true and complete: 100.0 %" in out
    assert "BLEU-4: 100.0 %" in out  # the caption is one of the references


def test_the_quality_check_fails_false_captions():
    # every fourth caption with one colour changed: 75 % true
    with pytest.raises(CheckFailure, match=r"captions entirely true and complete: 75\.0 %, "
                                           r"needs at least 80\.0 %"):
        checks.caption_quality(Scripted(0, False, lambda i, c: swap_colour(c) if i % 4 == 0
                                        else c))


def test_the_quality_check_fails_captions_that_leave_objects_out(capsys):
    with pytest.raises(CheckFailure, match="captions entirely true and complete: "):
        checks.caption_quality(Scripted(0, False, lambda i, c: drop_last_object(c)))
    out = capsys.readouterr().out
    assert "captions entirely true: 100.0 %" in out  # true, but not complete


def test_the_quality_check_fails_an_untrained_captioner_with_the_hint():
    torch.manual_seed(0)
    untrained = S["Captioner"](len(data.build_vocabulary()))
    rejects(checks.caption_quality, untrained, "captions entirely true and complete: 0.0 %",
            "train the captioner with the notebook's settings")


@pytest.mark.parametrize("model, reason", [
    (lambda images, tokens: torch.zeros(len(images), 53), "cannot be scored"),
    (lambda images, tokens: torch.zeros(len(images), tokens.shape[1] + 1, 53),
     "cannot be scored"),
    (lambda images, tokens: 1 / 0, "your model raised ZeroDivisionError"),
])
def test_the_quality_check_fails_broken_models(model, reason):
    with pytest.raises(CheckFailure, match=reason):
        checks.caption_quality(model)


def test_the_scenes_are_held_out_with_one_to_three_objects():
    case = checks.caption_quality.cases(torch.Generator().manual_seed(0), False)[0]
    assert case.inputs["images"].shape == (500, 3, 32, 32)
    assert set(case.inputs) == {"images"}  # scenes and captions stay private
    assert {len(s) for s in case.private["scenes"]} == {1, 2, 3}
    assert all(len(set(r)) >= 2 for r in case.private["references"][:50])
    notebook = data.ShapesCaptions("test", size=500, seed=1, num_objects=(1, 3), hold_out=False)
    assert not torch.equal(case.inputs["images"][:10], notebook.images[:10])


def test_decode_captions_reads_up_to_the_end_token():
    vocab = data.build_vocabulary()
    rows = torch.tensor([[vocab.start_id, *vocab.encode("a red circle"), vocab.end_id, 0, 0],
                         [vocab.start_id, *vocab.encode("two blue squares a red red")]])
    assert checks.decode_captions(rows) == ["a red circle", "two blue squares a red red"]


# --- the optional pretrained section: skips offline, quickly -------------------------------------

SKIP_SENTENCE = "No network connection here, so the optional pretrained-CoCa section is skipped."


def _pretrained_cell() -> str:
    cells = [cell.source for cell in solution_notebook("07_captioning").cells
             if cell.cell_type == "code" and cell.source.startswith("# Optional: a pretrained")]
    assert len(cells) == 1
    return cells[0]


def test_pretrained_section_skips_with_one_sentence_when_offline(offline, capsys):
    check_skips_offline(_pretrained_cell(), SKIP_SENTENCE, "pretrained_coca", capsys)


class TinyCoCa(nn.Module):
    """Stands in for open_clip's CoCa: ``generate`` writes a fixed caption in its BPE ids."""

    def __init__(self, caption: str):
        super().__init__()
        import open_clip

        self.anchor = nn.Parameter(torch.zeros(1))
        self.ids = open_clip.get_tokenizer("coca_ViT-B-32")([caption])[0]  # (77,)

    def generate(self, pixels):
        assert pixels.shape == (1, 3, 224, 224)
        return self.ids[None].expand(len(pixels), -1)


def test_pretrained_section_runs_where_the_network_is_reachable(monkeypatch, capsys):
    """The Colab path, with the download replaced by a tiny stand-in model."""
    import importlib.util

    import open_clip

    class Connection:
        def close(self):
            pass

    find_spec = importlib.util.find_spec  # as if transformers were installed:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object()
                        if name == "transformers" else find_spec(name, *a))
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: Connection())
    monkeypatch.setattr(open_clip, "create_model_and_transforms", lambda *args, **kwargs: (
        TinyCoCa("a woman in a uniform"), None,
        lambda picture: torch.zeros(3, 224, 224) + torch.tensor(picture.size).sum()))
    scenes = data.ShapesCaptions("test", size=3, seed=1, num_objects=(1, 3), hold_out=False)
    namespace = {"course_utils": course_utils, "torch": torch, "data": data,
                 "device": torch.device("cpu"),
                 "caption_test": scenes, "shown": 1, "generated_texts": ["a", "b", "c"]}
    exec(compile(_pretrained_cell(), "<pretrained section>", "exec"), namespace)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["Grace Hopper: 'a woman in a uniform'",
                     "Shapes scene 1: 'a woman in a uniform'",
                     "our captioner, Shapes scene 1: 'b'"]


def test_pretrained_section_skips_without_transformers(monkeypatch, capsys):
    """open_clip's CoCa.generate needs Hugging Face's transformers: without it, one sentence."""
    import importlib.util

    class Connection:
        def close(self):
            pass

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else find_spec(name, *a))
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: Connection())
    namespace: dict = {"course_utils": course_utils}
    exec(compile(_pretrained_cell(), "<pretrained section>", "exec"), namespace)
    out = capsys.readouterr().out.strip()
    assert out.startswith("open_clip needs the transformers package") and "\n" not in out
    assert namespace["pretrained_coca"] is None
