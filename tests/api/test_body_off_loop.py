"""Bodies over 1 MiB are joined and parsed on a worker thread, never on the event loop, so a
large upload or JSON array does not hold up the other requests; smaller ones are parsed in
place. Both answer the same."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from convserve.api import multipart, parsing
from tests.api.conftest import png_bytes


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def where_parsed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """(body bytes, parsed on the event loop) for each multipart body parsed."""
    seen: list[tuple[int, bool]] = []
    real = multipart.parse_form

    def spy(body: bytes, *args: object, **kwargs: object) -> multipart.Form:
        seen.append((len(body), on_event_loop()))
        return real(body, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(parsing, "parse_form", spy)
    return seen


def test_a_small_upload_is_parsed_on_the_event_loop(
    client: TestClient, where_parsed: list[tuple[int, bool]], photo_png: bytes,
) -> None:
    response = client.post("/v1/convolve", files={"image": ("cat.png", photo_png)},
                           data={"preset": "sobel", "format": "npy"})
    assert response.status_code == 200, response.text
    [(size, on_loop)] = where_parsed
    assert size < parsing._INLINE_BYTES and on_loop


def test_a_large_upload_is_parsed_on_a_worker_thread(
    client: TestClient, where_parsed: list[tuple[int, bool]],
) -> None:
    noise = np.random.default_rng(5).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    data = png_bytes(noise)
    assert len(data) > parsing._INLINE_BYTES
    response = client.post("/v1/convolve", files={"image": ("noise.png", data)},
                           data={"preset": "box_blur", "format": "npy"})
    assert response.status_code == 200, response.text
    [(size, on_loop)] = where_parsed
    assert size > len(data) and not on_loop


def test_a_large_json_body_is_validated_on_a_worker_thread_with_the_same_answer(
    client: TestClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[bool] = []
    real = parsing._off_loop

    async def spy(request: object, parse: object) -> object:
        def recording(body: bytes) -> object:
            threads.append(on_event_loop())
            return parse(body)  # type: ignore[operator]
        return await real(request, recording)  # type: ignore[arg-type]

    monkeypatch.setattr(parsing, "_off_loop", spy)
    rng = np.random.default_rng(6)
    answers = []
    for side in (20, 400):  # about 9 kB, then about 1.6 MB of JSON
        array = np.round(rng.random((side, side)), 6).tolist()
        body = {"input": {"array": array}, "kernel": {"weight": [[[[1.0]]]]}, "format": "array"}
        text = json.dumps(body)
        assert (len(text) > parsing._INLINE_BYTES) == (side == 400)
        response = client.post("/v1/convolve", content=text,
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        answers.append((array, response.json()["data"]))
    assert threads == [True, False]
    for array, data in answers:  # a 1x1 kernel of 1: the input itself, as float32
        np.testing.assert_array_equal(np.asarray(data[0], np.float32),
                                      np.asarray(array, np.float32))
