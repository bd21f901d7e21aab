# fleet-artifacts as a container image: `fleet-artifacts serve` on port 8080, as user 10001.
#
#   docker build -t fleet-artifacts .
#   docker run --rm -p 8080:8080 -v fleet-data:/data \
#       -e FLEET_ARTIFACTS_ALLOWED_HOSTS=localhost,127.0.0.1 fleet-artifacts
#
# Serving on 0.0.0.0 needs FLEET_ARTIFACTS_PUBLIC_BASE_URL or FLEET_ARTIFACTS_ALLOWED_HOSTS (the
# service refuses to start without one). tests/test_container.py checks this file against the project.

# One base for both stages: the venv built in the first links to the second's interpreter.
# The Python here must satisfy pyproject.toml's requires-python.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md ./
COPY fleet_artifacts ./fleet_artifacts
# Every dependency ships binary wheels for CPython 3.11 on Linux, so no compiler is installed.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /wheels/fleet_artifacts-*.whl


FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="fleet-artifacts" \
      org.opencontainers.image.description="Artifact store for CI fleets: bytes in Azure Blob Storage, pointers in Cosmos DB or SQLite" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    FLEET_ARTIFACTS_DATA_DIR=/data
# A fixed uid/gid, so a mounted volume's owner and a pod's runAsUser can be set to match.
# /data holds the SQLite pointers, local blobs, the generated token and signing key: owner only.
RUN groupadd --system --gid 10001 fleet \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data --shell /usr/sbin/nologin fleet \
 && install -d -o 10001 -g 10001 -m 0700 /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
# No curl in the image: Python asks /health. The Host header is one FLEET_ARTIFACTS_ALLOWED_HOSTS
# lets through (its first entry, a wildcard filled in; else localhost), so the probe never gets the
# 400 a foreign Host gets; no proxy, since the environment's HTTP(S)_PROXY must not see it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; h = next((p.strip().replace('*', 'healthcheck', 1) for p in os.environ.get('FLEET_ARTIFACTS_ALLOWED_HOSTS', '').split(',') if p.strip()), 'localhost'); r.build_opener(r.ProxyHandler({})).open(r.Request('http://127.0.0.1:8080/health', headers={'Host': h}), timeout=4)"]
ENTRYPOINT ["fleet-artifacts"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
