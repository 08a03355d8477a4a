"""Ladder's Python SDK: submit jobs, wait for them, follow their events, fetch their artifacts.

    from ladder_client import Client

    with Client("http://127.0.0.1:8000", token) as ladder:
        job = ladder.wait(ladder.submit("stairs", {"n": 10}).id)
        print(job.status, job.result)

`AsyncClient` is the same for asyncio. Errors are `LadderError` (the API's problem: `status`,
`title`, `detail`, `errors`), `LadderConnectionError` when no answer came, and `JobError` when a
streamed chat's job fails.
"""

from ladder_client.async_client import AsyncClient
from ladder_client.client import Client
from ladder_client.errors import FieldError, JobError, LadderConnectionError, LadderError
from ladder_client.models import Event, Job, JobSpec, Kind

__all__ = [
    "AsyncClient",
    "Client",
    "Event",
    "FieldError",
    "Job",
    "JobError",
    "JobSpec",
    "Kind",
    "LadderConnectionError",
    "LadderError",
]
__version__ = "0.1.0"
