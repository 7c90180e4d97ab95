# syntax=docker/dockerfile:1
# pubsocket in a container (docs/deploy.md). Build from the repository root:
#   docker build -t pubsocket .                          # serves examples/chat
#   docker build -t myapp --build-arg APP=path/to/myapp .  # serves your project
# Run (secrets from the environment, never baked into the image):
#   docker run -p 7145:7145 -e API_KEY=... -e SECRET=... \
#     -e PUBSOCKET_BROKER=redis://redis:6379/0 pubsocket
# tests/deploy/test_units.py parses this file with BuildKit's parser and runs its CMD
# with its ENV, then its HEALTHCHECK against that server.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir ".[redis]"

FROM python:3.11-slim
ARG APP=examples/chat
RUN useradd --system --uid 10001 --home-dir /app pubsocket
COPY --from=build /opt/venv /opt/venv
COPY ${APP}/src /app/src
ENV PATH=/opt/venv/bin:$PATH \
    PUBSOCKET_HOST=0.0.0.0 \
    PUBSOCKET_PORT=7145 \
    PUBSOCKET_DRAIN_DELAY=5
WORKDIR /app
USER pubsocket
EXPOSE 7145
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7145/healthz', timeout=2)"]
# Exec form: pubsocket is PID 1 and gets the SIGTERM itself (it drains, then exits).
STOPSIGNAL SIGTERM
CMD ["pubsocket", "serve", "/app"]
