"""The REST API under /api/v1/."""

from rest_framework.routers import APIRootView, DefaultRouter

from django.urls import include, path

from campaigns.api import views as campaigns_api
from contacts import api as contacts_api
from integrations import api as integrations_api
from webhooks import api as webhooks_api

from .models import Scope
from .permissions import rule


class ApiRootView(APIRootView):
    """The index of endpoints: any key or user who may use the API may read it."""

    api_rules = {"get": rule(Scope.READ)}


router = DefaultRouter()
router.APIRootView = ApiRootView
router.register("contacts", contacts_api.ContactViewSet, basename="contact")
router.register("lists", contacts_api.ContactListViewSet, basename="list")
router.register("campaigns", campaigns_api.CampaignViewSet, basename="campaign")
router.register("messages", campaigns_api.MessageViewSet, basename="message")
router.register("segments", campaigns_api.SegmentViewSet, basename="segment")
router.register(
    "conversations", webhooks_api.ConversationViewSet, basename="conversation"
)
router.register(
    "webhook-endpoints",
    integrations_api.WebhookEndpointViewSet,
    basename="webhook-endpoint",
)

urlpatterns = [
    # Before the router, so "import" and "bulk" are not read as object ids.
    path(
        "contacts/import/",
        contacts_api.ContactImportApi.as_view(),
        name="contact-import",
    ),
    path(
        "contacts/import/<str:job_id>/",
        contacts_api.ContactImportJobApi.as_view(),
        name="contact-import-job",
    ),
    path("messages/bulk/", campaigns_api.BulkMessageApi.as_view(), name="message-bulk"),
    path("", include(router.urls)),
]
