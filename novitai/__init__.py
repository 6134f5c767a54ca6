"""novitai: a control plane for GPU instances on Novita.ai."""

from novitai.celery import app as celery_app

__all__ = ["celery_app"]
