"""Catalog rows built directly in the database (selection tests need no Novita)."""

from __future__ import annotations

import factory
from django.utils import timezone

from catalog.models import Product, Region, Template


class RegionFactory(factory.django.DjangoModelFactory[Region]):
    class Meta:
        model = Region
        django_get_or_create = ("cluster_id",)

    cluster_id = factory.LazyAttribute(lambda r: r.code.lower())
    code = factory.Sequence(lambda n: f"XX-RG-{n:02d}")
    name = factory.LazyAttribute(lambda r: f"{r.code} (Somewhere)")
    gpu_types: list[str] = []
    fetched_at = factory.LazyFunction(timezone.now)


class ProductFactory(factory.django.DjangoModelFactory[Product]):
    class Meta:
        model = Product

    novita_id = factory.LazyAttribute(lambda p: p.name.lower().replace(" ", "-") + ".sim")
    name = "RTX 4090 24GB"
    region = factory.SubFactory(RegionFactory)
    cpu_per_gpu = 16
    memory_per_gpu = 62
    disk_per_gpu = 200
    price = 34000
    spot_price = 17000
    bills_on_demand = True
    bills_spot = True
    available = True
    inventory_state = "normal"
    min_rootfs = 10
    max_rootfs = 1000
    fetched_at = factory.LazyFunction(timezone.now)


class TemplateFactory(factory.django.DjangoModelFactory[Template]):
    class Meta:
        model = Template

    novita_id = factory.Sequence(lambda n: str(90000 + n))
    name = "tpl"
    image = "ghcr.io/example/app:1"
    fetched_at = factory.LazyFunction(timezone.now)
