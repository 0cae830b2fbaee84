# The stack's Prefect image: the official Prefect server image of the release
# .env names (PREFECT_VERSION, passed by docker-compose.yml; it already ships
# prefect-redis) plus the prefectstack package, so the stack's own health checks
# and exporter run inside it. Python 3.11 matches uv.lock.
ARG PREFECT_VERSION
FROM prefecthq/prefect:${PREFECT_VERSION}-python3.11
ARG PREFECT_VERSION

# uv installs exactly the versions uv.lock pins for its release (another release
# keeps its own Prefect: src/prefectstack/releases/requirements.py).
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv

WORKDIR /opt/prefectstack
COPY pyproject.toml uv.lock README.md ./
COPY src/prefectstack/releases/requirements.py /tmp/requirements.py
RUN python /tmp/requirements.py "$PREFECT_VERSION" . > /tmp/requirements.txt \
    && uv pip install --system --no-cache -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt /tmp/requirements.py
COPY src ./src
COPY deploy ./deploy
RUN uv pip install --system --no-cache --no-deps . \
    && prefectstack --help >/dev/null

# pgBackRest lets doctor and the exporter read an S3 repository
# (docker-compose.s3.yml). The base image's Debian release decides its version:
# any 2.x reads the repository the postgres image's 2.45 writes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends pgbackrest \
    && rm -rf /var/lib/apt/lists/*

ENV PREFECTSTACK_DEPLOY_DIR=/opt/prefectstack/deploy
