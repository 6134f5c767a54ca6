from django.urls import URLPattern, URLResolver, path, re_path

from catalog.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("regions/", views.RegionListView.as_view(), name="region-list"),
    path("products/", views.ProductListView.as_view(), name="product-list"),
    path("products/optimal/", views.OptimalOfferView.as_view(), name="product-optimal"),
    path(
        "templates/<str:template_id>/", views.TemplateDetailView.as_view(), name="template-detail"
    ),
    path("catalog/sync/", views.CatalogSyncView.as_view(), name="catalog-sync"),
    path("cache/", views.CacheListView.as_view(), name="cache-list"),
    path("cache/<str:name>/", views.CacheDetailView.as_view(), name="cache-detail"),
    re_path(
        r"^cache/(?P<name>[^/]+)/(?P<key>[^/]{1,250})/$",
        views.CacheKeyView.as_view(),
        name="cache-key",
    ),
]
