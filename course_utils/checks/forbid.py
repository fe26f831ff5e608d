"""Make library functions unavailable while a student's code runs.

An exercise such as "write conv2d with im2col" is only honest if the student's code cannot
call ``F.conv2d`` behind the check's back. ``Forbidden`` refuses a function at four levels:

1. torch's Python API (``torch.nn.functional.conv2d``, ``torch.conv2d``, ...), through a
   ``TorchFunctionMode``: this catches every alias, ``from ... import`` included;
2. torch's kernels (``aten::convolution``, ``aten::im2col``, ...), through a
   ``TorchDispatchMode``: this catches ``nn.Conv2d`` and ``torch.ops.aten`` calls;
3. other libraries' objects (``open_clip.loss.ClipLoss``, torchvision's ``to_tensor``),
   replaced while the code runs (a clear message for the usual way of calling them) and
   refused by their code objects too (level 4);
4. Python code that must not run however it was reached (a check's own reference, the
   course's reference blocks, the objects of level 3), by the code objects it executes,
   through ``sys.settrace``: this catches names bound before the check ran (``from x import
   ClipLoss``, an alias, a default argument, a closure, ``functools.partial``). A student's
   code that turns the trace off is refused too.

Every refused call is recorded, so a student who catches the error still fails the check.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


class ForbiddenFunctionError(RuntimeError):
    """Raised inside the student's code when it calls a forbidden function."""


def resolve(dotted: str) -> tuple[Any, str, Any]:
    """``"torch.nn.functional.conv2d"`` -> (the module or class, ``"conv2d"``, the object)."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1], getattr(owner, parts[-1])
    raise ValueError(f"cannot resolve {dotted!r}")


@dataclass
class Forbidden:
    """Functions an exercise must not use, and what to use instead.

    Args:
        functions: dotted names of torch functions, e.g. ``"torch.nn.functional.conv2d"``.
        aten: names of torch kernels (without ``aten::``), e.g. ``"convolution"``.
        attributes: dotted names of other libraries' objects, e.g. ``"open_clip.loss.ClipLoss"``.
        code: dotted names of Python functions, classes or modules whose code must not run
            (e.g. ``"course_utils.blocks.transformer"``), however the student reached them.
        allowed: a sentence telling the student what they may use instead.
    """

    functions: Sequence[str] = ()
    aten: Sequence[str] = ()
    attributes: Sequence[str] = ()
    code: Sequence[str] = ()
    allowed: str = ""
    violations: list[str] = field(default_factory=list, init=False)

    def __bool__(self) -> bool:
        return bool(self.functions or self.aten or self.attributes or self.code)

    @contextlib.contextmanager
    def active(self, extra_code: Sequence[tuple[str, Callable]] = ()) -> Iterator[Forbidden]:
        """Refuse the forbidden functions inside the ``with`` block; record every attempt.

        ``extra_code`` adds (name, function) pairs refused like ``code``, e.g. the check's own
        reference implementation.
        """
        self.violations = []
        refused = {}
        for dotted in self.functions:
            with contextlib.suppress(ValueError, AttributeError):
                refused.setdefault(id(resolve(dotted)[2]), dotted)  # aliases: the first name
        codes: dict[types.CodeType, str] = {}  # resolved before any attribute is replaced
        for dotted in self.code:
            with contextlib.suppress(ValueError, AttributeError):
                codes.update(dict.fromkeys(code_objects(resolve(dotted)[2]), dotted))
        for name, function in extra_code:
            codes.update(dict.fromkeys(code_objects(function), name))
        originals = []
        for dotted in self.attributes:  # by name, and by code (a saved alias, a default
            with contextlib.suppress(ValueError, AttributeError):  # argument, a closure)
                owner, name, original = resolve(dotted)
                originals.append((owner, name, dotted))
                for code in code_objects(original):
                    codes.setdefault(code, dotted)
        with contextlib.ExitStack() as stack:
            for owner, name, dotted in originals:
                stack.enter_context(_replaced(owner, name, self._stub(dotted)))
            if refused:
                stack.enter_context(_RefuseFunctions(self, refused))
            if self.aten:
                stack.enter_context(_RefuseKernels(self, frozenset(self.aten)))
            if codes:
                stack.enter_context(_refuse_code(self, codes))
            yield self

    def refuse(self, what: str) -> ForbiddenFunctionError:
        self.violations.append(what)
        return ForbiddenFunctionError(f"{what} is not allowed in this exercise. {self.allowed}")

    def _stub(self, dotted: str):
        def stub(*args, **kwargs):
            raise self.refuse(dotted)

        return stub


def code_objects(obj: Any) -> set[types.CodeType]:
    """Every code object of a function, a class's methods, or a module's functions and
    classes (nested functions and lambdas included)."""
    found: set[types.CodeType] = set()

    def add(code: types.CodeType) -> None:
        found.add(code)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                add(const)

    if inspect.ismodule(obj):
        for member in vars(obj).values():
            if getattr(member, "__module__", None) == obj.__name__:
                found |= code_objects(member)
    elif inspect.isclass(obj):
        for member in vars(obj).values():
            found |= code_objects(getattr(member, "__func__", member))
    else:
        code = getattr(inspect.unwrap(obj), "__code__", None) if callable(obj) else None
        if code is not None:
            add(code)
    return found


@contextlib.contextmanager
def _refuse_code(forbidden: Forbidden, codes: dict[types.CodeType, str]) -> Iterator[None]:
    """Refuse calls into ``codes`` for the duration (Python functions only; only "call"
    events are traced, so the cost is one dictionary lookup per Python call)."""

    refused = []

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            refused.append(True)  # Python turns a trace function off when it raises
            raise forbidden.refuse(codes[frame.f_code])
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    except BaseException:  # the code failed (Python also drops a tracer that raised, e.g. a
        sys.settrace(previous)  # RecursionError at the depth limit): nothing to accuse
        raise
    if sys.gettrace() is not tracer and not refused:  # it ran to the end, unwatched
        forbidden.violations.append("sys.settrace, or a recursion deep enough to switch "
                                    "off this check's watch on forbidden functions")
    sys.settrace(previous)


@contextlib.contextmanager
def _replaced(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


class _RefuseFunctions(TorchFunctionMode):
    def __init__(self, forbidden: Forbidden, refused: dict[int, str]):
        super().__init__()
        self.forbidden, self.refused = forbidden, refused

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if id(func) in self.refused:
            raise self.forbidden.refuse(self.refused[id(func)])
        return func(*args, **(kwargs or {}))


class _RefuseKernels(TorchDispatchMode):
    def __init__(self, forbidden: Forbidden, names: frozenset[str]):
        super().__init__()
        self.forbidden, self.names = forbidden, names

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.names:
            raise self.forbidden.refuse(f"torch's {name} kernel (aten::{name})")
        return func(*args, **(kwargs or {}))
