"""WhatsApp Business Cloud API (Meta Graph): the adapter, its Graph client, media transfer and emulator."""
