from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Event webhooks"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from .models import WebhookEndpoint
        from .services import subscribers_forget

        post_save.connect(subscribers_forget, sender=WebhookEndpoint)
        post_delete.connect(subscribers_forget, sender=WebhookEndpoint)
