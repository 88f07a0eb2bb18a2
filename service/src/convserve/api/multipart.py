"""``multipart/form-data`` bodies parsed whole, from memory, in one pass.

:class:`~convserve.api.middleware.RequestContextMiddleware` reads every body whole before the
route runs, so there is nothing to stream: this module feeds the whole body to python-multipart's
parser in one write (the parser Starlette's ``request.form()`` uses, so the same bodies are
accepted and refused, with the same messages), keeps each part as slices of the body, and joins
each once. Starlette's form parser, made for bodies that arrive in chunks, awaits each chunk,
copies file parts into a spooled temporary file and reads them back: about twice the work for
a 360 kB upload.

The limits are Starlette's, with its messages: ``max_files`` file parts (those with a
``filename``), ``max_fields`` text fields, each text field at most ``max_part_size`` bytes; a
part's headers at most python-multipart's own bounds.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import TOKEN_CHARS, MultipartParser, parse_options_header

__all__ = ["FilePart", "Form", "MultipartError", "parse_form"]


class MultipartError(ValueError):
    """A body that is not valid ``multipart/form-data``, or over a limit (a 400)."""


@dataclass(frozen=True)
class FilePart:
    """A part with a ``filename``: its bytes, file name and declared media type."""

    data: bytes
    filename: str
    content_type: str | None


class Form:
    """The parts of a form in their order: text fields as ``str``, files as :class:`FilePart`."""

    def __init__(self, items: list[tuple[str, str | FilePart]]) -> None:
        self._items = items

    def multi_items(self) -> list[tuple[str, str | FilePart]]:
        """Every (name, value) pair, in the body's order, repeated names included."""
        return list(self._items)

    def get(self, name: str) -> str | FilePart | None:
        """The last value named ``name`` (as Starlette's ``FormData.get``), or None."""
        found: str | FilePart | None = None
        for key, value in self._items:
            if key == name:
                found = value
        return found


def _decode(data: bytes, charset: str) -> str:
    """Text as Starlette decodes it: the form's charset, else Latin-1 (never an error)."""
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return data.decode("latin-1")


class _Collector:
    """python-multipart's callbacks: each part's headers and the slices of its data."""

    def __init__(self, charset: str, max_files: int, max_fields: int, max_part_size: int) -> None:
        self.charset = charset
        self.max_files, self.max_fields, self.max_part_size = max_files, max_fields, max_part_size
        self.items: list[tuple[str, str | FilePart]] = []
        self.files = 0
        self.fields = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._chunks: list[bytes | memoryview] = []
        self._size = 0
        self._name = ""
        self._filename: str | None = None

    def on_part_begin(self) -> None:
        self._headers = {}
        self._chunks = []
        self._size = 0
        self._filename = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise MultipartError('The Content-Disposition header field "name" must be provided.')
        self._name = _decode(options[b"name"], self.charset)
        if b"filename" in options:
            self.files += 1
            if self.files > self.max_files:
                raise MultipartError(
                    f"Too many files. Maximum number of files is {self.max_files}.")
            self._filename = _decode(options[b"filename"], self.charset)
        else:
            self.fields += 1
            if self.fields > self.max_fields:
                raise MultipartError(
                    f"Too many fields. Maximum number of fields is {self.max_fields}.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._filename is None and self._size > self.max_part_size:
            raise MultipartError(
                f"Part exceeded maximum size of {int(self.max_part_size / 1024)}KB.")
        self._chunks.append(memoryview(data)[start:end])  # the body stays as it is until joined

    def on_part_end(self) -> None:
        data = b"".join(self._chunks)
        self._chunks = []
        if self._filename is None:
            self.items.append((self._name, _decode(data, self.charset)))
            return
        content_type = self._headers.get(b"content-type")
        self.items.append((self._name, FilePart(
            data, self._filename, None if content_type is None else content_type.decode("latin-1"),
        )))


def parse_form(body: bytes, content_type: str, *, max_files: int, max_fields: int,
               max_part_size: int) -> Form:
    """The parts of ``body``, a whole ``multipart/form-data`` body under ``content_type``.

    Raises
    ------
    MultipartError
        No boundary in ``content_type``, a body the parser refuses, or a limit passed; the
        message is Starlette's for the same body.
    """
    _, params = parse_options_header(content_type)
    charset_value = params.get(b"charset", b"utf-8")
    try:
        charset = codecs.lookup(charset_value.decode("latin-1")).name
    except LookupError:
        charset = "latin-1"
    boundary = params.get(b"boundary")
    if boundary is None:
        raise MultipartError("Missing boundary in multipart.")
    collector = _Collector(charset, max_files, max_fields, max_part_size)
    callbacks = {
        "on_part_begin": collector.on_part_begin,
        "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished,
    }
    if not _parse_plain(body, boundary, collector):
        collector = _Collector(charset, max_files, max_fields, max_part_size)
        callbacks = {name: getattr(collector, name) for name in callbacks}
        try:
            parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
            parser.write(body)
            parser.finalize()
        except FormParserError:
            raise MultipartError("Invalid multipart data.") from None
    return Form(collector.items)


_MAX_HEADERS = 8
_MAX_HEADER_LINE = 4096
"""Below python-multipart's own bounds (8 headers a part, 4096 + 128 bytes a line)."""


def _parse_plain(body: bytes, boundary: bytes, collector: _Collector) -> bool:
    """Parse ``body`` when it has the plain shape every client sends, calling ``collector``
    as python-multipart would; False at the first thing that is not plain (the caller then
    starts again with python-multipart, which accepts or refuses it as Starlette does).

    Plain: the first delimiter at offset 0, each delimiter followed by CRLF (another part) or
    ``--`` (the last; anything after it is an epilogue), at most 8 headers of ``token: value``
    a part (each line under 4096 bytes), and a part's data up to the first CRLF-delimiter.
    A limit the collector enforces is raised at once: python-multipart would raise the same.
    """
    delimiter = b"--" + boundary
    closing = b"\r\n" + delimiter
    if not body.startswith(delimiter + b"\r\n"):
        return False
    pos = len(delimiter) + 2
    while True:
        if body.startswith(b"\r\n", pos):
            lines: list[bytes] = []
            data_start = pos + 2
        else:
            end = body.find(b"\r\n\r\n", pos)
            if end < 0:
                return False
            lines = body[pos:end].split(b"\r\n")
            data_start = end + 4
        if len(lines) > _MAX_HEADERS:
            return False
        headers: list[tuple[bytes, bytes]] = []
        for line in lines:
            name, colon, value = line.partition(b":")
            if (not colon or not name or name.translate(None, TOKEN_CHARS)
                    or len(line) >= _MAX_HEADER_LINE or b"\r" in line or b"\n" in line):
                return False
            headers.append((name, value.lstrip(b" ")))
        data_end = body.find(closing, data_start)
        if data_end < 0:
            return False
        after = data_end + len(closing)
        last = body.startswith(b"--", after)
        if not last and not body.startswith(b"\r\n", after):
            return False
        collector.on_part_begin()
        for name, value in headers:
            collector.on_header_field(name, 0, len(name))
            collector.on_header_value(value, 0, len(value))
            collector.on_header_end()
        collector.on_headers_finished()
        collector.on_part_data(body, data_start, data_end)
        collector.on_part_end()
        if last:
            return True
        pos = after + 2
