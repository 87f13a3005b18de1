"""Exceptions raised by the plugin."""


class DynamicsSyncError(Exception):
    """Base class of the plugin's own errors."""


class NotInitializedError(DynamicsSyncError, RuntimeError):
    """The extension is used outside an application it was initialised on."""
