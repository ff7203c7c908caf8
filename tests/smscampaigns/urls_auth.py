"""A tiny URLconf for testing API authentication, limits and errors on their own."""

from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from django.urls import path

from smscampaigns.health import health
from smscampaigns.models import Scope
from smscampaigns.permissions import rule


class Echo(APIView):
    class InputSerializer(serializers.Serializer):
        count = serializers.IntegerField(min_value=1)

    api_rules = {"get": rule(Scope.READ), "post": rule(Scope.WRITE_CONTACTS)}

    def get(self, request):
        return Response({"user": str(request.user)})

    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(serializer.validated_data)


urlpatterns = [path("echo/", Echo.as_view()), path("health/", health)]
