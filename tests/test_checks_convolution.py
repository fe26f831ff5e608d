"""The checks of notebook 01_convolution_pooling: they accept the solution and reject wrong answers.

The wrong answers are written the way a student would write them (from the solution's own
functions, without the forbidden ones), and each must be rejected with the hint that names
its mistake.
"""

from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks import convolution as checks
from course_utils.checks.convolution.conv2d import _unpermuted_patches
from course_utils.checks.convolution.conv_output_size import _reference_conv_output_size
from course_utils.checks.convolution.sobel_edges import _reference_sobel_edges
from course_utils.checks.forbid import resolve
from course_utils.data import ShapesClassification
from tests.notebook_code import load_solution, rejects

with contextlib.redirect_stdout(io.StringIO()):  # the set-up cell prints its versions
    SOLUTION = load_solution("01_convolution_pooling")
conv_output_size = SOLUTION["conv_output_size"]
conv2d = SOLUTION["conv2d"]
conv2d_naive = SOLUTION["conv2d_naive"]
max_pool2d = SOLUTION["max_pool2d"]
avg_pool2d = SOLUTION["avg_pool2d"]
sobel_edges = SOLUTION["sobel_edges"]
SmallCNN = SOLUTION["SmallCNN"]
pair = SOLUTION["pair"]

FUNCTION_CHECKS = {
    "conv_output_size": (checks.conv_output_size, conv_output_size),
    "conv2d_naive": (checks.conv2d_naive, conv2d_naive),
    "conv2d": (checks.conv2d, conv2d),
    "max_pool2d": (checks.max_pool2d, max_pool2d),
    "avg_pool2d": (checks.avg_pool2d, avg_pool2d),
    "sobel_edges": (checks.sobel_edges, sobel_edges),
}



# --- the solution passes, quietly -------------------------------------------------------------


@pytest.mark.parametrize("name", FUNCTION_CHECKS)
def test_accepts_the_solution_visible_and_hidden(name, capfd):
    check, solution = FUNCTION_CHECKS[name]
    check(solution)
    check(solution, seed=2026, hidden=True)
    captured = capfd.readouterr()
    assert captured.err == ""
    assert f"✓ {name}: " in captured.out and "hidden cases passed" in captured.out


def test_every_check_has_cases_that_must_raise_and_cases_with_gradients():
    generator = torch.Generator().manual_seed(0)
    for name, (check, _) in FUNCTION_CHECKS.items():
        for hidden in (False, True):
            cases = check.cases(generator, hidden)
            assert any(case.raises is ValueError for case in cases), name
            if name != "conv_output_size":
                assert any(case.grad for case in cases), name
                assert any(t.dtype == torch.float64 for case in cases
                           for t in case.inputs.values() if torch.is_tensor(t)), name


def test_hidden_cases_differ_from_visible_ones():
    for check, _ in FUNCTION_CHECKS.values():
        visible = [c.name for c in check.cases(torch.Generator().manual_seed(0), False)]
        hidden = [c.name for c in check.cases(torch.Generator().manual_seed(2026), True)]
        assert len(hidden) > len(visible)


def test_the_references_agree_with_torch():
    for size in range(1, 12):
        for kernel in range(1, 6):
            for stride in range(1, 4):
                for padding in range(3):
                    if kernel > size + 2 * padding:
                        continue
                    shape = F.conv2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, kernel, 1),
                                     stride=(stride, 1), padding=(padding, 0)).shape
                    expected = _reference_conv_output_size(size, kernel, stride, padding)
                    assert shape[2] == expected
    step = torch.zeros(1, 1, 5, 7)
    step[..., 3:] = 1.0
    assert _reference_sobel_edges(step)[0, 0, 2].tolist() == [0, 0, 4, 4, 0, 0, 0]


# --- conv_output_size -------------------------------------------------------------------------

SIZE_MISTAKES = {
    "no + 1": (lambda n, k, s=1, p=0: (n + 2 * p - k) // s, "the + 1 counts the first one"),
    "padding once": (lambda n, k, s=1, p=0: (n + p - k) // s + 1, "on *both* sides"),
    "stride ignored": (lambda n, k, s=1, p=0: n + 2 * p - k + 1, "the stride is ignored"),
    "true division": (lambda n, k, s=1, p=0: (n + 2 * p - k) / s + 1, "floor division //"),
    "rounded up": (lambda n, k, s=1, p=0: math.ceil((n + 2 * p - k) / s) + 1, "rounded up"),
    # (H + 2p − K + 1) // s is either right or one short: the "one short" hint covers it
    "+ 1 inside": (lambda n, k, s=1, p=0: (n + 2 * p - k + 1) // s, "one short"),
}


@pytest.mark.parametrize("mistake", SIZE_MISTAKES)
def test_conv_output_size_names_each_mistake(mistake):
    implementation, hint = SIZE_MISTAKES[mistake]
    rejects(checks.conv_output_size, implementation, "Hint:", hint)


def test_conv_output_size_rejects_other_wrong_answers():
    def no_validation(size, kernel_size, stride=1, padding=0):
        return (size + 2 * padding - kernel_size) // stride + 1

    rejects(checks.conv_output_size, no_validation, "expected it to raise ValueError")
    rejects(checks.conv_output_size, lambda *args: torch.tensor(conv_output_size(*args)),
            "should be a Python int")
    rejects(checks.conv_output_size, lambda *args: float(conv_output_size(*args)),
            "should be an int")


# --- conv2d and conv2d_naive ----------------------------------------------------------------


def student_conv(change):
    """A wrong conv2d written from the solution: ``change(x, w, b, (sh, sw), (ph, pw))``."""

    def implementation(x, weight, bias=None, stride=1, padding=0):
        return change(x, weight, bias, pair(stride), pair(padding))

    return implementation


def im2col_with(x, weight, bias, stride, padding, patch_order, weight_rows, output):
    """An im2col convolution whose flattening orders are chosen by the caller."""
    (sh, sw), (ph, pw) = stride, padding
    patches = F.pad(x, (pw, pw, ph, ph)).unfold(2, weight.shape[2], sh).unfold(
        3, weight.shape[3], sw)  # (B, C, H', W', KH, KW)
    batch, _, height, width = patches.shape[:4]
    rows = patch_order(patches).reshape(batch, height * width, -1)  # (B, L, C·KH·KW)
    out = rows @ weight_rows(weight).T  # (B, L, C_out)
    if bias is not None:
        out = out + bias
    return output(out, batch, height, width)


def right_output(out, batch, height, width):
    return out.transpose(1, 2).reshape(batch, -1, height, width)


CONV_MISTAKES = {
    "flipped kernel": (
        lambda x, w, b, s, p: conv2d(x, w.flip(-2, -1), b, s, p), "the kernel is flipped"),
    "padding at the end only": (
        lambda x, w, b, s, p: conv2d(F.pad(x, (0, 2 * p[1], 0, 2 * p[0])), w, b, s),
        "padding is on one side only"),
    "padding at the start only": (
        lambda x, w, b, s, p: conv2d(F.pad(x, (p[1], 0, p[0], 0)), w, b, s),
        "padding is on one side only"),
    "F.pad(x, (p, p))": (
        lambda x, w, b, s, p: conv2d(F.pad(x, (p[1], p[1])), w, b, s),
        "only the width is padded"),
    "no bias": (lambda x, w, b, s, p: conv2d(x, w, None, s, p), "the bias is missing"),
    "stride ignored": (lambda x, w, b, s, p: conv2d(x, w, b, 1, p), "the stride is ignored"),
    "one output row and column short": (
        lambda x, w, b, s, p: conv2d(x, w, b, s, p)[..., :-1, :-1], "one row and one column"),
    "pairs read (width, height)": (
        lambda x, w, b, s, p: conv2d(x, w, b, s[::-1], p[::-1]), "(height, width)"),
}
IM2COL_MISTAKES = {
    "patches flattened (KH, KW, C)": (
        lambda x, w, b, s, p: im2col_with(x, w, b, s, p,
                                          lambda t: t.permute(0, 2, 3, 4, 5, 1),
                                          lambda w: w.reshape(w.shape[0], -1), right_output),
        "mixed the channel and kernel-position order"),
    "weights flattened (KH, KW, C)": (
        lambda x, w, b, s, p: im2col_with(x, w, b, s, p,
                                          lambda t: t.permute(0, 2, 3, 1, 4, 5),
                                          lambda w: w.permute(0, 2, 3, 1).reshape(w.shape[0], -1),
                                          right_output),
        "mixed the channel and kernel-position order"),
    "patches reshaped without a permute": (
        lambda x, w, b, s, p: _unpermuted_patches(x, w, b, s, p),
        "reshaped without a permute"),
    "output reshaped without a transpose": (
        lambda x, w, b, s, p: im2col_with(
            x, w, b, s, p, lambda t: t.permute(0, 2, 3, 1, 4, 5),
            lambda w: w.reshape(w.shape[0], -1),
            lambda out, batch, height, width: out.reshape(batch, -1, height, width)),
        "without moving the channel axis"),
}


@pytest.mark.parametrize("mistake", CONV_MISTAKES)
@pytest.mark.parametrize("name", ["conv2d", "conv2d_naive"])
def test_conv_names_each_mistake(name, mistake):
    change, hint = CONV_MISTAKES[mistake]
    rejects(FUNCTION_CHECKS[name][0], student_conv(change), "Hint:", hint)


@pytest.mark.parametrize("mistake", IM2COL_MISTAKES)
def test_conv2d_names_each_im2col_mistake(mistake):
    change, hint = IM2COL_MISTAKES[mistake]
    rejects(checks.conv2d, student_conv(change), "Hint:", hint)


def test_any_flattening_order_is_right_when_both_sides_share_it():
    def same_order(x, w, b, s, p):
        conv2d(x, w, b, s, p)  # the solution's ValueErrors
        return im2col_with(x, w, b, s, p, lambda t: t.permute(0, 2, 3, 4, 5, 1),
                           lambda w: w.permute(0, 2, 3, 1).reshape(w.shape[0], -1),
                           right_output)

    checks.conv2d(student_conv(same_order))


def _module_conv(x, w, b, s, p):
    layer = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), s, p, bias=b is not None)
    layer.weight.data = w.detach()
    return layer(x)


FORBIDDEN_CONVS = {
    "F.conv2d": (lambda x, w, b, s, p: F.conv2d(x, w, b, s, p), "torch.nn.functional.conv2d"),
    "torch.conv2d": (lambda x, w, b, s, p: torch.conv2d(x, w, b, s, p), "conv2d"),
    "nn.Conv2d": (_module_conv, "conv2d"),
    "aten.convolution": (lambda x, w, b, s, p: torch.ops.aten.convolution(
        x, w, b, list(s), list(p), [1, 1], False, [0, 0], 1), "aten::convolution"),
    "aten.mkldnn_convolution": (lambda x, w, b, s, p: torch.ops.aten._convolution(
        x, w, b, list(s), list(p), [1, 1], False, [0, 0], 1, False, False, True, True),
        "convolution"),
    "F.unfold": (lambda x, w, b, s, p: (w.reshape(w.shape[0], -1) @ F.unfold(
        x, tuple(w.shape[2:]), padding=p, stride=s)).reshape(
        x.shape[0], w.shape[0], (x.shape[2] + 2 * p[0] - w.shape[2]) // s[0] + 1, -1)
        + (0 if b is None else b.view(1, -1, 1, 1)), "torch.nn.functional.unfold"),
    "aten.im2col": (lambda x, w, b, s, p: torch.ops.aten.im2col(
        x, list(w.shape[2:]), [1, 1], list(p), list(s)).sum() + conv2d(x, w, b, s, p),
        "aten::im2col"),
}


@pytest.mark.parametrize("way", FORBIDDEN_CONVS)
@pytest.mark.parametrize("name", ["conv2d", "conv2d_naive"])
def test_conv_refuses_torchs_convolution(name, way):
    change, what = FORBIDDEN_CONVS[way]
    rejects(FUNCTION_CHECKS[name][0], student_conv(change), "which this exercise builds",
            what)


def test_conv_rejects_other_wrong_answers():
    def wrong(change):
        return student_conv(lambda x, w, b, s, p: change(conv2d(x, w, b, s, p), x, w))

    rejects(checks.conv2d, wrong(lambda out, x, w: out.double()), "dtype torch.float64")
    rejects(checks.conv2d, wrong(lambda out, x, w: out.to("meta")), "is on meta")
    rejects(checks.conv2d, wrong(lambda out, x, w: out.detach()), "no gradient reached `x`")
    rejects(checks.conv2d, wrong(lambda out, x, w: out.unsqueeze(0)), "has shape")
    rejects(checks.conv2d, wrong(lambda out, x, w: out.detach().numpy()), "NumPy array")

    def no_channel_check(x, weight, bias=None, stride=1, padding=0):
        if x.ndim != 4:
            raise ValueError("expected (B, C, H, W)")
        return conv2d(x[:, :weight.shape[1]], weight, bias, stride, padding)

    rejects(checks.conv2d, no_channel_check, "expected it to raise ValueError",
            "x with 3 channels but weight (2, 2, 3, 3)")

    def blank(x, weight, bias=None, stride=1, padding=0):
        raise NotImplementedError()

    rejects(checks.conv2d, blank, "not implemented yet")


def test_a_wrong_gradient_gets_no_misleading_hint():
    """With stride 1 the "stride ignored" mistake gives the right output: it must not be named
    when the student's output is right and only the gradient is wrong."""
    wrong = student_conv(lambda x, w, b, s, p: conv2d(x, w.detach(), b, s, p) + 0 * w.sum())
    message = rejects(checks.conv2d, wrong, "grad[weight] has the right shape but wrong values")
    assert "Hint:" not in message


# --- max_pool2d and avg_pool2d ---------------------------------------------------------------


def student_pool(pool, change_kernel=lambda k: k, change_stride=lambda s: s, after=None):
    def implementation(x, kernel_size, stride=None):
        stride = None if stride is None else pair(stride)
        out = pool(x, change_kernel(pair(kernel_size)), change_stride(stride))
        return out if after is None else after(out, pair(kernel_size))

    return implementation


def max_pool_ceil(x, kernel_size, stride=None):
    """Keeps a last, partial window: pads the end with −inf (what ceil_mode=True does)."""
    (kh, kw), (sh, sw) = pair(kernel_size), pair(kernel_size if stride is None else stride)
    extra_h = (-(x.shape[2] - kh) % sh) if x.shape[2] >= kh else 0
    extra_w = (-(x.shape[3] - kw) % sw) if x.shape[3] >= kw else 0
    return max_pool2d(F.pad(x, (0, extra_w, 0, extra_h), value=-math.inf), (kh, kw), (sh, sw))


POOL_MISTAKES = {
    "max_pool2d": {
        "stride 1 by default": (student_pool(max_pool2d, change_stride=lambda s: s or 1),
                                "stride=None means stride = kernel_size"),
        "averages": (avg_pool2d, "that is average pooling"),
        "window (width, height)": (
            student_pool(max_pool2d, lambda k: k[::-1], lambda s: s and s[::-1]),
            "(height, width)"),
        "keeps a partial window": (max_pool_ceil, "a last, partial window was kept"),
        "one row and column short": (
            student_pool(max_pool2d, after=lambda out, k: out[..., :-1, :-1]),
            "one row and one column short"),
    },
    "avg_pool2d": {
        "stride 1 by default": (student_pool(avg_pool2d, change_stride=lambda s: s or 1),
                                "stride=None means stride = kernel_size"),
        "takes the max": (max_pool2d, "that is max pooling"),
        "window (width, height)": (
            student_pool(avg_pool2d, lambda k: k[::-1], lambda s: s and s[::-1]),
            "(height, width)"),
        "sums": (student_pool(avg_pool2d, after=lambda out, k: out * k[0] * k[1]),
                 "that is the sum of each window"),
    },
}


@pytest.mark.parametrize("name, mistake", [(n, m) for n, ms in POOL_MISTAKES.items() for m in ms])
def test_pooling_names_each_mistake(name, mistake):
    implementation, hint = POOL_MISTAKES[name][mistake]
    rejects(FUNCTION_CHECKS[name][0], implementation, "Hint:", hint)


FORBIDDEN_POOLS = {
    "F.max_pool2d": lambda x, k, stride=None: F.max_pool2d(x, k, stride),
    "nn.MaxPool2d": lambda x, k, stride=None: nn.MaxPool2d(k, stride)(x),
    "F.avg_pool2d": lambda x, k, stride=None: F.avg_pool2d(x, k, stride),
    "nn.AvgPool2d": lambda x, k, stride=None: nn.AvgPool2d(k, stride)(x),
    "aten.max_pool2d_with_indices": lambda x, k, stride=None: torch.ops.aten
    .max_pool2d_with_indices(x, list(pair(k)), list(pair(stride or k)))[0],
    "a convolution with a ones kernel": lambda x, k, stride=None: F.conv2d(
        x.flatten(0, 1)[:, None], torch.ones(1, 1, *pair(k), dtype=x.dtype, device=x.device)
        / (pair(k)[0] * pair(k)[1]), stride=stride or k).view(
        x.shape[0], x.shape[1], *F.avg_pool2d(x, k, stride).shape[2:]),
}


@pytest.mark.parametrize("way", FORBIDDEN_POOLS)
@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pooling_refuses_torchs_pooling(name, way):
    rejects(FUNCTION_CHECKS[name][0], FORBIDDEN_POOLS[way], "which this exercise builds")


def test_pooling_rejects_other_wrong_answers():
    rejects(checks.max_pool2d, lambda x, k, stride=None: max_pool2d(x, k, stride).detach(),
            "no gradient reached `x`")
    rejects(checks.avg_pool2d, lambda x, k, stride=None: avg_pool2d(x.float(), k, stride),
            "dtype torch.float32")

    def accepts_3d(x, k, stride=None):
        return avg_pool2d(x[None], k, stride)[0] if x.ndim == 3 else avg_pool2d(x, k, stride)

    rejects(checks.avg_pool2d, accepts_3d, "expected it to raise ValueError")


# --- sobel_edges ------------------------------------------------------------------------------


def student_sobel(pad="replicate", combine=lambda gx, gy: (gx ** 2 + gy ** 2).sqrt(),
                  kernel=((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0)), scale=1.0):
    """A Sobel filter on the solution's conv2d, with one detail changed."""

    def implementation(gray):
        if gray.ndim != 4 or gray.shape[1] != 1:
            raise ValueError("expected (B, 1, H, W)")
        s_x = torch.tensor(kernel, dtype=gray.dtype, device=gray.device) * scale
        weight = torch.stack([s_x, s_x.T]).unsqueeze(1)  # (2, 1, 3, 3)
        if pad is None:
            gradients = conv2d(gray, weight)
        elif pad == "zeros":
            gradients = conv2d(gray, weight, padding=1)
        else:
            gradients = conv2d(F.pad(gray, (1, 1, 1, 1), mode=pad), weight)
        return combine(gradients[:, :1], gradients[:, 1:])

    return implementation


SOBEL_MISTAKES = {
    "zero padding": (student_sobel(pad="zeros"), "zero-padded"),
    "mirrored border": (student_sobel(pad="reflect"), "do not mirror them"),
    "no padding": (student_sobel(pad=None), "smaller than the image"),
    "squared magnitude": (student_sobel(combine=lambda gx, gy: gx ** 2 + gy ** 2),
                          "squared magnitude"),
    "|Gx| + |Gy|": (student_sobel(combine=lambda gx, gy: gx.abs() + gy.abs()), "|Gx| + |Gy|"),
    "Gx only": (student_sobel(combine=lambda gx, gy: gx.abs()), "only the horizontal"),
    "Gy only": (student_sobel(combine=lambda gx, gy: gy.abs()), "only the vertical"),
    "Prewitt": (student_sobel(kernel=((-1.0, 0.0, 1.0),) * 3), "Prewitt"),
    "normalised by 8": (student_sobel(scale=1 / 8), "divided by 8"),
}


@pytest.mark.parametrize("mistake", SOBEL_MISTAKES)
def test_sobel_names_each_mistake(mistake):
    implementation, hint = SOBEL_MISTAKES[mistake]
    rejects(checks.sobel_edges, implementation, "Hint:", hint)


def test_sobel_must_use_the_students_conv2d():
    def with_torch(gray):
        s_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
                           dtype=gray.dtype, device=gray.device)
        g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"),
                     torch.stack([s_x, s_x.T]).unsqueeze(1))
        return g.pow(2).sum(dim=1, keepdim=True).sqrt()

    rejects(checks.sobel_edges, with_torch, "torch.nn.functional.conv2d", "your conv2d")


def test_sobel_rejects_other_wrong_answers():
    def float32_kernel(gray):  # forgets the dtype: fails on float64 images
        s_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        weight = torch.stack([s_x, s_x.T]).unsqueeze(1).to(gray.device)
        g = conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), weight)
        return g.pow(2).sum(dim=1, keepdim=True).sqrt()

    rejects(checks.sobel_edges, float32_kernel, "float64", "your code raised")
    rejects(checks.sobel_edges, lambda gray: sobel_edges(gray).squeeze(1), "has shape")
    rejects(checks.sobel_edges, lambda gray: sobel_edges(gray).detach(), "no gradient")
    rejects(checks.sobel_edges, lambda gray: sobel_edges(gray[:, :1]), "expected it to raise")


# --- SmallCNN: the quality check -----------------------------------------------------------


def held_out(seed: int, hidden: bool):
    """The images and (private) labels the quality check makes for ``seed``."""
    [case] = checks.small_cnn.cases(torch.Generator().manual_seed(seed), hidden)
    return case.inputs["images"], case.private["labels"]


class Lookup(nn.Module):
    """A stand-in for a trained model: it recognises the check's own images (nearest stored
    image) and answers with stored labels, a fraction of them deliberately wrong."""

    def __init__(self, wrong_fraction: float = 0.0):
        super().__init__()
        images, labels = zip(held_out(0, False), held_out(2026, True), strict=True)
        self.register_buffer("images", torch.cat(images).flatten(1))
        labels = torch.cat(labels)
        wrong = torch.arange(len(labels)) < wrong_fraction * len(labels)
        wrong = wrong[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
        self.register_buffer("labels", torch.where(wrong, (labels + 1) % 15, labels))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images):
        nearest = torch.cdist(images.flatten(1), self.images).argmin(dim=1)  # (B,)
        return F.one_hot(self.labels[nearest], 15).float() * self.scale


def test_the_quality_check_passes_a_good_model_quietly(capfd):
    model = Lookup()
    checks.small_cnn(model)
    checks.small_cnn(model, seed=2026, hidden=True)
    captured = capfd.readouterr()
    assert captured.err == ""
    assert "✓ SmallCNN held-out accuracy: 100.0 % (at least 95.0 %): passed" in captured.out


@pytest.mark.parametrize("wrong, passes", [(0.04, True), (0.06, False), (0.5, False)])
def test_the_quality_check_threshold_is_95_percent(wrong, passes):
    model = Lookup(wrong_fraction=wrong)
    if passes:
        checks.small_cnn(model, seed=2026, hidden=True)
    else:
        rejects(lambda m: checks.small_cnn(m, seed=2026, hidden=True), model,
                "needs at least 95.0 %", "Hint:")


def test_an_untrained_small_cnn_fails_the_quality_check():
    torch.manual_seed(0)
    rejects(checks.small_cnn, SmallCNN(), "SmallCNN held-out accuracy", "needs at least 95.0 %")


def test_the_quality_check_grades_in_eval_mode():
    class TrainModeGarbage(Lookup):
        def forward(self, images):
            out = super().forward(images)
            return -out if self.training else out

    model = TrainModeGarbage().train()
    checks.small_cnn(model)
    assert not model.training


class TenClasses(Lookup):
    def forward(self, images):
        return super().forward(images)[:, :10]


class TupleOut(Lookup):
    def forward(self, images):
        return super().forward(images), images


@pytest.mark.parametrize("model, reason", [
    (TenClasses(), "cannot be scored"),
    (TupleOut(), "the model returned tuple"),
    (lambda images: torch.zeros(len(images), 15), "an nn.Module"),
])
def test_the_quality_check_rejects_models_that_cannot_be_scored(model, reason):
    rejects(checks.small_cnn, model, reason)


def test_the_quality_check_says_when_the_model_is_not_implemented():
    class Blank(nn.Module):
        def forward(self, images):
            raise NotImplementedError()

    rejects(checks.small_cnn, Blank(), "not implemented yet")


def test_the_quality_check_keeps_its_answers_and_uses_its_own_images():
    generator = torch.Generator().manual_seed(0)
    [case] = checks.small_cnn.cases(generator, False)
    assert set(case.inputs) == {"images"} and "labels" in case.private
    assert case.inputs["images"].shape == (600, 3, 32, 32)
    notebook_test = ShapesClassification("test", size=600, seed=0, hold_out=False)
    assert not torch.equal(case.inputs["images"], notebook_test.images)
    assert set(case.private["labels"].tolist()) == set(range(15))
    visible, hidden = held_out(0, False)[0], held_out(2026, True)[0]
    assert hidden.shape[0] == 1500 and not torch.equal(visible, hidden[:600])


def test_the_solution_small_cnn_has_the_documented_shape():
    model = SmallCNN()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 15)
    assert sum(p.numel() for p in model.parameters()) == 24_671
    assert isinstance(model.features[0][0], nn.Conv2d) and len(model.features) == 3
    assert SmallCNN(num_classes=4, in_channels=1, width=4)(torch.zeros(1, 1, 16, 24)).shape \
        == (1, 4)
    with pytest.raises(ValueError):
        model(torch.zeros(3, 32, 32))


# --- forbidden functions and devices -----------------------------------------------------------


def test_every_forbidden_name_exists_in_this_torch():
    missing = []
    for dotted in checks.FORBIDDEN_FUNCTIONS:
        try:
            resolve(dotted)
        except (ValueError, AttributeError):
            missing.append(dotted)
    assert missing == []
    for name in ("convolution", "im2col", "col2im", "max_pool2d_with_indices", "avg_pool2d"):
        assert name in checks.FORBIDDEN_ATEN
        assert hasattr(torch.ops.aten, name)


def test_forbidden_functions_work_again_after_a_check():
    rejects(checks.conv2d, student_conv(lambda x, w, b, s, p: F.conv2d(x, w, b, s, p)))
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    torch.testing.assert_close(F.conv2d(x, w), conv2d(x, w))
    torch.testing.assert_close(F.max_pool2d(x, 2), max_pool2d(x, 2))


@pytest.mark.cuda
def test_the_checks_run_the_solution_on_cuda(capfd):
    for check, solution in FUNCTION_CHECKS.values():
        check(solution)
    assert "on cpu and cuda" in capfd.readouterr().out


@pytest.mark.cuda
def test_a_cuda_input_needs_a_cuda_output():
    rejects(checks.conv2d, student_conv(lambda x, w, b, s, p: conv2d(x, w, b, s, p).cpu()),
            "is on cpu, expected cuda")
    rejects(checks.max_pool2d, lambda x, k, stride=None: max_pool2d(x.cpu(), k, stride),
            "is on cpu, expected cuda")


@pytest.mark.cuda
def test_the_quality_check_runs_a_model_on_cuda():
    checks.small_cnn(Lookup().cuda())
