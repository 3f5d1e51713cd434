"""Configuration shared by every layer above ``events``: the settings object, logging and redaction."""

from config.settings import Settings, SettingsError, StreamConfig, load_settings

__all__ = ["Settings", "SettingsError", "StreamConfig", "load_settings"]
