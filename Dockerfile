# The project's own image: `python -m training serve` (any other command too) on a pinned Python.
# Built by docker-compose.yml's `serve` service; the source is installed editable so feature_repo/ sits
# beside the package, where the settings module looks for it.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OHLCV_STATE_DIR=/app/.state

RUN useradd --create-home --uid 10001 ohlcv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY training/ training/
COPY feature_repo/ feature_repo/
RUN pip install -e . && mkdir -p .state && chown -R ohlcv /app

USER ohlcv
EXPOSE 8000
# /health answers from memory (no store is read): the process is up and its model loaded.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["python", "-m", "training", "serve", "--host", "0.0.0.0", "--port", "8000"]
