from django.apps import AppConfig


class NovitaiConfig(AppConfig):
    name = "novitai"
    verbose_name = "novitai"
