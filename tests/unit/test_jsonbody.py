"""``convserve.jsonbody``: standard JSON, base64 joined in as bytes, a member added last."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest

from convserve import jsonbody
from convserve.jsonbody import Base64


def test_non_finite_numbers_become_null_and_numpy_values_are_written() -> None:
    value = {"a": float("nan"), "b": [np.float32(1.5), np.inf], "c": np.arange(3)}
    assert json.loads(jsonbody.dumps(value)) == {"a": None, "b": [1.5, None], "c": [0, 1, 2]}


@pytest.mark.parametrize("size", [0, 1, 2, 3, 100, 65_537])
def test_base64_values_decode_to_their_bytes(size: int) -> None:
    data = os.urandom(size)
    other = os.urandom(7)
    text = jsonbody.dumps({"channels": [{"index": 0, "png_base64": Base64(data)},
                                        {"index": 1, "png_base64": Base64(other)}],
                           "name": "after"})
    parsed = json.loads(text)
    assert base64.b64decode(parsed["channels"][0]["png_base64"], validate=True) == data
    assert base64.b64decode(parsed["channels"][1]["png_base64"], validate=True) == other
    assert parsed["name"] == "after"
    assert text == json.dumps({"channels": [
        {"index": 0, "png_base64": base64.b64encode(data).decode()},
        {"index": 1, "png_base64": base64.b64encode(other).decode()}], "name": "after"},
        separators=(",", ":")).encode()


def test_text_that_looks_like_a_placeholder_is_left_alone() -> None:
    """The placeholder is made per call, so no string of the answer can be taken for it."""
    value = {"a": '"0', "b": "x0", "c": Base64(b"\x00\xff")}
    assert json.loads(jsonbody.dumps(value)) == {"a": '"0', "b": "x0", "c": "AP8="}


def test_indented_output_takes_base64_too() -> None:
    text = jsonbody.dumps({"png": Base64(b"abc")}, indent=2)
    assert text == b'{\n  "png": "YWJj"\n}'


def test_with_member_adds_a_member_last() -> None:
    body = jsonbody.dumps({"shape": [2, 3], "png": Base64(b"abc")})
    assert json.loads(jsonbody.with_member(body, "timing_ms", {"total": 1.5})) == {
        "shape": [2, 3], "png": "YWJj", "timing_ms": {"total": 1.5}}
    indented = jsonbody.dumps({"a": 1}, indent=2)
    assert json.loads(jsonbody.with_member(indented, "b", None)) == {"a": 1, "b": None}


@pytest.mark.parametrize("body", [b"{}", b"[1]", b'"x"'])
def test_with_member_needs_an_object_with_a_member(body: bytes) -> None:
    with pytest.raises(ValueError, match="at least one member"):
        jsonbody.with_member(body, "timing_ms", {})
