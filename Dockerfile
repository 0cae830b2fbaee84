# The stack's Prefect image: the official Prefect 3.9.1 server image (which
# already ships prefect-redis) plus the prefectstack package, so the stack's own
# health checks and exporter run inside it. Python 3.11 matches uv.lock.
FROM prefecthq/prefect:3.9.1-python3.11

# uv installs exactly the versions uv.lock pins (Prefect itself stays 3.9.1).
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv

WORKDIR /opt/prefectstack
COPY pyproject.toml uv.lock README.md ./
RUN uv export --frozen --no-dev --no-emit-project --no-hashes -o /tmp/requirements.txt \
    && uv pip install --system --no-cache -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY src ./src
COPY deploy ./deploy
RUN uv pip install --system --no-cache --no-deps . \
    && prefectstack --help >/dev/null

ENV PREFECTSTACK_DEPLOY_DIR=/opt/prefectstack/deploy
