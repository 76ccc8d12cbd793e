"""Media shared by the services: signed links through which Kommo downloads a client's files."""

from libs.media.links import LinkedFile, MediaLinkExpired, MediaLinkRefused, MediaLinks, url_file_name

__all__ = ["LinkedFile", "MediaLinkExpired", "MediaLinkRefused", "MediaLinks", "url_file_name"]
