"""Deployment: the Helm chart (kommo-bridge/) and the tools that check it (chartctl)."""
