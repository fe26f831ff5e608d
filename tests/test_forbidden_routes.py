"""Every forbidden function of every notebook is refused however the student reaches it.

A student can save a forbidden function before the check runs: an alias at the top of the
exercise cell, a default argument, a closure, ``functools.partial``. The check must refuse
it by what it is (its code objects, or the torch function it is), not by the name it is
looked up under. For each check with a forbidden list, each entry of that list is reached
through each route, with the entry bound *before* the check starts, as in a student's cell;
the refusal must be recorded even when the student's code catches the error.

The same ``Forbidden.active`` runs in the notebook (``Check.__call__``) and in the grader's
re-check (``Check.run_student`` in the runner), so this covers both;
``test_grading_corpus.py`` hands a saved alias in through the real grader.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable

import pytest
import torch

from course_utils.checks.core import Check, QualityCheck
from course_utils.checks.forbid import ForbiddenFunctionError, resolve

MODULES = ["welcome", "convolution", "vit", "contrastive", "clip", "vilt", "diffusion",
           "captioning"]


def forbidden_checks():
    for module_name in MODULES:
        module = importlib.import_module(f"course_utils.checks.{module_name}")
        for name, check in sorted(vars(module).items()):
            if isinstance(check, Check | QualityCheck) and check.forbidden:
                yield f"{module_name}.{name}", check


def _t(*shape):
    return torch.rand(shape)


#: Arguments tried, in order, until one is a valid call of a torch function (outside the
#: check): what a student would pass it.
TENSOR_ARGUMENTS = [
    lambda: (_t(1, 1, 5, 5), _t(1, 1, 2, 2)),
    lambda: (_t(1, 1, 5), _t(1, 1, 2)),
    lambda: (_t(1, 1, 4, 4, 4), _t(1, 1, 2, 2, 2)),
    lambda: (_t(1, 1, 4, 4), 2),
    lambda: (_t(1, 1, 4), 2),
    lambda: (_t(1, 1, 4, 4, 4), 2),
    lambda: (_t(1, 1, 4, 4), (2, 2)),
    lambda: (_t(1, 4, 9), (4, 4), 2),
    lambda: (_t(1, 4, 9), (4, 4), (2, 2), (1, 1), (0, 0), (2, 2)),
    lambda: (_t(1, 1, 4, 4), (2, 2), (1, 1), (0, 0), (2, 2)),
    lambda: (_t(2, 3), _t(2, 3)),
    lambda: (_t(2, 3), torch.tensor([0, 2])),  # nll_loss(log-probabilities, class indices)
    lambda: (_t(2, 3),),
    lambda: (_t(2, 3), _t(2, 3), _t(2, 3)),
    lambda: (_t(1, 2, 3, 4), _t(1, 2, 3, 4), _t(1, 2, 3, 4)),
    lambda: (_t(1, 1, 4, 4), 2.0, 2),  # lp_pool2d(input, norm_type, kernel_size)
    # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
    #             groups)
    lambda: (_t(1, 1, 4, 4), _t(1, 1, 2, 2), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
    # multi_head_attention_forward(query, key, value (L, N, E), E, heads, in_proj weight and
    #     bias, bias_k, bias_v, add_zero_attn, dropout, out_proj weight and bias)
    lambda: (_t(3, 1, 4), _t(3, 1, 4), _t(3, 1, 4), 4, 2, _t(12, 4), _t(12), None, None,
             False, 0.0, _t(4, 4), _t(4)),
    # _native_multi_head_attention(query, key, value (N, L, E), E, heads, qkv weight and
    #     bias, proj weight and bias)
    lambda: (_t(1, 3, 4), _t(1, 3, 4), _t(1, 3, 4), 4, 2, _t(12, 4), _t(12), _t(4, 4),
             _t(4)),
    # _transformer_encoder_layer_fwd(src, E, heads, qkv weight and bias, proj weight and bias,
    #     use_gelu, norm_first, eps, two norms' weights and biases, two FFN layers')
    lambda: (_t(1, 3, 4), 4, 2, _t(12, 4), _t(12), _t(4, 4), _t(4), False, False, 1e-5,
             _t(4), _t(4), _t(4), _t(4), _t(8, 4), _t(8), _t(4, 8), _t(4)),
]


def callable_of(dotted: str) -> Callable:
    """The object a forbidden name refers to; for a module, one of its functions."""
    _, _, target = resolve(dotted)
    if inspect.ismodule(target):
        return next(v for k, v in sorted(vars(target).items()) if inspect.isfunction(v)
                    and v.__module__ == target.__name__ and not k.startswith("_"))
    return target


def arguments_for(target: Callable, by_code: bool) -> tuple | None:
    """Arguments that make a call of ``target`` reach it (None: none found).

    Python code refused by its code objects (``by_code``) is refused when its frame starts,
    so any arguments that bind will do (None for each required parameter); a torch function
    is refused after its arguments are parsed, so it needs a valid call.
    """
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        signature = None
    if by_code and signature is not None:
        return tuple(None for p in signature.parameters.values()
                     if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                            p.POSITIONAL_OR_KEYWORD))
    for make in TENSOR_ARGUMENTS:
        args = make()
        try:
            target(*args)
        except Exception:
            continue
        return args
    return None


def routes(target: Callable, args: tuple) -> dict[str, Callable[[], object]]:
    """Ways a student's cell reaches ``target`` without naming it when the check runs."""
    alias = target

    def with_default(f=target):
        return f(*args)

    def make_closure():
        saved = target
        return lambda: saved(*args)

    return {"alias": lambda: alias(*args), "default argument": with_default,
            "closure": make_closure(), "functools.partial": functools.partial(target, *args)}


CASES = [(label, check, dotted)
         for label, check in forbidden_checks()
         for dotted in (*check.forbidden.functions, *check.forbidden.attributes,
                        *check.forbidden.code)]
#: (check, name) pairs refused by code objects rather than as torch functions
BY_CODE = {(label, dotted) for label, check in forbidden_checks()
           for dotted in (*check.forbidden.attributes, *check.forbidden.code)}

#: Names kept in a forbidden list for which no call could be made here (none today).
NO_CALL: set[str] = set()


def test_every_notebook_with_forbidden_functions_is_covered():
    notebooks = {label.split(".")[0] for label, _, _ in CASES}
    assert notebooks == set(MODULES)


@pytest.mark.parametrize("label,check,dotted", CASES,
                         ids=[f"{label}-{dotted}" for label, _, dotted in CASES])
def test_a_forbidden_function_is_refused_through_every_route(label, check, dotted):
    try:
        target = callable_of(dotted)
    except (ValueError, AttributeError, StopIteration):
        pytest.skip(f"{dotted} does not exist in this version of its library")
    args = arguments_for(target, (label, dotted) in BY_CODE)
    if args is None:
        assert dotted in NO_CALL, f"no call of {dotted} found: add arguments that reach it"
        return
    for route, call in routes(target, args).items():
        with check.forbidden.active() as forbidden:
            try:
                call()  # a student who catches the refusal is refused all the same
            except ForbiddenFunctionError:
                pass
            except Exception:
                pass
        assert forbidden.violations, f"{label}: {dotted} through a {route} was not refused"


def test_a_saved_alias_fails_the_whole_check_in_the_notebook():
    """End to end: the alias at the top of a student's cell, caught errors and all."""
    import torchvision.transforms.functional as TF

    from course_utils.checks import welcome

    convert = TF.to_tensor

    def to_chw_float(image, _convert=convert):
        return _convert(image)

    for implementation in (to_chw_float, functools.partial(convert)):
        with pytest.raises(Exception, match="to_tensor"):
            welcome.to_chw_float(implementation)


def test_turning_the_trace_off_is_refused():
    import sys

    import torchvision.transforms.functional as TF

    from course_utils.checks import welcome

    convert = TF.to_tensor

    def to_chw_float(image):
        sys.settrace(None)
        return convert(image)

    with pytest.raises(Exception, match="settrace"):
        welcome.to_chw_float(to_chw_float)
