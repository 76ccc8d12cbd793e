"""A faithful emulator of Kommo's chat API ("amojo") for tests and sandbox mode (ARCHITECTURE §8).

It checks every request exactly as amojo does (§1: Content-Type, Content-MD5 over the exact bytes, a Date
within 15 minutes, the HMAC over the string to sign with the channel's secret), validates bodies as
strictly as amojo types them, answers with Kommo's error shapes, records every request, injects faults,
and plays the Kommo side of a chat: a manager's reply becomes a signed v2 webhook POSTed once to the
channel's hook URL (§9).

    app, state = create_amojo_emulator()
    state.register_channel(channel_id, secret, "https://bridge/hooks/kommo/:scope_id")

A chat's first non-silent incoming message reaches `crm` (a `CrmState`, shared with the account
emulator, which serves it over REST v4) and makes its contact and incoming lead.

Modules: `api` (endpoints and signature checks), `validation` (body typing), `state` (what amojo knows,
manager replies), `records` (stored shapes), `crm` and `crm_records` (the CRM chats reach), `control`
(`/_emulator/…` routes), `errors` (error bodies), `app` (assembly and `main`).
"""

from libs.kommo.emulator.app import create_amojo_emulator, main
from libs.kommo.emulator.crm import CrmState, CrmValidationError
from libs.kommo.emulator.crm_records import ChatLink, Contact, IncomingLead, Pipeline, Source, Status
from libs.kommo.emulator.errors import KommoError, kommo_error_response
from libs.kommo.emulator.records import Channel, Chat, Connection, DeliveryStatus, HookResult, Message, Typing, User
from libs.kommo.emulator.state import HOOK_TIMEOUT_S, AmojoState

__all__ = [
    "HOOK_TIMEOUT_S",
    "AmojoState",
    "Channel",
    "Chat",
    "ChatLink",
    "Connection",
    "Contact",
    "CrmState",
    "CrmValidationError",
    "DeliveryStatus",
    "HookResult",
    "IncomingLead",
    "KommoError",
    "Message",
    "Pipeline",
    "Source",
    "Status",
    "Typing",
    "User",
    "create_amojo_emulator",
    "kommo_error_response",
    "main",
]
