"""`GET /api/v1/webhook-secret`: the secret that signs the webhooks of the caller's jobs.

Any holder of the key's token may read it, so a new token (`keys rotate`) comes with a new
secret; deliveries still pending are signed with the new one from their next attempt.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.auth import authenticate
from api.context import ladder
from shared.deliveries import webhook_secrets
from shared.webhooks import SIGNATURE_HEADER

bp = Blueprint("webhooks", __name__)


@bp.get("/api/v1/webhook-secret")
def secret() -> dict[str, Any]:
    ctx = ladder()
    caller = authenticate(ctx.db)
    with ctx.db.session() as session:
        found = webhook_secrets(session, [caller.key_id])[caller.key_id]
    return {"secret": found, "header": SIGNATURE_HEADER, "scheme": "v1"}
