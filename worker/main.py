"""The entry point of `celery -A worker.main worker`: the worker reads the environment here."""

from shared.config import Settings
from worker import create_celery

app = create_celery(Settings.from_env())
