from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from instances.metrics import register_collectors
        from instances.services import retry_hooks_register
        from instances.volumes import mount_finder_register

        register_collectors()
        retry_hooks_register()
        mount_finder_register()
