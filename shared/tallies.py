"""Jobs that leave the `jobs` table's counts, kept as sums so that the metrics never go down.

The metrics count jobs from `jobs` and add these tallies. A job leaves those counts when the
retention purge deletes it (tallied under the status it ended with) and when an admin retries
a failed job (tallied under RETRIED: it had finished as failed, but was submitted only once).
Whoever takes a job out adds it here in the same transaction, so a scrape never sees it in
both places or in neither.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.models import JobTally

BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900)
"""The bounds, in seconds, of the job duration histogram: `duration_buckets` counts the
durations at or under each, in this order."""

RETRIED = "retried-failed"
"""The status a failed job is tallied under when it is retried: a failure, not a submission."""


def add(session: Session, ended: Iterable[tuple[str, str, float | None]]) -> None:
    """Tally jobs leaving `jobs`, each as (kind, status, duration in seconds or None), in the
    caller's transaction."""
    groups: dict[tuple[str, str], list[float | None]] = {}
    for kind, status, duration in ended:
        groups.setdefault((kind, status), []).append(duration)
    # In a fixed order, so that two transactions tallying the same groups lock them alike.
    for (kind, status), durations in sorted(groups.items()):
        _add_group(session, kind, status, durations)


def _add_group(session: Session, kind: str, status: str, durations: list[float | None]) -> None:
    measured = [d for d in durations if d is not None]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # The row exists first, so that a locking read finds it; on SQLite this write also takes
    # the database's write lock, which is what keeps the read-modify-write below whole there.
    empty = {"jobs": 0, "duration_count": 0, "duration_sum": 0.0, "duration_buckets": None}
    session.execute(
        dialect.insert(JobTally).values(kind=kind, status=status, **empty).on_conflict_do_nothing()
    )
    where = (JobTally.kind == kind, JobTally.status == status)
    # No SQL adds JSON lists on both databases: the buckets are read under a row lock instead.
    stored = session.scalar(select(JobTally.duration_buckets).where(*where).with_for_update())
    buckets = list(stored or []) + [0] * (len(BUCKETS) - len(stored or []))
    for d in measured:
        for i, bound in enumerate(BUCKETS):
            if d <= bound:
                buckets[i] += 1
    session.execute(
        update(JobTally)
        .where(*where)
        .values(
            jobs=JobTally.jobs + len(durations),
            duration_count=JobTally.duration_count + len(measured),
            duration_sum=JobTally.duration_sum + sum(measured),
            duration_buckets=buckets,
        )
        .execution_options(synchronize_session=False)
    )
