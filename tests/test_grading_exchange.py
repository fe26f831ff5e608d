"""Data across the sandbox's wall: what crosses and what is refused (grading.exchange)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from course_utils.checks import welcome
from course_utils.checks.failure import CheckFailure
from course_utils.checks.runners import run_function
from course_utils.tools.grading import exchange
from course_utils.tools.grading.reference import public


def roundtrip(tmp_path, value, strict=True):
    exchange.write(tmp_path, "value", value, strict=strict)
    return exchange.read(tmp_path, "value")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                   torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_tensors_keep_dtype_values_and_grad_flag(tmp_path, dtype):
    tensor = (torch.arange(12) % 5).reshape(3, 4).to(dtype)
    if dtype.is_floating_point:
        tensor.requires_grad_(True)
    back = roundtrip(tmp_path, {"output": tensor})["output"]
    assert type(back) is torch.Tensor and back.dtype == dtype and back.shape == (3, 4)
    assert torch.equal(back.detach(), tensor.detach())
    assert back.requires_grad == tensor.requires_grad


def test_scalars_keep_their_zero_dimensions(tmp_path):
    value = {"loss": torch.tensor(0.25, requires_grad=True), "array": np.array(3.0),
             "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3))}
    back = roundtrip(tmp_path, value)
    assert back["loss"].shape == () and back["loss"].item() == 0.25
    assert back["array"].shape == () and np.array_equal(back["fortran"], value["fortran"])


def test_nested_values_round_trip(tmp_path):
    value = {"image": np.arange(6, dtype=np.uint8).reshape(1, 2, 3), "n": 3, "x": 0.5,
             "specials": [math.inf, -math.inf], "name": "ünïcode", "none": None, "flag": True,
             "pair": (1, "a"), "raises": ValueError, "dtype": torch.float64,
             "device": torch.device("cpu"), "size": torch.Size([2, 3]), "cut": slice(1, None),
             "scalar": np.float32(1.5), "nested": {1: [torch.zeros(0)]}}
    back = roundtrip(tmp_path, value)
    assert list(back) == list(value)  # order kept: it is the signature's order for inputs
    assert np.array_equal(back["image"], value["image"]) and back["image"].dtype == np.uint8
    assert back["pair"] == (1, "a") and back["raises"] is ValueError
    assert back["dtype"] is torch.float64 and back["size"] == torch.Size([2, 3])
    assert back["cut"] == slice(1, None) and back["scalar"] == np.float32(1.5)
    assert back["specials"] == [math.inf, -math.inf] and back["nested"][1][0].shape == (0,)
    nan = roundtrip(tmp_path, float("nan"))
    assert math.isnan(nan)


def test_cases_of_a_check_cross_and_compare_like_the_originals(tmp_path):
    check = welcome.rgb_to_grayscale
    cases = list(check.all_cases(seed=2026, hidden=True))
    exchange.write(tmp_path, "cases", [public(case) for case in cases])
    from course_utils.checks.core import Case

    for original, fields in zip(cases, exchange.read(tmp_path, "cases"), strict=True):
        case = Case(**fields)
        outputs = run_function(welcome._reference_rgb_to_grayscale, case)
        exchange.write(tmp_path, "outputs", outputs, strict=False)
        check.compare(original, exchange.read(tmp_path, "outputs"),
                      check.run_reference(original))


def test_what_the_student_returns_cannot_pretend_to_be_a_tensor(tmp_path):
    class AlwaysEqual:
        def __eq__(self, other):
            return True

    class Sneaky(torch.Tensor):
        pass

    back = roundtrip(tmp_path, {"output": AlwaysEqual(), "sub": torch.zeros(2).as_subclass(Sneaky),
                                "objects": np.array([object()])}, strict=False)
    assert all(isinstance(v, exchange.Opaque) for v in back.values())
    assert back["output"] != back["output"]  # an Opaque equals nothing, itself included
    with pytest.raises(CheckFailure, match="should be a torch.Tensor, got Opaque"):
        case = next(welcome.to_chw_float.all_cases())
        welcome.to_chw_float.compare(case, {"output": back["output"]},
                                     welcome.to_chw_float.run_reference(case))
    with pytest.raises(TypeError, match="cannot send"):
        exchange.write(tmp_path, "strict", AlwaysEqual())


def test_links_pickles_lies_and_oversized_files_are_refused(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"value": 1, "arrays": 0}))
    os.symlink(secret, tmp_path / "link.json")
    with pytest.raises(exchange.ExchangeError, match="cannot open"):
        exchange.read(tmp_path, "link")

    exchange.write(tmp_path, "big", torch.zeros(1000))
    with pytest.raises(exchange.ExchangeError, match="budget"):
        exchange.read(tmp_path, "big", max_bytes=1000)

    (tmp_path / "pickled.json").write_text(json.dumps({"value": {"$": "ndarray", "i": 0},
                                                        "arrays": 1}))
    np.save(tmp_path / "pickled-0.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(exchange.ExchangeError, match="Python objects"):
        exchange.read(tmp_path, "pickled")

    (tmp_path / "liar.json").write_text(json.dumps({"value": {"$": "ndarray", "i": 0},
                                                     "arrays": 1}))
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (10**12,)
    with open(tmp_path / "liar-0.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 8)
    with pytest.raises(exchange.ExchangeError, match="header does not match"):
        exchange.read(tmp_path, "liar")

    for name, text in [("notjson", "{"), ("deep", "[" * 100_000 + "]" * 100_000),
                       ("tag", json.dumps({"value": {"$": "eval", "v": "1"}, "arrays": 0})),
                       ("index", json.dumps({"value": {"$": "tensor", "i": 5, "dtype":
                                                       "float32"}, "arrays": 1}))]:
        (tmp_path / f"{name}.json").write_text(text)
        with pytest.raises(exchange.ExchangeError):
            exchange.read(tmp_path, name)
    with pytest.raises(ValueError, match="bad exchange name"):
        exchange.read(tmp_path, "../secret")
