"""A multipart/form-data request body whose one file is streamed: the platforms' upload endpoints
(Telegram's send methods, WhatsApp's media upload) take a file this way, and a file may be far larger
than memory should hold, so its bytes pass through chunk by chunk as they arrive."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Final

# The HTML5 form encoding of names in Content-Disposition (what browsers and httpx send).
_HTML5_ESCAPES: Final = {'"': "%22", "\\": "\\\\", **{chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B}}
_HTML5_ESCAPE_RE: Final = re.compile("|".join(re.escape(c) for c in _HTML5_ESCAPES))


def _disposition_param(name: str, value: str) -> bytes:
    return f'{name}="{_HTML5_ESCAPE_RE.sub(lambda m: _HTML5_ESCAPES[m.group(0)], value)}"'.encode()


class MultipartBody:
    """A multipart/form-data body of plain fields and one file whose bytes are streamed: the preamble
    (every field, then the file part's headers), the file's chunks as they come, the epilogue. The bytes
    are those of a standard encoder (httpx, browsers); the length is known up front when the file's is."""

    def __init__(
        self, fields: Sequence[tuple[str, str]], file_field: str, file_name: str, mime_type: str, boundary: str = ""
    ) -> None:
        self.boundary = boundary or secrets.token_hex(16)
        delimiter = b"--" + self.boundary.encode("ascii") + b"\r\n"
        parts = [
            delimiter + b"Content-Disposition: form-data; " + _disposition_param("name", name) + b"\r\n\r\n"
            + value.encode("utf-8") + b"\r\n"
            for name, value in fields
        ]  # fmt: skip
        parts.append(
            delimiter + b"Content-Disposition: form-data; " + _disposition_param("name", file_field) + b"; "
            + _disposition_param("filename", file_name) + b"\r\nContent-Type: " + mime_type.encode("latin-1")
            + b"\r\n\r\n"
        )  # fmt: skip
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
