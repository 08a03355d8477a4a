"""The admin dashboard at /admin: server-rendered pages, a little plain JavaScript, no CDN."""

from api.admin.views import bp

__all__ = ["bp"]
