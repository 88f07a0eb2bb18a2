# convserve CPU image (ONNX Runtime CPU + NumPy engines).
#
#   docker build -t convserve:cpu .                       # python:3.12-slim
#   docker build --build-arg BASE_IMAGE=local/python:3.11-bookworm -t convserve:cpu .
#   docker run --rm -p 8000:8000 --cpus 2 convserve:cpu
#
# BASE_IMAGE is any Debian-based image with python3 >= 3.11, venv and pip; it may already have
# a venv of its own on PATH: ours (/opt/convserve) goes first. The GPU image is Dockerfile.cuda,
# a separate file because the legacy builder builds every stage up to --target, so a CUDA stage
# here would make every CPU build pull the CUDA base. Only legacy-builder syntax (no BuildKit).
# More: docs/deployment.md.
ARG BASE_IMAGE=python:3.12-slim

# --- builder: wheels of the dependencies and the service, installed into /opt/convserve ----
FROM ${BASE_IMAGE} AS builder
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/convserve
ENV PATH=/opt/convserve/bin:$PATH
WORKDIR /src
# Dependencies first, as wheels built from the metadata alone (a stub package) and installed:
# this slow layer is rebuilt only when service/pyproject.toml changes, not on code changes.
COPY service/pyproject.toml service/README.md service/
RUN mkdir -p service/src/convserve \
 && touch service/src/convserve/__init__.py \
 && pip wheel --no-cache-dir --wheel-dir /wheels "./service[cpu]" \
 && rm /wheels/convserve-*.whl \
 && pip install --no-cache-dir --no-index /wheels/*.whl
COPY service/src service/src
# The service itself (seconds); pip and setuptools leave, so the runtime image has no
# installer. The venv is copied whole into the runtime stage (same base, same paths), which
# keeps the wheels out of the image: the legacy builder has no RUN --mount to install from.
# The demo page's sample network is built here once, into the venv (38 MB, the same bytes on
# every build), and stored at start-up from CONVSERVE_SAMPLE_MODEL_FILE (no build per worker).
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./service \
 && pip install --no-cache-dir --no-index --no-deps /wheels/convserve-*.whl \
 && pip uninstall --yes pip setuptools \
 && python -c "import convserve.launcher, onnxruntime; print(onnxruntime.get_available_providers())" \
 && python -m convserve.models.sample --out /opt/convserve/share/sample-keras-cnn.onnx

# --- runtime: the base, a non-root user and the venv; no compilers, no pip -----------------
FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="convserve" \
      org.opencontainers.image.description="REST service applying conv2d layers to images (CPU)" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/convserve \
    PATH=/opt/convserve/bin:$PATH \
    PORT=8000 \
    ORT_DISABLE_TELEMETRY=1 \
    CONVSERVE_SAMPLE_MODEL_FILE=/opt/convserve/share/sample-keras-cnn.onnx \
    CONVSERVE_ENGINE=auto \
    CONVSERVE_DEVICE=cpu
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin convserve
COPY --from=builder /opt/convserve /opt/convserve
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
# The model store (CONVSERVE_MODEL_DIR in docker-compose.yml): a named volume mounted here
# takes this directory's owner, so the non-root user can write to it.
RUN mkdir -p /var/lib/convserve/models && chown 10001:10001 /var/lib/convserve/models
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/readyz', timeout=2)"]
# The launcher fits WEB_CONCURRENCY and the CONVSERVE_*_THREADS to the CPU quota, then execs
# `uvicorn convserve.main:app --workers $WEB_CONCURRENCY` (see convserve/launcher.py).
CMD ["python3", "-m", "convserve.launcher"]
