"""Deployment checks: the Helm chart, the Dockerfile, the alerts and the dashboard, all offline."""
