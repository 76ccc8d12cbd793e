"""The language each account's managers read delivery statuses in, as the auth service keeps it."""

from __future__ import annotations

import logging

from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc

from libs.errors import NotFoundError, RetryableError
from libs.rpc import call
from libs.runtime import TtlCache
from libs.status_texts import DEFAULT_LANGUAGE, normalize_language

log = logging.getLogger(__name__)

LANGUAGE_TTL_S = 60.0


class AccountLanguages:
    """Per scope_id, cached a minute: a language an admin changes shows in statuses within that minute."""

    def __init__(self, auth: auth_pb2_grpc.AuthServiceAsyncStub) -> None:
        self._auth = auth
        self._languages: TtlCache[str, str] = TtlCache(LANGUAGE_TTL_S, self._load)

    async def _load(self, scope_id: str) -> str:
        try:
            installation = await call(self._auth.GetInstallation, auth_pb2.GetInstallationRequest(scope_id=scope_id))
        except NotFoundError:
            return DEFAULT_LANGUAGE
        return normalize_language(installation.language)

    async def of(self, scope_id: str) -> str:
        """The account's language. While auth cannot be reached (and nothing is cached) the status still
        goes out, in English: a status held back for its language would leave the manager guessing."""
        try:
            return await self._languages.get(scope_id)
        except RetryableError as exc:
            log.warning("account language unknown, English meanwhile", extra={"scope_id": scope_id, "reason": str(exc)})
            return DEFAULT_LANGUAGE
