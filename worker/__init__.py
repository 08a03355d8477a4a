"""The Celery side of Ladder: the app (worker.factory), the one task, and a runner per job kind.

`celery -A worker` finds the app in worker/celery.py, which reads the environment.
"""
