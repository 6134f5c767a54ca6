from django.urls import URLPattern, URLResolver
from rest_framework.routers import SimpleRouter

from storage.api.images import ImageSaveViewSet
from storage.api.views import VolumeViewSet

router = SimpleRouter()
router.register("volumes", VolumeViewSet, basename="volume")
router.register("image-saves", ImageSaveViewSet, basename="image-save")

urlpatterns: list[URLPattern | URLResolver] = [*router.urls]
