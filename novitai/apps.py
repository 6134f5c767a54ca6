from django.apps import AppConfig


class NovitaiConfig(AppConfig):
    name = "novitai"
    verbose_name = "novitai"

    def ready(self) -> None:
        # The Celery app, in every Django process (web, manage.py, workers): `shared_task`s bind
        # to it and `send_task` uses its broker. The package's __init__ used to import it, which
        # made `import novitai.cli` pull in Django and Celery.
        from novitai import celery  # noqa: F401

        # Scrape-time collectors (the circuit breaker) exist in every process from the start.
        from novitai.novita import metrics  # noqa: F401
