"""What every admin page of the console shares: pretty JSON, links, and actions that ask first.

An action (stop, start, delete, retry, redeliver) is never one click: the list's bulk action and
the object page's button both lead to a page naming what will happen to which rows, and only its
form does it. The action itself is the service the API calls, with the staff user as the actor;
a refusal (409) is shown with the service's own message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from novitai.errors import ServiceError

CONFIRM_FIELD = "confirm"
CONFIRM_TEMPLATE = "admin/novitai/confirm_action.html"
NONE = mark_safe('<span class="console-none">—</span>')  # a constant


def staff_actor(request: HttpRequest) -> str:
    """Who acts, in events: "staff:<username>", as the API names a staff session."""
    return f"staff:{request.user.get_username()}"


def pretty_json(value: Any) -> SafeString:
    if value in (None, "", [], {}):
        return NONE
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="console-json">{}</pre>', text)


def compact_json(value: Any, *, inline_up_to: int = 160) -> SafeString:
    """Short JSON on one line (a table cell); longer JSON pretty, folded."""
    if value in (None, "", [], {}):
        return NONE
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    if len(text) <= inline_up_to:
        return format_html('<code class="console-json-inline">{}</code>', text)
    keys = f"{len(value)} keys" if isinstance(value, dict) else f"{len(text)} characters"
    return format_html("<details><summary>{}</summary>{}</details>", keys, pretty_json(value))


def link(url: str, text: Any) -> SafeString:
    return format_html('<a href="{}">{}</a>', url, text)


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], css: str = "") -> SafeString:
    """A small HTML table for a read-only field (every cell escaped unless already safe)."""
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    if not body:
        return NONE
    return format_html(
        '<table class="console-table {}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        css,
        head,
        body,
    )


def confirmed(request: HttpRequest) -> bool:
    return request.method == "POST" and request.POST.get(CONFIRM_FIELD) == "yes"


def confirmation(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    *,
    title: str,
    question: str,
    objects: Iterable[Model],
    action: str = "",
    cancel_url: str,
) -> TemplateResponse:
    """The page that asks before an action: the rows it acts on, and a form doing it. `action`
    names the list's bulk action (the form posts back to the list); without it, the form posts
    to the page's own URL (an object's button)."""
    objects = list(objects)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "question": question,
        "objects": objects,
        "action": action,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "confirm_field": CONFIRM_FIELD,
        "cancel_url": cancel_url,
        "opts": model_admin.model._meta,
    }
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)


def act_on_each(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable[Model],
    verb: str,
    act: Callable[[Any], Any],
) -> int:
    """Runs `act` on every object; each refusal is shown with its message. Returns how many
    were done (and says so)."""
    done = 0
    for obj in objects:
        try:
            act(obj)
            done += 1
        except ServiceError as exc:
            model_admin.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
    if done:
        model_admin.message_user(request, f"{verb}: {done}.", messages.SUCCESS)
    return done


def back_to(url: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(url)


def operate_once(  # noqa: PLR0913 - what an operation is told, keyword-only
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    obj: Model,
    *,
    title: str,
    question: str,
    done: str,
    act: Callable[[], Any],
    page: str,
    label: str = "",
) -> HttpResponse:
    """An object's button: GET (or an unconfirmed POST) asks; a confirmed POST acts, says what
    happened (or the service's refusal), and goes back to the object's page."""
    if not confirmed(request):
        return confirmation(
            request, model_admin, title=title, question=question, objects=[obj], cancel_url=page
        )
    name = label or str(obj)
    try:
        act()
    except ServiceError as exc:
        model_admin.message_user(request, f"{name}: {exc.message}", messages.ERROR)
    else:
        model_admin.message_user(request, f"{done}: {name}.", messages.SUCCESS)
    return back_to(page)


class OperationsAdmin(admin.ModelAdmin):
    """A change page with buttons (label, URL) above the form: `operations()` names them."""

    change_form_template = "admin/novitai/change_form_operations.html"

    def operations(self, obj: Any) -> list[tuple[str, str]]:
        return []

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        buttons = self.operations(obj) if obj is not None else []
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "operations": buttons}
        )
