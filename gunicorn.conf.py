"""How gunicorn serves Ladder's API, wherever it runs: `make run`, the tests, the benchmarks and
the container all start `gunicorn -c gunicorn.conf.py 'api:create_app()'`.

Where it listens and how many processes it runs come from the environment; the rest is here.
"""

import os

# Set explicitly: gunicorn alone would listen on 0.0.0.0 as soon as PORT is set.
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# WEB_CONCURRENCY is gunicorn's own name for this; the container image sets 2.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Changing the worker class (to gevent, say) is this one line; `threads` counts only for gthread.
worker_class = "gthread"
threads = 8
accesslog = "-"
