"""Data across the sandbox's wall: JSON and ``.npy`` files, never pickles.

The trusted grader and the sandboxed re-check runner exchange cases (the inputs of a check)
and outputs (what the student's code returned) through files in a folder both can see:
``NAME.json`` describes the value and ``NAME-K.npy`` holds its K-th array. The encoding
covers what checks exchange (tensors of every dtype and device, NumPy arrays, numbers,
strings, None, lists, tuples, dicts, dtypes, devices, exception types); anything else the
student's code returns becomes an :class:`Opaque` stand-in that compares unequal to every
expected value.

Reading is defensive, because the sandbox writes what the student's code wants it to: files
are opened without following links, must be regular files below a size budget, array headers
are checked against the file's size before any memory is allocated, object arrays are refused
(``allow_pickle=False``), and a malformed description raises :class:`ExchangeError`.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from course_utils.tools.grading.safefile import UnsafeFile, read_regular

MAX_DEPTH = 32
MAX_ITEMS = 100_000
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
#: Torch dtypes NumPy cannot hold: stored as float32 (exactly), restored on reading.
_WIDENED = {"bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"}


class ExchangeError(ValueError):
    """A file of the exchange is missing, too large, a link, or malformed."""


class Opaque:
    """Stands in for a value that cannot cross the wall (an object the student returned)."""

    def __init__(self, type_name: str, text: str = ""):
        self.type_name, self.text = str(type_name)[:80], str(text)[:200]

    def __repr__(self) -> str:
        return f"<{self.type_name} {self.text}>".replace(" >", ">")

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


# --- encoding ------------------------------------------------------------------------------------


def _torch():
    import torch

    return torch


def encode(value: Any, arrays: list[np.ndarray], *, strict: bool = True, depth: int = 0) -> Any:
    """``value`` as JSON-able data; its arrays are appended to ``arrays``.

    ``strict``: raise TypeError on a value that cannot be encoded (the trusted side, encoding
    cases); otherwise encode it as an opaque stand-in (the sandbox, encoding what the student's
    code returned).
    """
    if depth > MAX_DEPTH:
        raise TypeError("nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        return {"$": "float", "v": repr(value)}
    torch = _torch()
    if kind is torch.Tensor:
        if value.is_sparse or value.layout != torch.strided:
            return _refuse(value, strict, "a sparse tensor")
        dtype = str(value.dtype).removeprefix("torch.")
        data = value.detach().cpu()
        if dtype in _WIDENED:
            data = data.float()
        if data.is_conj():
            data = data.resolve_conj()
        arrays.append(np.array(data.numpy(), order="C"))  # (ascontiguousarray makes 0-d 1-d)
        return {"$": "tensor", "i": len(arrays) - 1, "dtype": dtype, "device": str(value.device),
                "requires_grad": bool(value.requires_grad)}
    if kind is np.ndarray:
        if value.dtype.hasobject:
            return _refuse(value, strict, "an array of Python objects")
        arrays.append(np.array(value, order="C"))
        return {"$": "ndarray", "i": len(arrays) - 1}
    if isinstance(value, np.generic) and kind.__module__ == "numpy":
        if isinstance(value, np.object_) or value.dtype.hasobject:
            return _refuse(value, strict, "a NumPy object")
        arrays.append(np.asarray(value).reshape(1))
        return {"$": "npscalar", "i": len(arrays) - 1}
    if kind is torch.dtype:
        return {"$": "dtype", "v": str(value).removeprefix("torch.")}
    if kind is torch.device:
        return {"$": "device", "v": str(value)}
    if kind is torch.Size:
        return {"$": "size", "v": [int(v) for v in value]}
    if kind in (list, tuple):
        items = [encode(v, arrays, strict=strict, depth=depth + 1) for v in value]
        return items if kind is list else {"$": "tuple", "v": items}
    if kind is dict:
        pairs = []
        for key, item in value.items():
            if type(key) not in (str, int):
                return _refuse(value, strict, "a dict with keys that are not str or int")
            pairs.append([key, encode(item, arrays, strict=strict, depth=depth + 1)])
        return {"$": "dict", "v": pairs}
    if kind is slice:
        return {"$": "slice", "v": [encode(v, arrays, strict=strict, depth=depth + 1)
                                    for v in (value.start, value.stop, value.step)]}
    if isinstance(value, type) and issubclass(value, BaseException) and \
            getattr(builtins, value.__name__, None) is value:
        return {"$": "exception", "v": value.__name__}
    return _refuse(value, strict, f"a {kind.__name__}")


def _refuse(value: Any, strict: bool, what: str) -> Any:
    if strict:
        raise TypeError(f"cannot send {what} across the sandbox")
    try:
        text = repr(value)
    except BaseException:
        text = ""
    return {"$": "opaque", "type": type(value).__name__, "text": text[:200]}


# --- decoding ------------------------------------------------------------------------------------


def decode(data: Any, load: Callable[[int], np.ndarray], *, device_ok: Callable[[str], bool]
           | None = None, depth: int = 0, count: list[int] | None = None) -> Any:
    """The inverse of :func:`encode`; ``load(i)`` returns array ``i``. Raise ExchangeError on
    anything malformed."""
    if count is None:
        count = [0]
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
        raise ExchangeError("nested too deeply or too many items")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode(v, load, device_ok=device_ok, depth=depth + 1, count=count) for v in data]
    if type(data) is not dict or not isinstance(data.get("$"), str):
        raise ExchangeError(f"unexpected {type(data).__name__} in the exchange")
    tag = data["$"]
    if tag == "float":
        if data.get("v") not in ("nan", "inf", "-inf"):
            raise ExchangeError("bad float")
        return float(data["v"])
    if tag in ("tensor", "ndarray", "npscalar"):
        index = data.get("i")
        if type(index) is not int:
            raise ExchangeError("bad array index")
        array = load(index)
        if tag == "ndarray":
            return array
        if tag == "npscalar":
            if array.shape != (1,):
                raise ExchangeError("bad NumPy scalar")
            return array[0]
        return _tensor(array, data, device_ok)
    if tag == "dtype":
        return _dtype(data.get("v"))
    if tag == "device":
        torch = _torch()
        try:
            return torch.device(str(data.get("v")))
        except (RuntimeError, TypeError) as error:
            raise ExchangeError(f"bad device: {error}") from None
    if tag == "size":
        values = data.get("v")
        if type(values) is not list or not all(type(v) is int for v in values):
            raise ExchangeError("bad size")
        return _torch().Size(values)
    if tag == "tuple":
        values = data.get("v")
        if type(values) is not list:
            raise ExchangeError("bad tuple")
        return tuple(decode(v, load, device_ok=device_ok, depth=depth + 1, count=count)
                     for v in values)
    if tag == "dict":
        pairs = data.get("v")
        if type(pairs) is not list:
            raise ExchangeError("bad dict")
        result = {}
        for pair in pairs:
            if type(pair) is not list or len(pair) != 2 or type(pair[0]) not in (str, int):
                raise ExchangeError("bad dict item")
            result[pair[0]] = decode(pair[1], load, device_ok=device_ok, depth=depth + 1,
                                     count=count)
        return result
    if tag == "slice":
        values = data.get("v")
        if type(values) is not list or len(values) != 3:
            raise ExchangeError("bad slice")
        return slice(*(decode(v, load, device_ok=device_ok, depth=depth + 1, count=count)
                       for v in values))
    if tag == "exception":
        error = getattr(builtins, str(data.get("v")), None)
        if not (isinstance(error, type) and issubclass(error, BaseException)):
            raise ExchangeError("bad exception type")
        return error
    if tag == "opaque":
        return Opaque(str(data.get("type", "object")), str(data.get("text", "")))
    raise ExchangeError(f"unknown tag {tag!r}")


def _dtype(name: Any):
    torch = _torch()
    dtype = getattr(torch, str(name), None) if re.fullmatch(r"[a-z0-9_]+", str(name)) else None
    if not isinstance(dtype, torch.dtype):
        raise ExchangeError(f"bad dtype {name!r}")
    return dtype


def _tensor(array: np.ndarray, data: dict, device_ok: Callable[[str], bool] | None):
    torch = _torch()
    dtype = _dtype(data.get("dtype"))
    device = str(data.get("device", "cpu"))
    try:
        tensor = torch.from_numpy(np.array(array, copy=True)).to(dtype)
        target = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ExchangeError(f"bad tensor: {error}") from None
    if target.type != "cpu":
        if device_ok is not None and not device_ok(device):
            raise ExchangeError(f"device {device} is not available here")
        tensor = tensor.to(target)
    if data.get("requires_grad") is True and tensor.is_floating_point():
        tensor.requires_grad_(True)
    return tensor


# --- files ---------------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"bad exchange name {name!r}")


def write(folder: Path, name: str, value: Any, *, strict: bool = True) -> None:
    """Write ``value`` as ``folder/name.json`` and its arrays as ``folder/name-K.npy``."""
    _check_name(name)
    arrays: list[np.ndarray] = []
    data = encode(value, arrays, strict=strict)
    folder = Path(folder)
    for index, array in enumerate(arrays):
        path = folder / f"{name}-{index}.npy"
        with open(f"{path}.tmp", "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(f"{path}.tmp", path)
    text = json.dumps({"value": data, "arrays": len(arrays)})
    with open(folder / f"{name}.json.tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(folder / f"{name}.json.tmp", folder / f"{name}.json")


def _open_regular(path: Path, budget: list[int]) -> bytes:
    """The bytes of a regular file (never a link), charged to ``budget``."""
    try:
        raw = read_regular(path, budget[0])
    except UnsafeFile as error:
        raise ExchangeError(str(error)) from None
    budget[0] -= len(raw)
    return raw


def _load_npy(raw: bytes, name: str) -> np.ndarray:
    import io

    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as error:
        raise ExchangeError(f"{name}: {error}") from None
    if dtype.hasobject:
        raise ExchangeError(f"{name} holds Python objects")
    count = math.prod(shape)
    if count * dtype.itemsize != len(raw) - stream.tell():
        raise ExchangeError(f"{name}: the header does not match the data")
    stream.seek(0)
    try:
        return np.load(stream, allow_pickle=False)
    except ValueError as error:
        raise ExchangeError(f"{name}: {error}") from None


def read(folder: Path, name: str, *, max_bytes: int = 256 << 20,
         device_ok: Callable[[str], bool] | None = None) -> Any:
    """Read what :func:`write` wrote, defensively (see the module's docstring)."""
    _check_name(name)
    folder = Path(folder)
    budget = [max_bytes]
    raw = _open_regular(folder / f"{name}.json", budget)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError) as error:
        raise ExchangeError(f"{name}.json is not valid JSON: {str(error)[:100]}") from None
    if type(document) is not dict or type(document.get("arrays")) is not int:
        raise ExchangeError(f"{name}.json is malformed")
    count = document["arrays"]
    if not 0 <= count <= MAX_ITEMS:
        raise ExchangeError(f"{name}.json names too many arrays")
    cache: dict[int, np.ndarray] = {}

    def load(index: int) -> np.ndarray:
        if not 0 <= index < count:
            raise ExchangeError(f"array {index} does not exist")
        if index not in cache:
            array_name = f"{name}-{index}.npy"
            cache[index] = _load_npy(_open_regular(folder / array_name, budget), array_name)
        return cache[index]

    try:
        return decode(document.get("value"), load, device_ok=device_ok)
    except RecursionError:
        raise ExchangeError(f"{name}.json is nested too deeply") from None
