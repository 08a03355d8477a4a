"""The Celery side of Ladder: the app factory, the one task, and a runner per job kind."""

from worker.app import LadderCelery, create_celery

__all__ = ["LadderCelery", "create_celery"]
