from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from novitai.metrics import register_scrape_collector
        from webhooks.metrics import status_collector

        register_scrape_collector(status_collector)
