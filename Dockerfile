# gonogo container: `serve` for the web process, `worker` for workers (see fly.toml).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY github_app ./github_app
COPY rules ./rules
COPY scorer ./scorer
RUN pip install --no-cache-dir --upgrade pip && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 gonogo
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER gonogo
WORKDIR /home/gonogo
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
# the web process's liveness; `gonogo worker` serves no HTTP, so run a worker container with --no-healthcheck
# (fly.io ignores this line and uses fly.toml's checks)
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["gonogo", "--log-format", "json", "serve", "--host", "0.0.0.0", "--port", "8000"]
