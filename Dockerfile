# The panel, and the development daemon for a sample node, in one image.
#   docker build -t stellarpanel .
#   docker run ... stellarpanel              migrate, then serve the panel on :8000
#   docker run ... stellarpanel daemon --config /etc/stellar/config.toml
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.9 \
    && groupadd --system --gid 10001 stellar \
    && useradd --system --uid 10001 --gid stellar --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin stellar \
    && mkdir -p /var/lib/stellar /etc/stellar \
    && chown stellar:stellar /var/lib/stellar

WORKDIR /app

# The dependencies first, so that a change of code reuses this layer.
COPY pyproject.toml uv.lock .python-version ./
RUN uv sync --frozen --no-dev --no-install-project

# The code stays root's: the panel's user reads it and writes nothing here.
# Static files are served by the panel from static/ and the apps, so there is no
# collectstatic step.
COPY . .
RUN chmod 0755 docker/entrypoint.sh

USER stellar
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["panel"]
