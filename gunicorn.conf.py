"""How gunicorn serves Ladder's API, wherever it runs: `make run`, the tests, the benchmarks and
the container all start `gunicorn -c gunicorn.conf.py 'api:create_app()'`.

Where it listens and how many processes it runs come from the environment; the rest is here.
"""

import os

# Set explicitly: gunicorn alone would listen on 0.0.0.0 as soon as PORT is set.
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# WEB_CONCURRENCY is gunicorn's own name for this; the container image sets 2.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# gevent: a client waiting on a job (an event stream, a long poll, a chat completion) holds a
# greenlet, not an OS thread, so 1,000 followers do not starve /healthz. psycopg (>= 3.1.14)
# and redis-py cooperate over gevent's patched sockets.
worker_class = "gevent"
worker_connections = int(os.environ.get("LADDER_WORKER_CONNECTIONS", "2000"))
accesslog = "-"
