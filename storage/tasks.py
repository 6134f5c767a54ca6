from __future__ import annotations

from celery import shared_task


@shared_task(name="storage.image_save_start", ignore_result=True)
def image_save_start(save_id: str) -> None:
    """Asks Novita to save the instance as an image (ids in; a repeat does nothing)."""
    from storage.images import image_save_start as start

    start(save_id=save_id)


@shared_task(name="storage.image_saves_follow", ignore_result=True)
def image_saves_follow() -> int:
    """Beat: follows Novita's save-image jobs (one listing for all of them)."""
    from storage.images import image_saves_follow as follow

    return follow()
