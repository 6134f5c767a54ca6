from django.urls import URLPattern, URLResolver
from rest_framework.routers import SimpleRouter

from instances.api.views import InstanceViewSet

router = SimpleRouter()
router.register("instances", InstanceViewSet, basename="instance")

urlpatterns: list[URLPattern | URLResolver] = [*router.urls]
