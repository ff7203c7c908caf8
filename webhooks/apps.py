from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Replies and callbacks"

    def ready(self) -> None:
        from providers.signals import callback_received

        from .handlers import on_simulated_callback

        callback_received.connect(
            on_simulated_callback, dispatch_uid="webhooks.simulated"
        )
