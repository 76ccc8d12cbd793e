"""Names under which the auth service keeps secrets: (owner, kind) pairs every service agrees on."""

KOMMO_CHANNEL_OWNER = "kommo-channel"
KOMMO_CHANNEL_SECRET = "kommo.channel_secret"

# Per messenger connection (owner = connection id).
MESSENGER_TOKEN = "messenger.token"
MESSENGER_WEBHOOK_SECRET = "messenger.webhook_secret"
# The platform app's own secret that signs every webhook POST, where the platform signs with it rather
# than with a secret the bridge chose (WhatsApp: the Meta app secret, X-Hub-Signature-256).
MESSENGER_APP_SECRET = "messenger.app_secret"

# Per Kommo installation (owner = installation_owner(account_id)).
KOMMO_ACCESS_TOKEN = "kommo.access_token"
KOMMO_REFRESH_TOKEN = "kommo.refresh_token"


def installation_owner(account_id: str) -> str:
    return f"installation:{account_id}"
