"""Table definitions for the local Dataverse, and the ``demo`` set the example host uses."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Table:
    """One Dataverse table as the Web API exposes it.

    ``alternate_keys`` maps a key name to its columns (powerapps-docs,
    use-alternate-key-reference-record.md): ``PATCH contacts(acme_hostid='H-1')`` upserts by it.
    ``bulk_messages`` enables ``CreateMultiple``/``UpdateMultiple``/``UpsertMultiple``
    (bulk-operations.md: not every table supports them). ``change_tracking`` allows
    ``Prefer: odata.track-changes`` reads. ``columns``, when given, is the full set of
    writable columns and single-valued navigation properties (``parentcustomerid_account``):
    anything else in a payload, an ``@odata.bind`` or a ``$select`` is refused with 400, as
    Dataverse does (webapi/web-api-client-errors.md). ``duplicate_rules`` are duplicate detection
    rules, each the columns whose equal values make two rows duplicates; they apply to requests
    with ``MSCRM.SuppressDuplicateDetection: false`` (webapi/manage-duplicate-detection-create-update.md).
    """

    entity_set: str
    logical_name: str
    primary_key: str
    alternate_keys: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    bulk_messages: bool = True
    change_tracking: bool = False
    columns: frozenset[str] | None = None
    duplicate_rules: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        for name, columns in self.alternate_keys.items():
            if not columns:
                raise ValueError(f"alternate key {name!r} of {self.entity_set!r} has no columns")

    @property
    def odata_type(self) -> str:
        """The ``@odata.type`` bulk messages require on every target."""
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"

    @property
    def key_columns(self) -> frozenset[str]:
        """Every column that is part of an alternate key."""
        return frozenset(column for columns in self.alternate_keys.values() for column in columns)

    def key_for_columns(self, columns: set[str]) -> str | None:
        """The alternate key made of exactly these columns, if the table has one."""
        for name, key_columns in self.alternate_keys.items():
            if set(key_columns) == columns:
                return name
        return None


HOST_ID_COLUMN = "dsync_hostid"
"""The column the demo tables key on: the host application's own record id."""


def demo_tables() -> list[Table]:
    """contacts, accounts, leads and opportunities, each with an alternate key on ``dsync_hostid``."""
    return [
        Table(
            entity_set=entity_set,
            logical_name=logical,
            primary_key=f"{logical}id",
            alternate_keys={f"dsync_{logical}_hostid": (HOST_ID_COLUMN,)},
            change_tracking=True,
        )
        for entity_set, logical in (
            ("contacts", "contact"),
            ("accounts", "account"),
            ("leads", "lead"),
            ("opportunities", "opportunity"),
        )
    ]
