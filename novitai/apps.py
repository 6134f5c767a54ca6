from django.apps import AppConfig


class NovitaiConfig(AppConfig):
    name = "novitai"
    verbose_name = "novitai"

    def ready(self) -> None:
        # Scrape-time collectors (the circuit breaker) exist in every process from the start.
        from novitai.novita import metrics  # noqa: F401
