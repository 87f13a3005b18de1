"""The Dataverse connector: mappings, the Web API client and the sync worker (see ``docs/connector.md``)."""

from .changes import DataverseChange
from .mapping import DataverseMapping
from .mapping import Lookup
from .mapping import MappingError

__all__ = ["DataverseChange", "DataverseMapping", "Lookup", "MappingError"]
