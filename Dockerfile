# syntax=docker/dockerfile:1
# Tollgate's production image: one image, two roles. Default `tollgate serve` (webhook, API, pages on :8080);
# run it with `tollgate worker` for a vetting worker. Configuration is TOLLGATE_* environment (see README).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: a venv with the pinned wheels and the tollgate package ------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/tollgate
WORKDIR /src
COPY requirements.txt ./
# Every pin has a manylinux wheel (yara-python and psycopg-binary bundle their C libraries), so the image
# needs no compiler; --only-binary makes a future sdist-only pin fail here, loudly, instead of half-building.
RUN /opt/tollgate/bin/pip install --only-binary=:all: --no-deps -r requirements.txt
COPY pyproject.toml README.md ./
COPY service ./service
COPY workers ./workers
COPY rules ./rules
RUN /opt/tollgate/bin/pip install --no-deps . \
 && /opt/tollgate/bin/tollgate --help >/dev/null

# ---- runtime: the venv only, run as an unprivileged user ------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="tollgate" \
      org.opencontainers.image.description="Registry-side container image vetting: scan, verify, decide, quarantine, publish."
# No extra system libraries: `ldd` on the venv's extension modules finds only glibc, libz (in the base image)
# and the libraries the wheels vendor (yara_python.libs, psycopg_binary.libs).
RUN groupadd --system --gid 10001 tollgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tollgate --create-home \
      --shell /usr/sbin/nologin tollgate
COPY --from=builder /opt/tollgate /opt/tollgate
# HOME and XDG_CACHE_HOME must be writable: sigstore keeps its TUF trust root cache there.
# The SQLite fallback lives in the same volume-friendly directory; set TOLLGATE_DATABASE_URL for PostgreSQL.
ENV PATH=/opt/tollgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/tollgate \
    XDG_CACHE_HOME=/var/lib/tollgate/.cache \
    TOLLGATE_HTTP_ADDR=0.0.0.0:8080 \
    TOLLGATE_DATABASE_URL=sqlite:////var/lib/tollgate/tollgate.db
WORKDIR /var/lib/tollgate
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/api/v1/health', timeout=4).status != 200)"]
USER 10001:10001
CMD ["tollgate", "serve"]
