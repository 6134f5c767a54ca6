from django.urls import URLPattern, URLResolver
from rest_framework.routers import SimpleRouter

from storage.api.views import VolumeViewSet

router = SimpleRouter()
router.register("volumes", VolumeViewSet, basename="volume")

urlpatterns: list[URLPattern | URLResolver] = [*router.urls]
