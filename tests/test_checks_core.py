"""The checks framework itself: it must reject what is wrong, say why, and stay quiet."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from course_utils.checks import Case, Check, CheckFailure, Forbidden, Mistake, QualityCheck
from course_utils.checks.case import devices

CONV_FORBIDDEN = Forbidden(
    functions=["torch.nn.functional.conv2d", "torch.nn.functional.unfold"],
    aten=["convolution", "im2col"],
    allowed="Use Tensor.unfold and a matmul.",
)


def reference_conv(x, weight):
    return F.conv2d(x, weight)


def conv_cases(generator, hidden):
    x = torch.randn(2, 3, 6, 5, generator=generator)
    weight = torch.randn(4, 3, 3, 2, generator=generator)
    cases = [Case("a 6×5 image", {"x": x, "weight": weight}, grad=["x", "weight"])]
    if hidden:
        cases.append(Case("float64", {"x": x.double(), "weight": weight.double()}, grad=["x"]))
    return cases


def im2col_conv(x, weight):
    patches = x.unfold(2, weight.shape[2], 1).unfold(3, weight.shape[3], 1)  # (B,C,H',W',K,K)
    return torch.einsum("bchwij,ocij->bohw", patches, weight)


conv_check = Check(
    exercise="conv",
    reference=reference_conv,
    cases=conv_cases,
    mistakes=[Mistake("flipped kernel", lambda x, w: F.conv2d(x, w.flip(-1, -2)))],
    forbidden=CONV_FORBIDDEN,
)


def test_accepts_a_right_answer_and_says_so_on_stdout_only(capsys):
    conv_check(im2col_conv)
    conv_check(im2col_conv, seed=1, hidden=True)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "✓ conv: 1 cases passed" in captured.out
    assert "✓ conv: 2 hidden cases passed" in captured.out


def test_names_the_case_and_the_mistake():
    with pytest.raises(CheckFailure) as failure:
        conv_check(lambda x, w: im2col_conv(x, w.flip(-1, -2)))
    message = str(failure.value)
    assert "conv: the output has the right shape but wrong values" in message
    assert "case: a 6×5 image" in message
    assert "Hint: flipped kernel" in message


from torch.nn.functional import conv2d as imported_conv2d  # noqa: E402 (a student's alias)

FORBIDDEN_WAYS = {
    "F.conv2d": lambda x, w: F.conv2d(x, w),
    "torch.conv2d": lambda x, w: torch.conv2d(x, w),
    "a from-import alias": lambda x, w: imported_conv2d(x, w),
    "nn.Conv2d": lambda x, w: _module_conv(x, w),
    "torch.ops.aten": lambda x, w: torch.ops.aten.convolution(
        x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
    "F.unfold": lambda x, w: torch.einsum(
        "bkl,ok->bol", F.unfold(x, w.shape[2:]), w.flatten(1)).reshape(
        x.shape[0], w.shape[0], x.shape[2] - w.shape[2] + 1, x.shape[3] - w.shape[3] + 1),
}


def _module_conv(x, w):
    conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], bias=False)
    conv.weight.data = w.detach()
    return conv(x)


@pytest.mark.parametrize("way", FORBIDDEN_WAYS)
def test_refuses_a_forbidden_function_however_it_is_called(way):
    with pytest.raises(CheckFailure, match="which this exercise builds from scratch"):
        conv_check(FORBIDDEN_WAYS[way])


def test_refuses_a_forbidden_call_even_when_the_error_is_swallowed():
    def sneaky(x, w):
        try:
            F.conv2d(x, w)
        except Exception:
            pass
        return im2col_conv(x, w)

    with pytest.raises(CheckFailure, match="it called torch.nn.functional.conv2d"):
        conv_check(sneaky)


def test_forbidden_functions_work_again_after_the_check():
    with pytest.raises(CheckFailure):
        conv_check(FORBIDDEN_WAYS["F.conv2d"])
    x, w = torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)
    torch.testing.assert_close(F.conv2d(x, w), im2col_conv(x, w))


class AlwaysEqual:
    def __eq__(self, other):
        return True

    shape = (2, 4, 4, 4)


class SneakyTensor(torch.Tensor):
    pass


WRONG_OUTPUTS = {
    "an always-equal object": (lambda x, w: AlwaysEqual(), "should be a torch.Tensor"),
    "a tensor subclass": (lambda x, w: im2col_conv(x, w).as_subclass(SneakyTensor),
                          "should be a torch.Tensor"),
    "a NumPy array": (lambda x, w: im2col_conv(x, w).detach().numpy(), "NumPy array"),
    "the wrong shape": (lambda x, w: im2col_conv(x, w)[:, :, 1:], "has shape (2, 4, 3, 4)"),
    "the wrong dtype": (lambda x, w: im2col_conv(x, w).double(), "dtype torch.float64"),
    "the wrong device": (lambda x, w: im2col_conv(x, w).to("meta"), "is on meta"),
    "NaN": (lambda x, w: im2col_conv(x, w) * float("nan"), "NaN"),
    "a detached output": (lambda x, w: im2col_conv(x, w).detach(), "no gradient reached `x`"),
    "a wrong gradient": (lambda x, w: im2col_conv(x, w.detach()) + 0 * w.sum(),
                         "grad[weight] has the right shape but wrong values"),
    "a tuple": (lambda x, w: (im2col_conv(x, w), x), "returned a tuple or list of 2 values"),
    "None": (lambda x, w: None, "should be a torch.Tensor"),
}


@pytest.mark.parametrize("wrong", WRONG_OUTPUTS)
def test_rejects_wrong_outputs_with_a_reason(wrong):
    implementation, reason = WRONG_OUTPUTS[wrong]
    with pytest.raises(CheckFailure) as failure:
        conv_check(implementation)
    assert reason in str(failure.value)


def test_not_implemented_says_what_to_do():
    def blank(x, w):
        raise NotImplementedError()

    with pytest.raises(CheckFailure, match="not implemented yet"):
        conv_check(blank)


def test_a_crash_shows_the_students_frames_not_ours():
    def buggy(x, w):
        return x[10]

    with pytest.raises(CheckFailure) as failure:
        conv_check(buggy)
    rendered = "\n".join(failure.value._render_traceback_())
    assert "in buggy" in rendered and "IndexError" in rendered
    assert "course_utils" not in rendered.replace("CheckFailure", "")


def test_warnings_and_stderr_of_the_students_code_stay_off_stderr(capfd):
    def noisy(x, w):
        import warnings

        warnings.warn("deprecated!", DeprecationWarning, stacklevel=1)
        print("debugging", file=sys.stderr)
        return im2col_conv(x, w)

    conv_check(noisy)
    assert capfd.readouterr().err == ""


def test_expected_errors_are_checked():
    def reference(x):
        if x.ndim != 2:
            raise ValueError("expected a matrix")
        return x.t()

    def student(x):
        if x.ndim != 2:
            raise ValueError("x must be (N, M)")
        return x.T

    check = Check("transpose", reference, lambda g, hidden: [
        Case("a vector, which it must refuse", {"x": torch.ones(3)}, raises=ValueError)])
    check(student)
    with pytest.raises(CheckFailure, match="expected it to raise ValueError.*returned normally"):
        check(lambda x: x)
    with pytest.raises(CheckFailure, match="raised IndexError"):
        check(lambda x: x.t() if x.ndim == 2 else x[5])


def test_integer_outputs_are_compared_exactly():
    check = Check("size", lambda n: n // 2, lambda g, hidden: [Case("n=7", {"n": 7})])
    check(lambda n: n // 2)
    for wrong, reason in [(lambda n: n / 2, "should be an int"),
                          (lambda n: n // 2 + 1, "is 4, expected 3"),
                          (lambda n: torch.tensor(3), "should be a Python int")]:
        with pytest.raises(CheckFailure, match=reason):
            check(wrong)


def test_inputs_are_fresh_copies_for_every_implementation():
    def vandal(x, w):
        out = im2col_conv(x, w)
        x.data.zero_()  # must not change the reference's input
        return out

    conv_check(vandal)


def test_checks_run_on_every_available_device():
    assert devices()[0] == torch.device("cpu")
    seen = []
    check = Check("seen", lambda x: x, lambda g, hidden: [Case("x", {"x": torch.ones(1)})],
                  run=lambda fn, case: seen.append(case.inputs["x"].device) or {"output": 1})
    check(lambda x: x)
    assert [d.type for d in seen[::2]] == [d.type for d in devices()]


@pytest.mark.cuda
def test_a_cuda_input_needs_a_cuda_output():
    with pytest.raises(CheckFailure, match="is on cpu, expected cuda"):
        conv_check(lambda x, w: im2col_conv(x, w).cpu())


def _parity_cases(generator, hidden):
    x = torch.randint(0, 100, (200 if hidden else 50,), generator=generator)
    return [Case("held-out numbers", {"x": x}, private={"labels": x % 2})]


parity = QualityCheck(
    exercise="parity accuracy",
    cases=_parity_cases,
    run=lambda model, case: {"output": model(case.inputs["x"])},
    score=lambda case, out: {"accuracy": (out["output"] == case.private["labels"])
                             .float().mean().item()},
    thresholds={"accuracy": 0.9},
    hint="train longer",
)


def test_a_quality_check_scores_the_model_on_its_own_data(capsys):
    parity(lambda x: x % 2)
    parity(lambda x: x % 2, seed=3, hidden=True)
    assert "✓ accuracy: 100.0 % (at least 90.0 %): passed" in capsys.readouterr().out


@pytest.mark.parametrize("model, reason", [
    (lambda x: torch.zeros_like(x), "needs at least 90.0 %"),
    (lambda x: x[:3], "cannot be scored"),  # outputs of the wrong length
    (lambda x: 1 / 0, "your model raised ZeroDivisionError"),
])
def test_a_quality_check_fails_a_bad_model(model, reason):
    with pytest.raises(CheckFailure, match=reason):
        parity(model)


def test_a_quality_check_never_shows_the_answers_to_the_model():
    seen = []
    parity(lambda x: seen.append(x) or x % 2)
    assert all(not isinstance(s, dict) for s in seen)


def test_refuses_the_checks_own_reference_and_refused_code_however_bound():
    with pytest.raises(CheckFailure, match="the check's own reference for conv"):
        conv_check(lambda x, w: conv_check.reference(x, w))

    from course_utils.blocks import Attention as bound_early  # bound before the check runs

    def uses_a_block(x):
        return bound_early(4, 2)(x)

    check = Check("attention", lambda x: x, lambda g, hidden: [
        Case("tokens", {"x": torch.randn(1, 3, 4)})],
        forbidden=Forbidden(code=["course_utils.blocks.transformer"]))
    with pytest.raises(CheckFailure, match="course_utils.blocks.transformer"):
        check(uses_a_block)
    check(lambda x: x)
    assert sys.gettrace() is None or "pytest" in repr(sys.gettrace())


def test_only_the_checks_own_mistakes_may_build_on_its_reference():
    def scaled(x):  # a known mistake that reuses the reference
        return 2 * check.reference(x)

    check = Check("double", lambda x: x + x, lambda g, hidden: [
        Case("a vector", {"x": torch.arange(3.0)})], mistakes=[Mistake("scaled twice", scaled)])
    with pytest.raises(CheckFailure, match="scaled twice"):  # it runs, and fails as a mistake
        check(scaled)
    with pytest.raises(CheckFailure, match="the check's own reference for double"):
        check(lambda x: scaled(x))  # the same code handed in by a student is refused


def test_a_quality_check_refuses_forbidden_calls_even_when_caught():
    check = QualityCheck(
        exercise="parity accuracy", cases=_parity_cases,
        run=lambda model, case: {"output": model(case.inputs["x"])},
        score=lambda case, out: {"accuracy": 1.0}, thresholds={"accuracy": 0.9},
        forbidden=Forbidden(functions=["torch.nn.functional.conv2d"]))

    def sneaky(x):
        try:
            F.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1))
        except Exception:
            pass
        return x % 2

    with pytest.raises(CheckFailure, match="the model called torch.nn.functional.conv2d"):
        check(sneaky)
