"""A multipart/form-data upload read by an emulator as it streams in: plain fields into memory, each file
part written to disk and hashed on the way, so a gigabyte upload costs no memory.

The emulator gives the refusals its platform answers with (`file_too_large`, `field_too_large`); a body
that cannot be parsed, or ends early, propagates as python-multipart's MultipartParseError or starlette's
ClientDisconnect for the emulator to answer in its platform's shape. Whatever fails, no spooled file is
left behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final, Generic, TypeVar

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

FORM_ALLOWANCE: Final = 2**20
"""The most a plain form field may hold; also the room left for the fields around the files when a
request's Content-Length is checked up front."""
_CALLBACKS: Final = (
    "on_part_begin",
    "on_header_field",
    "on_header_value",
    "on_header_end",
    "on_headers_finished",
    "on_part_data",
    "on_part_end",
)


@dataclass
class SpooledFile:
    """One file part, on disk: its name (without any folder), declared Content-Type, size and sha256."""

    file_name: str
    content_type: str
    path: Path
    size: int = 0
    sha256: str = ""


F = TypeVar("F", bound="SpooledFile")


class MultipartSpool(Generic[F]):
    """The fields of one multipart body, by name (a file part's value is its file), and its files in order.
    File parts after the first `max_files` are read as plain fields."""

    def __init__(
        self,
        spool: Callable[[], Path],
        *,
        file_limit: int,
        file_too_large: Callable[[], Exception],
        field_too_large: Callable[[], Exception],
        new_file: Callable[[str, str, Path], F],
        max_files: int | None = None,
    ) -> None:
        self._spool = spool
        self._file_limit = file_limit
        self._file_too_large = file_too_large
        self._field_too_large = field_too_large
        self._new_file = new_file
        self._max_files = max_files
        self.fields: dict[str, str | F] = {}
        self.files: list[F] = []
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._data = bytearray()
        self._file: F | None = None
        self._handle: Any = None
        self._digest: Any = None

    async def read(self, request: Request, boundary: bytes) -> None:
        """Parse the request's body as it arrives; on any failure the spooled files are removed."""
        parser = MultipartParser(boundary, {name: getattr(self, name) for name in _CALLBACKS})  # type: ignore[arg-type]
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except BaseException:
            self._close()
            self.discard()
            raise
        self._close()

    def discard(self) -> None:
        """Remove every spooled file."""
        for file in self.files:
            file.path.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def on_part_begin(self) -> None:
        self._headers = {}
        self._data = bytearray()
        self._file = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        room = self._max_files is None or len(self.files) < self._max_files
        if b"filename" in options and room:
            content_type, _ = parse_options_header(self._headers.get(b"content-type", b""))
            name = PurePosixPath(options[b"filename"].decode("utf-8", "replace")).name
            self._file = self._new_file(name, content_type.decode("latin-1"), self._spool())
            self._handle = self._file.path.open("wb")
            self._digest = hashlib.sha256()
            self.files.append(self._file)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None:
            if len(self._data) + end - start > FORM_ALLOWANCE:
                raise self._field_too_large()
            self._data += data[start:end]
            return
        self._file.size += end - start
        if self._file.size > self._file_limit:
            raise self._file_too_large()
        self._digest.update(data[start:end])
        self._handle.write(data[start:end])

    def on_part_end(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._file is not None:
            self._close()
            self._file.sha256 = self._digest.hexdigest()
            self.fields[name] = self._file
        else:
            self.fields[name] = self._data.decode("utf-8", "replace")
