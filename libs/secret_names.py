"""Names under which the auth service keeps secrets: (owner, kind) pairs every service agrees on."""

KOMMO_CHANNEL_OWNER = "kommo-channel"
KOMMO_CHANNEL_SECRET = "kommo.channel_secret"

# Per messenger connection (owner = connection id).
MESSENGER_TOKEN = "messenger.token"
MESSENGER_WEBHOOK_SECRET = "messenger.webhook_secret"
