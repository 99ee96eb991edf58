# syntax=docker/dockerfile:1
# The Heliox image: one image for the API (gunicorn + uvicorn workers) and its migration Job
# (heliox-migrate). Targets:
#   runtime (default)  the production image; the last stage, so a build without --target is it
#   dev                the skaffold loop: source synced into /app/service, uvicorn --reload
# Layout and choices are explained in docs/ARCHITECTURE.md ("The image").

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: install the locked dependencies and our two packages into a virtualenv -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# The virtualenv lives at the same path in every stage: virtualenvs are not relocatable.
RUN python -m venv /opt/heliox/venv
ENV PATH=/opt/heliox/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the lock with hashes, so source edits reuse this layer.
COPY service/requirements.lock service/build-requirements.lock service/
RUN pip install --require-hashes --no-deps -r service/requirements.lock \
 && pip install --require-hashes --no-deps -r service/build-requirements.lock
COPY service/pyproject.toml service/
COPY service/heliox service/heliox
COPY migrations-job/pyproject.toml migrations-job/
COPY migrations-job/heliox_migrate migrations-job/heliox_migrate
# Our packages without build isolation: the build backend comes from the hashed lock above,
# not from whatever the index serves today. Then drop it: nothing needs it at run time.
RUN pip install --no-deps --no-build-isolation ./service ./migrations-job \
 && pip uninstall --yes setuptools \
 && python -m compileall -q /opt/heliox/venv

# --- app: the runtime image's content (no compilers, no build tools, a numeric non-root user) --
FROM ${PYTHON_IMAGE} AS app
ARG HELIOX_UID=10001
# tini is PID 1: it forwards SIGTERM/SIGHUP to gunicorn (our graceful drain and reload) and
# reaps orphans, which a Python PID 1 would not do.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends tini=0.19.* \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid ${HELIOX_UID} heliox \
 && useradd --uid ${HELIOX_UID} --gid ${HELIOX_UID} --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin heliox
COPY --from=build /opt/heliox/venv /opt/heliox/venv
WORKDIR /app
COPY service/gunicorn.conf.py ./gunicorn.conf.py
COPY migrations-job/alembic.ini migrations-job/env.py migrations-job/script.py.mako migrations-job/
COPY migrations-job/versions migrations-job/versions
# Nothing is written to the image at run time (read-only root FS): bytecode was compiled at
# build time, workers' heartbeat and metrics files go to /dev/shm, scratch to /tmp.
ENV PATH=/opt/heliox/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENV=production \
    PORT=8000 \
    HELIOX_MIGRATIONS_DIR=/app/migrations-job
USER ${HELIOX_UID}:${HELIOX_UID}
EXPOSE 8000
# No curl in the image: the interpreter we already ship does the request.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=2)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "heliox.main:app"]

# --- dev: the skaffold loop (skaffold.yaml, profile "dev") ------------------------------------
# Source lives under /app/service and /app/migrations-job, owned by the app user so skaffold's
# file sync (tar) can write it, and it comes first on PYTHONPATH, ahead of the installed copy.
FROM app AS dev
# Build arguments are stage-scoped (the classic builder does not carry them into a child stage).
ARG HELIOX_UID=10001
# The sync targets are made here, owned by the app user: skaffold's tar replaces files by
# unlinking them, which needs write access to the directories themselves, and COPY --chown
# would leave the app stage's root-owned /app/migrations-job as it was.
USER 0
RUN rm -rf /app/migrations-job \
 && install -d -o ${HELIOX_UID} -g ${HELIOX_UID} /app/service /app/service/heliox /app/migrations-job
COPY --chown=${HELIOX_UID}:${HELIOX_UID} service/heliox /app/service/heliox
COPY --chown=${HELIOX_UID}:${HELIOX_UID} migrations-job /app/migrations-job
USER ${HELIOX_UID}:${HELIOX_UID}
ENV PYTHONPATH=/app/service:/app/migrations-job \
    ENV=development \
    LOG_LEVEL=DEBUG
CMD ["uvicorn", "heliox.main:app", "--host", "0.0.0.0", "--port", "8000", \
     "--reload", "--reload-dir", "/app/service/heliox"]

# --- runtime: the production image, and the default target (a build without --target builds the
# last stage, which must not be dev) ----------------------------------------------------------
FROM app AS runtime
