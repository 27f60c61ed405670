"""What Phoenix's S3 backups keep, and what that storage costs: a pure function of the Phoenix plan.

Every ``backup_interval_minutes`` the node uploads a full gzipped snapshot of its SQLite database under
``<prefix>/snapshots/`` and copies it over ``<prefix>/latest.db.gz`` (the restore's source). The bucket is
versioned; its lifecycle (``lmrun.components.phoenix``):

- expires each snapshot ``backup_retention_days`` after its upload and deletes the expired (now noncurrent)
  version :data:`NONCURRENT_DAYS` later;
- never expires the current ``latest.db.gz``, and deletes each overwritten version of it
  :data:`NONCURRENT_DAYS` after it was overwritten (one per snapshot: without that rule they pile up as fast
  as the snapshots themselves).

S3 rounds every lifecycle due date up to the next midnight UTC ("Amazon S3 calculates the time by adding the
number of days specified in the rule to the object creation time and rounding the resulting time to the next
day midnight UTC", S3 User Guide, lifecycle expiration), so each copy can live up to
:data:`LIFECYCLE_LAG_DAYS` longer. The estimate counts that day: it is the steady-state upper end.

For the former defaults (every 5 minutes, 30 days, overwritten versions kept 30 days too) this is
288 x 30 + 288 x 30 = 17,280 copies: ~17 TB and ~$400/month for a 1 GB database. For hourly and 7 days it
is 24 x (7 + 1 + 1) + 24 x (1 + 1) + 1 = 265 copies: ~$6/month per GB of gzipped database.

The plan does not know how big the database is, so the estimate is per GB of gzipped snapshot, with the
bound of a database that fills the data volume beside it. Storage only: PUT requests (one upload and one
copy per snapshot, ~$0.01 per 1,000) and KMS requests are usage charges the estimate leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmrun.aws import prices

NONCURRENT_DAYS = 1
"""Days S3 keeps a noncurrent version (an expired snapshot, an overwritten ``latest.db.gz``): the lifecycle's
minimum. Nothing reads a noncurrent version; every snapshot is also a current object under ``snapshots/``."""
LIFECYCLE_LAG_DAYS = 1
"""Up to a day between a lifecycle due date and the removal (rounded up to midnight UTC, run asynchronously)."""
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class BackupStorage:
    """Steady-state S3 storage of one Phoenix's backups."""

    interval_minutes: int
    retention_days: int
    copies: int
    """Full copies of the database the bucket holds in steady state (see the module docstring)."""
    usd_month_per_gb: float
    """USD per month per GB of gzipped snapshot (S3 Standard)."""
    volume_gb: int
    """The data volume: the largest the database can grow."""

    @property
    def usd_month_at_volume_size(self) -> float:
        """The bound: a database (gzipped) as large as its volume."""
        return self.usd_month_per_gb * self.volume_gb

    def to_json(self) -> dict[str, Any]:
        return {
            "interval_minutes": self.interval_minutes,
            "retention_days": self.retention_days,
            "copies": self.copies,
            "stored_gb_per_database_gb": self.copies,
            "monthly_usd_per_database_gb": round(self.usd_month_per_gb, 2),
            "volume_gb": self.volume_gb,
            "monthly_usd_at_volume_size": round(self.usd_month_at_volume_size, 2),
        }


def backup_copies(interval_minutes: int, retention_days: int) -> int:
    """Copies of the database in the bucket: the snapshots (retention, then a noncurrent day, each up to a day
    late), the overwritten ``latest.db.gz`` versions (a noncurrent day, up to a day late) and the current one."""
    if interval_minutes < 1 or retention_days < 1:
        raise ValueError("interval_minutes and retention_days must be at least 1")
    per_day = MINUTES_PER_DAY / interval_minutes
    snapshots = per_day * (retention_days + NONCURRENT_DAYS + LIFECYCLE_LAG_DAYS)
    superseded_latest = per_day * (NONCURRENT_DAYS + LIFECYCLE_LAG_DAYS)
    return round(snapshots + superseded_latest) + 1


def backup_storage(*, interval_minutes: int, retention_days: int, volume_gb: int) -> BackupStorage:
    """The backups' storage for a Phoenix plan's schedule (``PhoenixPlan.backup_interval_minutes``,
    ``backup_retention_days``, ``volume_gb``)."""
    copies = backup_copies(interval_minutes, retention_days)
    return BackupStorage(
        interval_minutes=interval_minutes,
        retention_days=retention_days,
        copies=copies,
        usd_month_per_gb=copies * prices.S3_STANDARD_USD_GB_MONTH,
        volume_gb=volume_gb,
    )


def backup_storage_from_export(phoenix: Mapping[str, Any] | None) -> BackupStorage | None:
    """The same from the stack's ``phoenixBackup`` export (plain values of the plan, known before any resource
    exists; what the cost estimate reads); None without Phoenix."""
    if not isinstance(phoenix, Mapping):
        return None
    keys = ("backup_interval_minutes", "backup_retention_days", "volume_gb")
    values = [phoenix.get(key) for key in keys]
    numbers = [int(value) for value in values if isinstance(value, int | float) and not isinstance(value, bool)]
    if len(numbers) != len(keys):
        return None
    interval, retention, volume = numbers
    return backup_storage(interval_minutes=interval, retention_days=retention, volume_gb=volume)
