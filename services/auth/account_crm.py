"""What the settings window reads from an account's CRM: its pipelines, briefly cached.

auth holds the account's token, so it makes this call itself (through the shared REST limit) rather
than going through the bus: the window waits for the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.kommo.rest import AccountAccess, KommoRestClient
from libs.runtime import TtlCache
from services.auth.installations import InstallationStore
from services.auth.tokens import TokenKeeper

PIPELINES_TTL_S = 60.0


@dataclass(frozen=True)
class PipelineInfo:
    id: int
    name: str
    is_main: bool


class AccountCrm:
    def __init__(self, rest: KommoRestClient, tokens: TokenKeeper, installations: InstallationStore) -> None:
        self._rest = rest
        self._tokens = tokens
        self._installations = installations
        self._pipelines: TtlCache[str, list[PipelineInfo]] = TtlCache(PIPELINES_TTL_S, self._load)

    async def _load(self, account_id: str) -> list[PipelineInfo]:
        installation = await self._installations.by_account(account_id)
        token, _ = await self._tokens.access_token(account_id)
        found = await self._rest.pipelines(AccountAccess(installation.domain, token))
        return [
            PipelineInfo(int(p["id"]), str(p.get("name") or ""), bool(p.get("is_main")))
            for p in found
            if isinstance(p.get("id"), int)
        ]

    async def pipelines(self, account_id: str) -> list[PipelineInfo]:
        return await self._pipelines.get(account_id)
