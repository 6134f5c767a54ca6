"""novitai: a control plane for GPU instances on Novita.ai.

This module imports nothing, so that `import novitai.cli` (the command line client) costs no
Django and no Celery. The Celery app is `novitai.celery`: `celery -A novitai` finds it by itself,
and every Django process loads it when the app registry is ready (novitai/apps.py)."""
