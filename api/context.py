"""What each request needs from its app: settings, the database and the Celery producer."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from shared.config import Settings
from shared.db import Database
from worker.app import LadderCelery


@dataclass
class Ladder:
    settings: Settings
    db: Database
    celery: LadderCelery


def ladder() -> Ladder:
    found: Ladder = current_app.extensions["ladder"]
    return found
