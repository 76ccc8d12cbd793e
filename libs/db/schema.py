"""Every table of the bridge. A table is owned (read and written) by one service only, named in
its comment; the others reach that data through the bus or gRPC."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()


def _created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _parking_lot(name: str, holder: str, holder_type: String, index: str, owner: str) -> Table:
    """A parking lot (libs/bus/parking.py): messages held per `holder` in arrival order, re-published
    in that order when the holder may go on. `message_type` is the bus's Bridge-Type header, restored
    on release; `released_at` marks messages re-published but not yet done."""
    return Table(
        name,
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column(holder, holder_type, nullable=False),
        Column("ordering_key", String(300), nullable=False),
        Column("msg_id", String(300), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("message_type", String(200), nullable=False, server_default=""),
        _created_at(),
        Column("released_at", DateTime(timezone=True), nullable=True),
        Index(index, holder, "id"),
        comment=f"owner: {owner}",
    )


# auth: every secret, encrypted with AES-256-GCM under the key named by key_id.
secrets = Table(
    "secrets",
    metadata,
    Column("owner", String(200), primary_key=True),
    Column("kind", String(100), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    comment="owner: auth",
)

# auth: Kommo accounts the chat channel is connected to.
installations = Table(
    "installations",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("scope_id", String(200), nullable=False, unique=True),
    Column("title", String(200), nullable=False, server_default=""),
    Column("state", String(32), nullable=False, server_default="active"),
    _created_at(),
    Column("connected_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("domain", String(255), nullable=False, server_default=""),
    Column("kommo_account_id", BigInteger, nullable=False, server_default="0"),
    # "oauth" (access + refresh token, refreshed by auth) or "long_lived" (a private integration).
    Column("token_kind", String(16), nullable=False, server_default=""),
    Column("token_expires_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=False, server_default=""),
    # The language managers read delivery statuses in (en, es, pt), and who chose it: "default", the
    # Kommo user who last opened the settings window ("settings_window"), or an operator (bridgectl).
    Column("language", String(8), nullable=False, server_default="en"),
    Column("language_set_by", String(16), nullable=False, server_default="default"),
    Index("ix_installations_kommo_account_id", "kommo_account_id"),
    comment="owner: auth",
)

# auth: the `state` of install links the bridge issued (single use, short-lived: CSRF protection).
oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state", String(64), primary_key=True),
    _created_at(),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Index("ix_oauth_states_expires_at", "expires_at"),  # retention (services/auth/retention.py)
    comment="owner: auth",
)

# auth: sessions of the settings window, opened with Kommo's one-time token; only hashes are stored.
settings_sessions = Table(
    "settings_sessions",
    metadata,
    Column("ticket_hash", String(64), primary_key=True),
    Column("session_hash", String(64), nullable=True, unique=True),
    Column("account_id", String(64), nullable=False),
    Column("kommo_user_id", String(64), nullable=False, server_default=""),
    _created_at(),
    Column("ticket_expires_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_settings_sessions_expires_at", "expires_at"),  # retention (services/auth/retention.py)
    comment="owner: auth",
)

# auth: `jti`s of Kommo one-time tokens already used (each token opens one session), until they expire.
used_widget_tokens = Table(
    "used_widget_tokens",
    metadata,
    Column("jti", String(100), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_used_widget_tokens_expires_at", "expires_at"),  # retention (services/auth/retention.py)
    comment="owner: auth",
)

# router: messenger channels (bots, numbers) connected to a Kommo account.
connections = Table(
    "connections",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("scope_id", String(200), nullable=False),
    Column("platform", String(32), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("display_name", String(200), nullable=False, server_default=""),
    Column("source_external_id", String(40), nullable=False, server_default=""),
    Column("state", String(32), nullable=False, server_default="active"),
    _created_at(),
    # CRM rules (see services/router/settings.py): the Kommo source, the contact rule, the bot label.
    Column("source_name", String(200), nullable=False, server_default=""),
    Column("pipeline_id", BigInteger, nullable=False, server_default="0"),
    Column("contact_rule", String(16), nullable=False, server_default="create"),
    Column("update_profiles", Boolean, nullable=False, server_default=true()),
    Column("robot_label", String(64), nullable=False, server_default="🤖"),
    # Set while the channel is paused (state "paused"): its client messages wait in held_inbound.
    Column("paused_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("platform", "external_id", name="uq_connections_platform_external"),
    comment="owner: router",
)

# router: one row per client chat on a connection; the id is our `conversation_id` at Kommo.
conversations = Table(
    "conversations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("connection_id", String(64), nullable=False),
    Column("chat_id", String(200), nullable=False),
    Column("client_id", String(200), nullable=False),
    Column("profile", JSONB, nullable=False, server_default="{}"),
    _created_at(),
    Column("last_message_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # "open", or "closed" when the client blocked / left: nothing may be sent until they write again.
    Column("state", String(16), nullable=False, server_default="open"),
    Column("closed_reason", String(16), nullable=False, server_default=""),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    # The client's newest message, by the platform's clock, and its platform id: where free text is allowed
    # only for a while after it (WhatsApp's 24-hour window), and where typing shows on it (WhatsApp).
    Column("client_message_at", DateTime(timezone=True), nullable=True),
    Column("client_message_id", String(200), nullable=False, server_default=""),
    # A conversation a manager opened from Kommo ("write first"): Kommo's chat id and its id of the client,
    # which the conversation's first message to Kommo names so it lands in that chat ("" otherwise).
    Column("kommo_chat_ref", String(64), nullable=False, server_default=""),
    Column("kommo_client_ref", String(64), nullable=False, server_default=""),
    UniqueConstraint("connection_id", "chat_id", name="uq_conversations_connection_chat"),
    comment="owner: router",
)

# router: every id a platform names a client by (WhatsApp: phone number and business-scoped user id), mapped
# to the one chat id their conversation was opened with; `phone` / `platform_user_id` are the client's
# current ones (the same on every row of a chat), where a manager's reply goes (services/router/identities.py).
client_identities = Table(
    "client_identities",
    metadata,
    Column("connection_id", String(64), primary_key=True),
    Column("alias", String(200), primary_key=True),
    Column("chat_id", String(200), nullable=False),
    Column("phone", String(64), nullable=False, server_default=""),
    Column("platform_user_id", String(200), nullable=False, server_default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_client_identities_chat", "connection_id", "chat_id"),
    comment="owner: router",
)

# router: every message carried, both directions; dedup_key makes platform retries and bus
# redeliveries harmless beyond JetStream's duplicate window.
messages = Table(
    "messages",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("conversation_id", String(64), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("dedup_key", String(300), nullable=False, unique=True),
    Column("platform_message_id", String(200), nullable=False, server_default=""),
    Column("kommo_message_id", String(64), nullable=False, server_default=""),
    _created_at(),
    # A manager message's content as last carried (a re-sent hook with other content is an edit).
    Column("content_digest", String(64), nullable=False, server_default=""),
    # The reaction a manager has set on this message at the messenger ("" for none).
    Column("manager_reaction", String(32), nullable=False, server_default=""),
    Index("ix_messages_conversation", "conversation_id", "created_at"),
    # The message map: a quote, edit or reaction names its target by the platform's or Kommo's id.
    Index("ix_messages_platform_message", "conversation_id", "platform_message_id"),
    Index("ix_messages_kommo_message", "kommo_message_id"),
    comment="owner: router",
)

# router: client events of paused channels, parked in arrival order (libs/bus/parking.py) and
# re-published in order when the channel is resumed; nothing of a paused channel is lost.
held_inbound = _parking_lot("held_inbound", "connection_id", String(64), "ix_held_inbound_connection", "router")

# router: the items of a manager's album (hooks sharing media_group_id), each with its command for
# messenger_sender, kept until the album is flushed as one send (services/router/albums.py).
album_items = Table(
    "album_items",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("conversation_id", String(64), nullable=False),
    Column("media_group_id", String(200), nullable=False),
    Column("kommo_message_id", String(64), nullable=False, unique=True),
    # The serialized DeliverToMessenger the item would have been sent with alone.
    Column("command", LargeBinary, nullable=False),
    _created_at(),
    Column("flushed_at", DateTime(timezone=True), nullable=True),
    Index("ix_album_items_pending", "conversation_id", "id", postgresql_where=text("flushed_at IS NULL")),
    # Items of albums already sent, by when: retention (services/router/retention.py).
    Index("ix_album_items_flushed", "flushed_at", postgresql_where=text("flushed_at IS NOT NULL")),
    comment="owner: router",
)

# router: a conversation's Kommo events that came while an album of it was pending, parked in arrival
# order (libs/bus/parking.py) and re-published once the album is out, so nothing overtakes it.
held_outbound = _parking_lot("held_outbound", "conversation_id", String(64), "ix_held_outbound_conversation", "router")

# kommo_sender: client messages already accepted by amojo (idempotency of the Kommo hop).
kommo_deliveries = Table(
    "kommo_deliveries",
    metadata,
    Column("msgid", String(64), primary_key=True),
    Column("scope_id", String(200), nullable=False),
    Column("kommo_msgid", String(64), nullable=False),
    Column("kommo_chat_id", String(64), nullable=False, server_default=""),
    _created_at(),
    comment="owner: kommo_sender",
)

# kommo_sender: messages of accounts that need re-authorisation, parked in arrival order so they do
# not block other accounts' partitions; released (re-published) in order once the account is back.
held_commands = _parking_lot("held_commands", "scope_id", String(200), "ix_held_commands_scope", "kommo_sender")

# kommo_sender: the Kommo source of each channel, as last created or updated through /api/v4/sources.
kommo_sources = Table(
    "kommo_sources",
    metadata,
    Column("scope_id", String(200), primary_key=True),
    Column("external_id", String(40), primary_key=True),
    Column("kommo_source_id", BigInteger, nullable=False),
    Column("name", String(200), nullable=False),
    Column("pipeline_id", BigInteger, nullable=False, server_default="0"),
    Column("synced_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The `services` the source was last given in Kommo, as canonical JSON ("" = none declared).
    Column("services", Text, nullable=False, server_default=""),
    comment="owner: kommo_sender",
)

# kommo_sender: conversations whose Kommo chat is set up (source synced, contact linked if the rule
# says so); the first message of a conversation does that work once.
kommo_chats = Table(
    "kommo_chats",
    metadata,
    Column("scope_id", String(200), primary_key=True),
    Column("conversation_id", String(64), primary_key=True),
    Column("kommo_chat_id", String(64), nullable=False, server_default=""),
    Column("contact_id", BigInteger, nullable=False, server_default="0"),
    _created_at(),
    comment="owner: kommo_sender",
)

# Shared coordination, not data: the next free slot of each rate limit (libs/ratelimit.py), so that
# every replica of every service together stays under a platform's limit (Kommo REST: 7 req/s).
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("next_at", DateTime(timezone=True), nullable=False),
    comment="owner: libs.ratelimit (shared by every caller of a rate-limited API)",
)

# kommo_sender: the last delivery status reported to Kommo per manager message; only moves forward.
kommo_statuses = Table(
    "kommo_statuses",
    metadata,
    Column("kommo_msgid", String(64), primary_key=True),
    Column("scope_id", String(200), nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("error_code", SmallInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    comment="owner: kommo_sender",
)

# kommo_sender: every delivery report of a manager message, posted to Kommo or not (a duplicate, a late
# receipt, a failure after delivery): the message's whole history, while Kommo only ever sees it move forward.
delivery_events = Table(
    "delivery_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kommo_msgid", String(64), nullable=False),
    Column("scope_id", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("error_code", SmallInteger, nullable=False, server_default="0"),
    Column("reason", String(64), nullable=False, server_default=""),
    # When it happened at the platform (the report's time), and when the bridge recorded it.
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("posted", Boolean, nullable=False),
    Index("ix_delivery_events_kommo_msgid", "kommo_msgid", "id"),
    Index("ix_delivery_events_recorded_at", "recorded_at"),  # retention (services/kommo_sender/retention.py)
    comment="owner: kommo_sender",
)

# messenger_sender: manager messages already accepted by a messenger (idempotency of that hop).
messenger_deliveries = Table(
    "messenger_deliveries",
    metadata,
    Column("kommo_message_id", String(64), primary_key=True),
    Column("connection_id", String(64), nullable=False),
    Column("platform_message_id", String(200), nullable=False, server_default=""),
    Column("outcome", String(32), nullable=False),
    Column("error_code", SmallInteger, nullable=False, server_default="0"),
    Column("error_text", Text, nullable=False, server_default=""),
    _created_at(),
    # Why it failed, as a key of libs.status_texts with its arguments (rendered in the account's language).
    Column("reason", String(64), nullable=False, server_default=""),
    Column("reason_args", JSONB, nullable=False, server_default="{}"),
    comment="owner: messenger_sender",
)

# gateway: Kommo hooks accepted while JetStream could not take them; replayed in id order.
gateway_spool = Table(
    "gateway_spool",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("stream", String(64), nullable=False),
    Column("ordering_key", String(300), nullable=False),
    Column("msg_id", String(300), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    _created_at(),
    # The protobuf type (the bus's Bridge-Type header), restored when the hook is replayed.
    Column("message_type", String(200), nullable=False, server_default=""),
    Index("ix_gateway_spool_ordering_key", "ordering_key"),
    comment="owner: gateway",
)

# router: Kommo chat templates (type waba) a user asked to have reviewed, each paired with the template
# submitted for it to Meta (services/router/template_reviews.py): Meta's verdict is written back to that
# review, the same request twice submits once, and the periodic sync never mirrors it a second time.
template_reviews = Table(
    "template_reviews",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account_id", String(64), nullable=False),
    Column("kommo_template_id", BigInteger, nullable=False),
    Column("review_id", BigInteger, nullable=False),
    Column("connection_id", String(64), nullable=False, server_default=""),
    Column("waba_id", String(64), nullable=False, server_default=""),
    Column("meta_name", String(512), nullable=False, server_default=""),
    Column("language", String(16), nullable=False, server_default=""),
    Column("meta_template_id", String(64), nullable=False, server_default=""),
    Column("external_key", String(200), nullable=False, server_default=""),
    # submitting → pending (Meta has it) → approved / rejected / paused; reported_status is Kommo's copy.
    Column("status", String(16), nullable=False, server_default="submitting"),
    Column("reject_reason", Text, nullable=False, server_default=""),
    Column("reported_status", String(16), nullable=False, server_default=""),
    # Kommo's markers in the order of Meta's placeholders, per component ({"header": [...], "body": [...],
    # "button1": [...]}): a manager's message of this template is sent with its values in that order.
    Column("markers", JSONB, nullable=False, server_default="{}"),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("account_id", "kommo_template_id", "review_id", name="uq_template_reviews_review"),
    Index("ix_template_reviews_meta", "waba_id", "meta_name", "language"),
    comment="owner: router",
)
