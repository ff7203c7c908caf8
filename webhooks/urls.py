from django.urls import path

from . import views

app_name = "webhooks"

urlpatterns = [
    path(
        "<slug:alias>/status/",
        views.provider_callback,
        {"kind": "status"},
        name="status",
    ),
    path(
        "<slug:alias>/inbound/",
        views.provider_callback,
        {"kind": "inbound"},
        name="inbound",
    ),
]
