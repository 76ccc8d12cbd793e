"""A refresh that waited for the installation's lock while another caller's refresh was refused must
fail too: handing out the dead token would only move the refusal to Kommo's next answer."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from libs.config import load_settings
from libs.crypto import Keyring, generate_key_spec
from libs.db import create_engine
from libs.errors import CredentialRejectedError
from libs.kommo.oauth import KommoAccountClient
from services.auth.installations import NEEDS_REAUTH, OAUTH_TOKENS, InstallationStore
from services.auth.secret_store import SecretStore
from services.auth.tokens import TokenKeeper

ACCOUNT = "0f1e2d3c-refused"


async def test_a_refresh_finding_the_account_refused_meanwhile_raises(database_url: str) -> None:
    engine = create_engine(database_url)
    installations = InstallationStore(engine)
    key_id, _, key = generate_key_spec("k1").partition(":")
    secrets = SecretStore(engine, Keyring([(key_id, base64.b64decode(key))]))
    async with httpx.AsyncClient() as http:
        # Nothing listens there: a refresh call would fail as unreachable, not as refused.
        oauth = KommoAccountClient("http://127.0.0.1:9/accounts/{domain}", http)
        keeper = TokenKeeper(engine, installations, secrets, oauth, load_settings())
        expired = datetime.now(UTC) - timedelta(minutes=1)
        await installations.save(
            ACCOUNT,
            f"chan_{ACCOUNT}",
            "Shop",
            domain="shop.kommo.com",
            token_kind=OAUTH_TOKENS,
            token_expires_at=expired,
        )
        async with engine.begin() as conn:
            await keeper.store(ACCOUNT, "dead-access", "dead-refresh", conn)
            # The background sweep's refresh was refused while this caller waited for the lock.
            await installations.set_state(ACCOUNT, NEEDS_REAUTH, "invalid_grant", conn=conn)
        with pytest.raises(CredentialRejectedError, match="install the integration again"):
            await keeper.refresh(ACCOUNT)
    await engine.dispose()
