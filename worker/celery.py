"""The app `celery -A worker` finds (worker.celery:app): the worker reads the environment here."""

from shared.config import Settings
from worker.factory import create_celery

app = create_celery(Settings.from_env())
