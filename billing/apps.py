from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Billing"

    def ready(self) -> None:
        from billing.metrics import register_collectors

        register_collectors()
