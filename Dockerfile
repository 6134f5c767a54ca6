FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    STATIC_ROOT=/app/static NOVITAI_VAR_DIR=/app/var

WORKDIR /app
COPY pyproject.toml README.md ./
COPY novitai ./novitai
COPY novita_sandbox ./novita_sandbox
COPY tenants ./tenants
COPY catalog ./catalog
COPY instances ./instances
COPY jobs ./jobs
COPY webhooks ./webhooks
COPY overview ./overview
COPY manage.py gunicorn.conf.py flowerconfig.py Procfile ./
RUN pip install . \
 && DEBUG=true python manage.py collectstatic --noinput -v 0 \
 && useradd --create-home --uid 10001 novitai \
 && mkdir -p /app/var && chown -R novitai /app/var

USER novitai
EXPOSE 8000
CMD ["gunicorn", "novitai.wsgi:application"]
