"""Exceptions raised by the plugin."""


class DynamicsSyncError(Exception):
    """Base class of the plugin's own errors."""


class NotInitializedError(DynamicsSyncError, RuntimeError):
    """The extension is used outside an application it was initialised on."""


class ClaimLostError(DynamicsSyncError):
    """A worker reported a failure for a record it no longer holds.

    Its claim expired and the record was claimed again by another worker (who
    may have synced it since). Nothing was written: the record belongs to
    whoever holds it now, and an error recorded for it would never be resolved.
    """


class AccessPolicyWarning(UserWarning):
    """The host's console is public and it gave the plugin no access policy (see ``DynamicsSync(access=...)``)."""
