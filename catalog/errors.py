"""The catalog's errors, as the API reports them (see novitai.errors)."""

from __future__ import annotations

from novitai.errors import NotFound, ValidationFailed


class UnknownRegion(ValidationFailed):
    """code "validation_error", like every 400 with field details."""

    message = "Unknown region."

    def __init__(self, value: str, *, field: str = "region", known: list[str] | None = None):
        hint = f" Known regions: {', '.join(known)}." if known else ""
        text = (
            f"Unknown region {value!r}: use a region code such as EU-NL-01 or a cluster id.{hint}"
        )
        super().__init__(text, details={field: [text]})


class TemplateNotFound(NotFound):
    code = "template_not_found"
    message = "No such template."


class UnknownProduct(NotFound):
    code = "product_not_found"
    message = "No product of that name exists."


class NoOfferAvailable(NotFound):
    code = "no_offer_available"
    message = "No offer matches the request."


class CacheNotFound(NotFound):
    code = "cache_not_found"
    message = "No such cache."


class CacheKeyNotFound(NotFound):
    code = "cache_key_not_found"
    message = "No such key in that cache."
