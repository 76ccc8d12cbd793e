"""Files in the Telegram emulator: what clients send, `getFile`, and the file server
(reference/messenger-apis.md §1, "Media download").

A test stores the bytes of a client's file with `POST /_emulator/files?bot_id=…&kind=document&mime_type=…`
(the body is the file, written to disk as it arrives, so a 100 MB file costs no memory) and gets the
file_id, file_unique_id and file_size to put in the client's message (`/_emulator/clients/messages`).
A bot then calls `getFile` and downloads `GET /file/bot<token>/<file_path>`, streamed from disk.

Like the cloud Bot API, getFile refuses files over 20 MB ("Bad Request: file is too big") and a file_id is
valid only for the bot it was sent to. In local mode (a self-hosted telegram-bot-api server with
`--local`, set with `PUT /_emulator/files/mode {"local_api": true}` or `--local-api`) there is no download
limit and getFile answers with an absolute path in the server's working directory; the file server then
plays the static server such a setup puts in front of it, serving `/file/bot<token>/<path relative to
the bot's directory>` (and the absolute form). Downloads are recorded for assertions.
"""

from __future__ import annotations

import hashlib
import mimetypes
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from libs.emulation.middleware import CONTROL_PREFIX

if TYPE_CHECKING:
    from libs.messengers.telegram.emulator_state import Bot, TelegramState

CLOUD_DOWNLOAD_LIMIT: Final = 20 * 2**20
LOCAL_WORKING_DIR: Final = "/var/lib/telegram-bot-api"
# The folder Telegram files each kind of message attachment under (as seen in file_path values).
FOLDERS: Final[dict[str, str]] = {
    "photo": "photos",
    "document": "documents",
    "video": "videos",
    "animation": "animations",
    "video_note": "video_notes",
    "voice": "voice",
    "audio": "music",
    "sticker": "stickers",
}


class FileRefused(Exception):
    """getFile's refusal: a 400 with this description (answered in Telegram's envelope by the emulator)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    file_unique_id: str
    bot_id: int
    kind: str
    mime_type: str
    size: int
    sha256: str
    # Relative to the bot's directory, e.g. documents/file_3.pdf.
    file_path: str
    disk_path: Path
    # The name the file was sent with, when it had one (documents, videos, audio).
    file_name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "bot_id": self.bot_id,
            "kind": self.kind,
            "mime_type": self.mime_type,
            "file_size": self.size,
            "sha256": self.sha256,
            "file_path": self.file_path,
        }


@dataclass(frozen=True)
class FileDownload:
    """One request to the file server: which file (None when unknown), with what outcome."""

    bot_id: int | None
    file_id: str | None
    path: str
    status: int
    size: int
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "bot_id": self.bot_id,
            "file_id": self.file_id,
            "path": self.path,
            "status": self.status,
            "file_size": self.size,
            "at": self.at,
        }


class FileStore:
    """Client files on disk, in a private temporary folder removed by `close()`."""

    def __init__(self, *, local_api: bool = False) -> None:
        self.local_api = local_api
        self._dir = tempfile.TemporaryDirectory(prefix="telegram-files-")
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._by_path: dict[tuple[int, str], StoredFile] = {}
        self._counters: dict[tuple[int, str], int] = {}
        self.downloads: list[FileDownload] = []

    @property
    def download_limit(self) -> int | None:
        return None if self.local_api else CLOUD_DOWNLOAD_LIMIT

    async def save(self, request: Request, bot: Bot, kind: str, mime_type: str, file_name: str) -> StoredFile:
        """Write the request body to disk chunk by chunk, hashing as it goes."""
        if kind not in FOLDERS:
            raise ValueError(f"kind must be one of {sorted(FOLDERS)}")
        disk_path = self.spool_path()
        digest = hashlib.sha256()
        size = 0
        with disk_path.open("wb") as handle:
            async for chunk in request.stream():
                digest.update(chunk)
                size += len(chunk)
                handle.write(chunk)
        if size == 0:
            disk_path.unlink()
            raise ValueError("the file is empty: Telegram keeps no empty files")
        return self.keep(bot, kind, mime_type, file_name, disk_path, digest.hexdigest())

    def spool_path(self) -> Path:
        """A fresh path in the store's folder, for a file being received (see `keep`)."""
        return Path(self._dir.name) / secrets.token_hex(16)

    def keep(self, bot: Bot, kind: str, mime_type: str, file_name: str, disk_path: Path, sha256: str) -> StoredFile:
        """Register a file written at a `spool_path()` (a client's, or one a bot sent) under a new file_id."""
        size = disk_path.stat().st_size
        extension = Path(file_name).suffix or mimetypes.guess_extension(mime_type or "") or ""
        with self._lock:
            number = self._counters.get((bot.id, kind), 0)
            self._counters[(bot.id, kind)] = number + 1
            stored = StoredFile(
                file_id=_file_id(kind),
                file_unique_id="AgAD" + secrets.token_urlsafe(9),
                bot_id=bot.id,
                kind=kind,
                mime_type=mime_type,
                size=size,
                sha256=sha256,
                file_path=f"{FOLDERS[kind]}/file_{number}{extension}",
                disk_path=disk_path,
                file_name=file_name,
            )
            self._files[stored.file_id] = stored
            self._by_path[(bot.id, stored.file_path)] = stored
        return stored

    def lookup(self, bot: Bot, file_id: str) -> StoredFile | None:
        """The bot's file with this file_id (file_ids are per bot), to send again."""
        with self._lock:
            stored = self._files.get(file_id)
        return stored if stored is not None and stored.bot_id == bot.id else None

    def get_file(self, bot: Bot, file_id: str) -> dict[str, Any]:
        """The File object getFile answers, or Telegram's refusal."""
        if not file_id:
            raise FileRefused("Bad Request: file_id not specified")
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None or stored.bot_id != bot.id:  # file_ids are per bot
            raise FileRefused("Bad Request: invalid file_id")
        limit = self.download_limit
        if limit is not None and stored.size > limit:
            raise FileRefused("Bad Request: file is too big")
        path = f"{LOCAL_WORKING_DIR}/{bot.token}/{stored.file_path}" if self.local_api else stored.file_path
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": path,
        }

    def find(self, bot: Bot, path: str) -> StoredFile | None:
        """The file at a download path: relative to the bot's directory, or (local mode) absolute."""
        prefix = f"/{LOCAL_WORKING_DIR.strip('/')}/{bot.token}/"
        if path.startswith("/"):
            if not path.startswith(prefix):
                return None
            path = path[len(prefix) :]
        with self._lock:
            return self._by_path.get((bot.id, path))

    def record(self, download: FileDownload) -> None:
        with self._lock:
            self.downloads.append(download)

    def recorded(self) -> list[FileDownload]:
        with self._lock:
            return list(self.downloads)

    def clear_downloads(self) -> None:
        with self._lock:
            self.downloads.clear()

    def close(self) -> None:
        self._dir.cleanup()


def _file_id(kind: str) -> str:
    # Shaped like Telegram's: a type prefix, then opaque base64url.
    prefixes = {"photo": "AgAC", "sticker": "CAAC", "voice": "AwAC", "video": "BAAC", "video_note": "DQAC"}
    return prefixes.get(kind, "BQAC") + "AgIAAxkBAAI" + secrets.token_urlsafe(40)


def _not_found() -> Response:
    return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)


def file_routes(state: TelegramState) -> list[Route]:
    """The file server and the `/_emulator/files…` control routes."""
    files = state.files

    async def download(request: Request) -> Response:
        path = request.path_params["path"]
        bot = state.bot_by_token(request.path_params["token"])
        if bot is None:
            files.record(FileDownload(None, None, path, 401, 0, time.time()))
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401)
        stored = files.find(bot, path)
        if stored is None or not stored.disk_path.exists():
            files.record(FileDownload(bot.id, None, path, 404, 0, time.time()))
            return _not_found()
        files.record(FileDownload(bot.id, stored.file_id, path, 200, stored.size, time.time()))
        # Streamed from disk in chunks, with Content-Length.
        return FileResponse(stored.disk_path, media_type=stored.mime_type or "application/octet-stream")

    async def upload(request: Request) -> Response:
        query = request.query_params
        try:
            bot = state.bot(int(query.get("bot_id", "")))
            stored = await files.save(
                request, bot, query.get("kind", "document"), query.get("mime_type", ""), query.get("name", "")
            )
        except KeyError as exc:
            return JSONResponse({"error": str(exc.args[0]) if exc.args else "not found"}, status_code=404)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(stored.to_json(), status_code=201)

    async def mode(request: Request) -> Response:
        if request.method == "PUT":
            data: Any = await request.json()
            if not isinstance(data, dict) or not isinstance(data.get("local_api"), bool):
                return JSONResponse({"error": 'the body must be {"local_api": true|false}'}, status_code=400)
            files.local_api = data["local_api"]
        return JSONResponse({"local_api": files.local_api, "download_limit": files.download_limit})

    async def downloads(request: Request) -> Response:
        if request.method == "DELETE":
            files.clear_downloads()
            return JSONResponse({"cleared": True})
        return JSONResponse({"downloads": [d.to_json() for d in files.recorded()]})

    return [
        Route("/file/bot{token}/{path:path}", download, methods=["GET"]),
        Route(CONTROL_PREFIX + "files", upload, methods=["POST"]),
        Route(CONTROL_PREFIX + "files/mode", mode, methods=["GET", "PUT"]),
        Route(CONTROL_PREFIX + "files/downloads", downloads, methods=["GET", "DELETE"]),
    ]
