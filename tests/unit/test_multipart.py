"""``convserve.api.multipart``: the same parts, and the same refusals, as Starlette's form
parser, for well-formed bodies and for a few thousand broken ones."""

from __future__ import annotations

import asyncio
import random

import pytest
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from convserve.api.multipart import FilePart, MultipartError, _Collector, _parse_plain, parse_form

BOUNDARY = "XyZ--b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
LIMITS = {"max_files": 2, "max_fields": 8, "max_part_size": 4096}


def body(*parts: tuple[str, bytes], boundary: str = BOUNDARY) -> bytes:
    """A body of ``(headers, data)`` parts."""
    out = b""
    for headers, data in parts:
        out += f"--{boundary}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def field(name: str, value: bytes) -> tuple[str, bytes]:
    return f'Content-Disposition: form-data; name="{name}"', value


def file(name: str, filename: str, data: bytes, media: str = "image/png") -> tuple[str, bytes]:
    return (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {media}"), data


def starlette(data: bytes, content_type: str = CONTENT_TYPE) -> list[tuple[str, object]] | str:
    """What Starlette's ``request.form()`` makes of ``data``: the items, or its 400 detail."""

    async def run() -> list[tuple[str, object]] | str:
        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": data, "more_body": False}

        request = Request({"type": "http", "method": "POST", "path": "/", "query_string": b"",
                           "headers": [(b"content-type", content_type.encode())]}, receive)
        try:
            form = await request.form(**LIMITS)
        except HTTPException as exc:  # in an app
            return str(exc.detail)
        except MultiPartException as exc:  # outside one, as here
            return exc.message
        items: list[tuple[str, object]] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                items.append((name, (await value.read(), value.filename,
                                     value.headers.get("content-type"))))
            else:
                items.append((name, value))
        await form.close()
        return items

    return asyncio.run(run())


def ours(data: bytes, content_type: str = CONTENT_TYPE) -> list[tuple[str, object]] | str:
    try:
        form = parse_form(data, content_type, **LIMITS)
    except MultipartError as exc:
        return str(exc)
    return [(name, (value.data, value.filename, value.content_type)
             if isinstance(value, FilePart) else value) for name, value in form.multi_items()]


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4 + b"\r\n--XyZ--b0undar\r\n\r\n--"
WELL_FORMED = {
    "fields-and-file": body(field("preset", b"sobel"), file("image", "a.png", PNG),
                            field("format", b"json")),
    "repeated-name": body(field("a", b"1"), field("a", b"2")),
    "empty-file": body(file("image", "", b"")),
    "utf8-name-and-value": body(field("caf\u00e9", "\u00fcml\u00e4ut".encode())),
    "latin1-bytes": body(field("x", b"\xff\xfe")),
    "quoted-filename": body(("Content-Disposition: form-data; name=\"image\"; "
                             "filename=\"a \\\"b\\\".png\"", b"data")),
    "no-content-type": body(("Content-Disposition: form-data; name=\"f\"; filename=\"f\"",
                             b"data")),
    "preamble-crlf": b"\r\n\r\n" + body(field("a", b"1")),
    "epilogue": body(field("a", b"1")) + b"trailing words",
}


@pytest.mark.parametrize("name", list(WELL_FORMED))
def test_well_formed_bodies_give_starlettes_parts(name: str) -> None:
    data = WELL_FORMED[name]
    expected = starlette(data)
    assert not isinstance(expected, str), expected
    assert ours(data) == expected


def test_the_file_part_keeps_bytes_that_look_like_a_boundary() -> None:
    parts = ours(WELL_FORMED["fields-and-file"])
    assert parts[1] == ("image", (PNG, "a.png", "image/png"))


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        pytest.param(b"garbage", CONTENT_TYPE, id="garbage"),
        pytest.param(WELL_FORMED["repeated-name"], "multipart/form-data", id="no-boundary"),
        pytest.param(body(*[field(str(i), b"v") for i in range(9)]), CONTENT_TYPE,
                     id="too-many-fields"),
        pytest.param(body(*[file("f", f"{i}.png", b"v") for i in range(3)]), CONTENT_TYPE,
                     id="too-many-files"),
        pytest.param(body(field("big", b"v" * 4097)), CONTENT_TYPE, id="field-too-large"),
        pytest.param(body(("Content-Disposition: form-data", b"v")), CONTENT_TYPE,
                     id="no-name"),
        pytest.param(body(("Bad Header: x", b"v")), CONTENT_TYPE, id="bad-header"),
    ],
)
def test_refusals_have_starlettes_messages(data: bytes, content_type: str) -> None:
    expected = starlette(data, content_type)
    assert isinstance(expected, str)
    assert ours(data, content_type) == expected


def test_a_file_part_may_be_larger_than_a_field() -> None:
    big = b"v" * 10_000
    assert ours(body(file("image", "a.png", big))) == [("image", (big, "a.png", "image/png"))]


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(out) + 1)
        kind = rng.randrange(5)
        if kind == 0 and out:
            out[min(where, len(out) - 1)] = rng.randrange(256)
        elif kind == 1:
            out[where:where] = rng.choice([b"\r", b"\n", b"\r\n", b"-", b"--", b":", b";",
                                           b'"', BOUNDARY.encode(), b"\r\n--" + BOUNDARY.encode()])
        elif kind == 2:
            del out[where:where + rng.randint(1, 12)]
        elif kind == 3:
            del out[where:]
        else:
            out[where:where] = out[rng.randrange(len(out) + 1):][:rng.randint(1, 40)]
    return bytes(out)


# Starlette's parser, the oracle here, leaves a spooled file unclosed for some bodies it
# refuses (garbage collected with a ResourceWarning); convserve's parser makes no files.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_broken_bodies_are_parsed_or_refused_as_starlette_does() -> None:
    rng = random.Random(1207)
    seeds = list(WELL_FORMED.values())
    for round_ in range(2000):
        data = mutate(rng.choice(seeds), rng)
        assert ours(data) == starlette(data), (round_, data)


@pytest.mark.parametrize("name", list(WELL_FORMED))
def test_plain_bodies_take_the_one_pass_path(name: str) -> None:
    """Bodies as clients send them are split with ``bytes.find`` alone; the rest (here a
    preamble) go through python-multipart's state machine."""
    collector = _Collector("utf-8", **LIMITS)
    plain = _parse_plain(WELL_FORMED[name], BOUNDARY.encode(), collector)
    assert plain == (name != "preamble-crlf")
