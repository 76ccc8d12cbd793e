"""multipart/form-data request bodies whose files are streamed: the platforms' upload endpoints
(Telegram's send methods, WhatsApp's media upload) take a file this way, and a file may be far larger
than memory should hold, so its bytes pass through chunk by chunk as they arrive. Telegram's
sendMediaGroup takes several files in one body (`MultipartFilesBody`)."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final

# The HTML5 form encoding of names in Content-Disposition (what browsers and httpx send).
_HTML5_ESCAPES: Final = {'"': "%22", "\\": "\\\\", **{chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B}}
_HTML5_ESCAPE_RE: Final = re.compile("|".join(re.escape(c) for c in _HTML5_ESCAPES))


def _disposition_param(name: str, value: str) -> bytes:
    return f'{name}="{_HTML5_ESCAPE_RE.sub(lambda m: _HTML5_ESCAPES[m.group(0)], value)}"'.encode()


def _delimiter(boundary: str) -> bytes:
    return b"--" + boundary.encode("ascii") + b"\r\n"


def _field_part(delimiter: bytes, name: str, value: str) -> bytes:
    return (
        delimiter + b"Content-Disposition: form-data; " + _disposition_param("name", name) + b"\r\n\r\n"
        + value.encode("utf-8") + b"\r\n"
    )  # fmt: skip


def _file_head(delimiter: bytes, field: str, file_name: str, mime_type: str) -> bytes:
    """A file part's headers; its bytes follow."""
    return (
        delimiter + b"Content-Disposition: form-data; " + _disposition_param("name", field) + b"; "
        + _disposition_param("filename", file_name) + b"\r\nContent-Type: " + mime_type.encode("latin-1")
        + b"\r\n\r\n"
    )  # fmt: skip


class MultipartBody:
    """A multipart/form-data body of plain fields and one file whose bytes are streamed: the preamble
    (every field, then the file part's headers), the file's chunks as they come, the epilogue. The bytes
    are those of a standard encoder (httpx, browsers); the length is known up front when the file's is."""

    def __init__(
        self, fields: Sequence[tuple[str, str]], file_field: str, file_name: str, mime_type: str, boundary: str = ""
    ) -> None:
        self.boundary = boundary or secrets.token_hex(16)
        delimiter = _delimiter(self.boundary)
        parts = [_field_part(delimiter, name, value) for name, value in fields]
        parts.append(_file_head(delimiter, file_field, file_name, mime_type))
        self.preamble = b"".join(parts)
        self.epilogue = b"\r\n--" + self.boundary.encode("ascii") + b"--\r\n"

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def content_length(self, file_size: int) -> int:
        return len(self.preamble) + file_size + len(self.epilogue)

    async def stream(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        yield self.preamble
        async for chunk in chunks:
            if chunk:
                yield chunk
        yield self.epilogue


@dataclass(frozen=True)
class FilePart:
    """One streamed file of a `MultipartFilesBody`: its form field, name and type, its size when known
    (None: the body has no length up front and goes chunked), and its bytes as they come."""

    field: str
    file_name: str
    mime_type: str
    size: int | None
    chunks: AsyncIterable[bytes]


class MultipartFilesBody:
    """A multipart/form-data body of plain fields and several files, streamed one after the other: each
    file's bytes are read only when the body reaches it, so memory stays bounded whatever the sizes."""

    def __init__(self, fields: Sequence[tuple[str, str]], files: Sequence[FilePart], boundary: str = "") -> None:
        self.boundary = boundary or secrets.token_hex(16)
        delimiter = _delimiter(self.boundary)
        self._fields = b"".join(_field_part(delimiter, name, value) for name, value in fields)
        self._files = list(files)
        # Each file part after the first starts on the line after the previous file's bytes.
        self._heads = [
            (b"\r\n" if index else b"") + _file_head(delimiter, f.field, f.file_name, f.mime_type)
            for index, f in enumerate(self._files)
        ]
        self._epilogue = (b"\r\n" if self._files else b"") + b"--" + self.boundary.encode("ascii") + b"--\r\n"

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int | None:
        """The body's length, when every file's size is known."""
        sizes = [f.size for f in self._files]
        if any(size is None for size in sizes):
            return None
        framing = len(self._fields) + sum(len(head) for head in self._heads) + len(self._epilogue)
        return framing + sum(size for size in sizes if size is not None)

    async def stream(self) -> AsyncIterator[bytes]:
        yield self._fields
        for head, file in zip(self._heads, self._files, strict=True):
            yield head
            async for chunk in file.chunks:
                if chunk:
                    yield chunk
        yield self._epilogue
