from django.apps import AppConfig


class InjectorsConfig(AppConfig):
    name = "injectors"
    verbose_name = "Fault injectors"
