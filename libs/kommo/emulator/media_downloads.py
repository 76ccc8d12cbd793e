"""amojo fetching the files of the messages it accepts (§4: `media` is a public URL Kommo downloads).

Kommo answers `new_message` at once and processes it asynchronously, downloading the file on its side;
the emulator does the same: each accepted message (or edit) with `media` starts a download that reads
the body in chunks and hashes it as it goes (nothing is kept, so a 100 MB file costs no memory), and
records the HTTP status, the byte count, the SHA-256, the Content-Type and the file name of the
Content-Disposition. `GET /_emulator/media_downloads?msgid=…` shows them, so a test can prove the bytes
Kommo got through a link equal the bytes the client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass, field
from email.message import Message as MimeHeaders
from email.utils import collapse_rfc2231_value
from typing import Any, Final

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DOWNLOAD_TIMEOUT_S: Final = 30.0


@dataclass
class MediaDownload:
    """One download amojo made of a message's `media`; `done` once it finished or failed."""

    kommo_msgid: str
    msgid: str
    event_type: str
    url: str
    started_at: float
    status: int | None = None
    size: int = 0
    sha256: str = ""
    content_type: str = ""
    content_length: int | None = None
    file_name: str = ""
    error: str = ""
    done: bool = False
    finished_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "kommo_msgid": self.kommo_msgid,
            "msgid": self.msgid,
            "event_type": self.event_type,
            "url": self.url,
            "status": self.status,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "content_length": self.content_length,
            "file_name": self.file_name,
            "error": self.error,
            "done": self.done,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def disposition_file_name(value: str) -> str:
    """The file name a Content-Disposition gives: `filename*` (RFC 8187, UTF-8) first, else `filename`."""
    if not value:
        return ""
    headers = MimeHeaders()
    headers["Content-Disposition"] = value
    plain = ""
    for name, param in headers.get_params(header="content-disposition") or []:
        if name.lower() != "filename":
            continue
        if isinstance(param, tuple):  # the extended form, decoded from its charset
            return collapse_rfc2231_value(param)
        plain = plain or param
    return plain


@dataclass
class MediaDownloader:
    """Starts and records the downloads; `http` may be injected (an ASGI transport in unit tests)."""

    http: httpx.AsyncClient | None = None
    timeout_s: float = DOWNLOAD_TIMEOUT_S
    _downloads: list[MediaDownload] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _owns_http: bool = False

    def start(self, kommo_msgid: str, msgid: str, event_type: str, url: str) -> MediaDownload:
        """Begin downloading `url` in the background (called while answering the API request)."""
        record = MediaDownload(kommo_msgid, msgid, event_type, url, time.time())
        with self._lock:
            self._downloads.append(record)
        task = asyncio.get_running_loop().create_task(self._run(record), name=f"amojo-media-{kommo_msgid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    def downloads(self, *, msgid: str = "", kommo_msgid: str = "") -> list[MediaDownload]:
        with self._lock:
            return [
                d
                for d in self._downloads
                if (not msgid or d.msgid == msgid) and (not kommo_msgid or d.kommo_msgid == kommo_msgid)
            ]

    async def _run(self, record: MediaDownload) -> None:
        if self.http is None:
            self.http = httpx.AsyncClient(follow_redirects=True)
            self._owns_http = True
        digest = hashlib.sha256()
        try:
            async with self.http.stream("GET", record.url, timeout=self.timeout_s) as response:
                record.status = response.status_code
                record.content_type = response.headers.get("content-type", "")
                length = response.headers.get("content-length", "")
                record.content_length = int(length) if length.isdigit() else None
                record.file_name = disposition_file_name(response.headers.get("content-disposition", ""))
                if response.is_success:
                    async for chunk in response.aiter_bytes():
                        digest.update(chunk)
                        record.size += len(chunk)
                    record.sha256 = digest.hexdigest()
                else:
                    record.error = (await response.aread())[:500].decode("utf-8", "replace")
        except httpx.HTTPError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            record.finished_at = time.time()
            record.done = True

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._owns_http and self.http is not None:
            await self.http.aclose()
            self.http = None
            self._owns_http = False


def media_download_routes(downloader: MediaDownloader) -> list[Route]:
    """`GET /_emulator/media_downloads?msgid=…&kommo_msgid=…`."""

    async def downloads(request: Request) -> Response:
        found = downloader.downloads(
            msgid=request.query_params.get("msgid", ""), kommo_msgid=request.query_params.get("kommo_msgid", "")
        )
        return JSONResponse({"downloads": [d.to_json() for d in found]})

    return [Route("/_emulator/media_downloads", downloads, methods=["GET"])]
