"""Flask-Dynamics-Sync: a Microsoft Dynamics sync status console for Flask-Admin."""

from .dataverse import DataverseChange
from .dataverse import DataverseMapping
from .dataverse import Lookup
from .errors import AccessPolicyWarning
from .errors import ClaimLostError
from .errors import DynamicsSyncError
from .errors import NotInitializedError
from .extension import DynamicsSync
from .types import Change
from .types import ClaimedRecord
from .types import Direction
from .types import ErrorState
from .types import Operation
from .types import QueueState
from .types import SyncOutcome

__all__ = [
    "AccessPolicyWarning",
    "Change",
    "ClaimLostError",
    "ClaimedRecord",
    "DataverseChange",
    "DataverseMapping",
    "Direction",
    "DynamicsSync",
    "DynamicsSyncError",
    "ErrorState",
    "Lookup",
    "NotInitializedError",
    "Operation",
    "QueueState",
    "SyncOutcome",
]

__version__ = "0.1.0"
