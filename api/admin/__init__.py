"""The admin dashboard at /admin: server-rendered pages, a little plain JavaScript, no CDN."""

from api.admin import keys  # noqa: F401  (its pages join bp as it loads)
from api.admin.views import bp

__all__ = ["bp"]
