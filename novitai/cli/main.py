"""`novitai`: the command line of novitai's API (argparse; talks HTTP, never imports Django).

Exit codes: 0 done (with --wait: the status was reached), 1 the instance failed or ended in
another status, 2 usage error, 3 --wait timed out, 4 the API answered an error or could not be
reached, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import IO, TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

from novitai.cli import render
from novitai.cli.client import ApiError, Client, Unreachable
from novitai.cli.progress import Waiter

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_API, EXIT_UNREACHABLE = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
_NOT_GIVEN: Any = object()  # an option left out (None means "never" for --idle-timeout)
EXIT_BROKEN_PIPE = 141  # as if killed by SIGPIPE, like other commands in a pipeline

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_SECONDS = 1800.0
DEFAULT_POLL_INTERVAL_SECONDS = 1.0
STATUSES = (
    "pending",
    "provisioning",
    "starting",
    "health_checking",
    "ready",
    "stopping",
    "stopped",
    "restarting",
    "terminating",
    "terminated",
    "failed",
    "preempted",
)
ID_HELP = "the instance's id, or its name (the live instance of that name)"
# A name as the API accepts it (instances.services.NAME_RE; the CLI imports no Django).
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# What each action waits for with --wait.
TARGETS = {"create": "ready", "start": "ready", "restart": "ready", "stop": "stopped",
           "delete": "terminated"}  # fmt: skip


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse writing to the streams main() was given, raising instead of exiting."""

    out: IO[str] = sys.stdout
    err: IO[str] = sys.stderr

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            (self.err if file is sys.stderr else self.out).write(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self.err.write(message)
        raise _Exit(status)


# --- argument types (usage errors, exit 2) -----------------------------------------------------


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _optional_integer(text: str) -> int | None:
    """A whole number, or "never" (sent as null)."""
    return None if text.strip().lower() == "never" else _integer(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _usd(text: str) -> str:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount of USD: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not an amount of USD: {text!r}")
    return text


def _env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _mount(text: str) -> dict[str, str]:
    """VOLUME[:PATH]: a volume id or name, mounted on PATH (/workspace by default)."""
    volume, sep, path = text.partition(":")
    if not volume or (sep and not path):
        raise argparse.ArgumentTypeError(f"expected VOLUME or VOLUME:/PATH, got {text!r}")
    return {"volume_id": volume, "mount_path": path or "/workspace"}


def _poll_interval_default() -> float:
    text = os.environ.get("NOVITAI_POLL_INTERVAL", "")
    try:
        return _seconds(text) if text else DEFAULT_POLL_INTERVAL_SECONDS
    except argparse.ArgumentTypeError:
        return DEFAULT_POLL_INTERVAL_SECONDS


# --- the parser -------------------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """On the top parser with defaults, and on every command without (so that they may come
    before or after the command: `novitai --json list` and `novitai list --json`)."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default(os.environ.get("NOVITAI_URL") or DEFAULT_URL),
        help=f"novitai's address (env NOVITAI_URL; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=default(os.environ.get("NOVITAI_API_KEY", "")),
        help="a tenant API key (env NOVITAI_API_KEY, which is better: a flag shows in `ps`)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the API's JSON bodies (for scripts)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="trace each request to stderr (method, URL, status, time, request id; never the "
        "key or the body)",
    )


def _wait_options(parser: argparse.ArgumentParser, *, flag: bool) -> None:
    if flag:
        parser.add_argument(
            "--wait",
            action="store_true",
            help="wait for the outcome, printing each step to stderr",
        )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"with --wait: give up after this many seconds (exit 3; default "
        f"{DEFAULT_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument(
        "--poll-interval",
        type=_seconds,
        default=_poll_interval_default(),
        metavar="SECONDS",
        help="seconds between polls (env NOVITAI_POLL_INTERVAL; default 1)",
    )


def build_parser(out: IO[str], err: IO[str]) -> argparse.ArgumentParser:  # noqa: PLR0915 - one statement per command and option
    parser_class = type("Parser", (_Parser,), {"out": out, "err": err})
    parser = parser_class(
        prog="novitai",
        description="GPU instances on Novita.ai through novitai's API.",
        epilog="Exit codes: 0 done, 1 the instance failed or ended elsewhere, 2 usage, "
        "3 --wait timed out, 4 API error, 5 unreachable, 130 interrupted.",
    )
    _global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name, help=help_text, description=help_text
        )
        _global_options(sub, top=False)
        return sub

    create = command("create", "create an instance (the cheapest acceptable offer)")
    create.add_argument("name", help="1-63 lowercase letters, digits or '-'")
    # Each flag is also spelt as the API's field (product_name(s), template_id, …).
    create.add_argument(
        "--product",
        "--product-name",
        dest="product",
        action="append",
        required=True,
        metavar="NAME",
        help='acceptable product, e.g. "RTX 4090 24GB"; repeat for several, most wanted first',
    )
    create.add_argument(
        "--template", "--template-id", dest="template", required=True, metavar="ID",
        help="Novita template id",
    )  # fmt: skip
    create.add_argument(
        "--gpus", "--gpu-num", dest="gpus", type=_integer, metavar="N", help="GPUs (default 1)"
    )
    create.add_argument("--region", metavar="CODE", help="preferred region, e.g. EU-NL-01")
    create.add_argument(
        "--rootfs", "--rootfs-size", dest="rootfs", type=_integer, metavar="GB",
        help="root disk size",
    )  # fmt: skip
    create.add_argument("--spot", action="store_true", help="spot billing (may be reclaimed)")
    create.add_argument(
        "--on-preempt",
        choices=["notify", "restart", "reprovision"],
        help="spot only: what follows a reclaim (default notify)",
    )
    create.add_argument(
        "--idle-timeout",
        type=_integer,
        metavar="SECONDS",
        help="stop it once ready this long without a heartbeat",
    )
    create.add_argument(
        "--on-idle", choices=["stop", "delete"], help="what the idle timeout does (default stop)"
    )
    create.add_argument(
        "--max-price", "--max-price-per-hour", dest="max_price", type=_usd, metavar="USD",
        help="USD per hour, at most",
    )  # fmt: skip
    create.add_argument(
        "--webhook", "--webhook-url", dest="webhook", metavar="URL", help="where its webhooks go"
    )
    create.add_argument(
        "--env",
        type=_env,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable of the instance; repeat for several",
    )
    create.add_argument(
        "--volume",
        type=_mount,
        action="append",
        default=[],
        metavar="VOLUME[:PATH]",
        help="mount a network volume (its id or name; path /workspace by default); repeat",
    )
    create.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="makes running the same command again safe: the same answer, no second instance",
    )
    _wait_options(create, flag=True)

    listing = command("list", "list instances, newest first")
    listing.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help=f"only these (repeat, or comma-separated): {', '.join(STATUSES)}",
    )
    listing.add_argument("--name", help="exact name")
    listing.add_argument("--region", metavar="CODE")
    listing.add_argument("--page", type=_integer, default=1, metavar="N")
    listing.add_argument("--page-size", type=_integer, metavar="N", help="default 50, at most 200")
    listing.add_argument("--all", action="store_true", help="every page")

    command("get", "one instance").add_argument("id", help=ID_HELP)
    command("events", "an instance's history, oldest first").add_argument("id", help=ID_HELP)
    command("heartbeat", "record activity (puts off an idle stop)").add_argument("id", help=ID_HELP)
    ssh = command("ssh", "print the ssh command of a running instance")
    ssh.add_argument("id", help=ID_HELP)
    ssh.add_argument(
        "--password",
        action="store_true",
        help="also ask for the ssh password (printed on stderr; the read is an event)",
    )

    change = command("set", "change a live instance's on-preempt, idle timeout or webhook")
    change.add_argument("id", help=ID_HELP)
    change.add_argument("--on-preempt", choices=["notify", "restart", "reprovision"])
    change.add_argument(
        "--idle-timeout",
        type=_optional_integer,
        metavar="SECONDS|never",
        default=_NOT_GIVEN,
        help="stop it once ready this long without a heartbeat ('never': no idle stop)",
    )
    change.add_argument("--on-idle", choices=["stop", "delete"], help="what an idle timeout does")
    change.add_argument("--webhook", metavar="URL|none", help="where later webhooks go")

    for verb, help_text in (
        ("start", "start a stopped instance"),
        ("stop", "stop a ready instance"),
        ("restart", "restart a ready instance"),
        ("delete", "delete an instance (idempotent)"),
    ):
        sub = command(verb, f"{help_text} (--wait: until {TARGETS[verb]})")
        sub.add_argument("id", help=ID_HELP)
        _wait_options(sub, flag=True)

    wait = command("wait", "wait until an instance reaches a status, printing each step")
    wait.add_argument("id", help=ID_HELP)
    wait.add_argument("--for", dest="status", default="ready", choices=STATUSES, metavar="STATUS")
    _wait_options(wait, flag=False)

    volumes = command("volumes", "network volumes: list, create, get, rename, grow, delete")
    verbs = volumes.add_subparsers(dest="volume_command", metavar="VERB", required=True)

    def volume_verb(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = verbs.add_parser(name, help=help_text, description=help_text)
        _global_options(sub, top=False)
        return sub

    volume_verb("list", "every volume, newest first")
    made = volume_verb("create", "create a volume in a region (USD per GB per day shown)")
    made.add_argument("name", help="1-63 lowercase letters, digits or '-'")
    made.add_argument("--region", required=True, metavar="CODE", help="e.g. EU-NL-01")
    made.add_argument("--size", type=_integer, required=True, metavar="GB", help="at least 10")
    volume_verb("get", "one volume").add_argument("volume", help="a volume id or name")
    renamed = volume_verb("rename", "rename a volume (novitai's name)")
    renamed.add_argument("volume", help="a volume id or name")
    renamed.add_argument("new_name")
    grown = volume_verb("grow", "grow a volume (it never shrinks)")
    grown.add_argument("volume", help="a volume id or name")
    grown.add_argument("--size", type=_integer, required=True, metavar="GB")
    volume_verb("delete", "delete a volume (refused while mounted)").add_argument(
        "volume", help="a volume id or name"
    )

    products = command("products", "GPU products per region, cheapest first")
    products.add_argument("--name", help="part of the name")
    products.add_argument("--region", metavar="CODE")
    products.add_argument("--spot", action="store_true", help="spot prices and products")
    products.add_argument("--available", action="store_true", help="only available ones")
    products.add_argument("--max-price", type=_usd, metavar="USD", help="per hour, at most")
    products.add_argument("--gpus", type=_integer, metavar="N", help="prices for N GPUs")

    command("summary", "what runs, what it bills per hour, what is stuck (/api/v1/metrics/)")

    costs = command("costs", "what instances cost, from the ledger (/api/v1/costs/)")
    costs.add_argument(
        "--group-by",
        choices=["instance", "product", "region", "day", "tenant"],
        default="instance",
        help="one row per … (tenant: staff only; default instance)",
    )
    costs.add_argument(
        "--from", dest="start", metavar="WHEN", help="ISO 8601 (default: month start)"
    )
    costs.add_argument("--to", dest="end", metavar="WHEN", help="ISO 8601 (default: now)")

    budget = command("budget", "the tenant's monthly budget; with options, set it")
    budget.add_argument("--limit", metavar="USD|none", help="monthly limit ('none': no budget)")
    budget.add_argument(
        "--thresholds", metavar="P,P,…", help="alert percentages, increasing (default 50,80,100)"
    )
    budget.add_argument("--on-exhausted", choices=["notify", "stop", "delete"])
    budget.add_argument("--webhook", metavar="URL|none", help="where budget events go")
    budget.add_argument("--tenant", metavar="NAME", help="staff: whose budget")

    offers = command("offers", "the offer a create would pick, and every other in order")
    offers.add_argument(
        "--product", "--product-name", dest="product", action="append", required=True,
        metavar="NAME",
    )  # fmt: skip
    offers.add_argument("--gpus", type=_integer, metavar="N")
    offers.add_argument("--region", metavar="CODE")
    offers.add_argument("--spot", action="store_true")
    offers.add_argument("--max-price", type=_usd, metavar="USD")
    offers.add_argument("--rootfs", type=_integer, metavar="GB")
    return parser


# --- commands ---------------------------------------------------------------------------------


@dataclass
class Context:
    client: Client
    args: argparse.Namespace
    out: IO[str]
    err: IO[str]
    started: float
    waiting_for: str = ""  # the instance id while --wait polls (for Ctrl-C's note)

    def emit(self, body: Any, text: str) -> None:
        print(render.dumps(body) if self.args.json else text, file=self.out)

    def note(self, text: str) -> None:
        print(text, file=self.err)


def _instance(instance_id: str) -> str:
    """The instance's path; an id is one path segment, whatever it holds."""
    return f"instances/{quote(instance_id, safe='')}/"


def resolve(client: Client, ident: str) -> str:
    """The id of the instance `ident` names: an id as it is; a name, the id of the live instance
    of that name (names are unique among a tenant's live instances), else of the newest one.
    Anything else goes to the server as it is, which says why not."""
    with contextlib.suppress(ValueError):
        uuid.UUID(ident)
        return ident
    if not NAME_RE.match(ident):
        return ident
    found = client.page("instances/", {"name": ident, "page_size": 50}).results
    live = [i for i in found if i.get("status") != "terminated"]
    chosen = live or found
    return str(chosen[0]["id"]) if chosen else ident


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /api/v1/instances/ body: only what was given (the server has the defaults)."""
    products: list[str] = args.product
    body: dict[str, Any] = {"name": args.name, "template_id": args.template}
    if len(products) == 1:
        body["product_name"] = products[0]
    else:
        body["product_names"] = products
    optional = {
        "gpu_num": args.gpus,
        "region": args.region,
        "rootfs_size": args.rootfs,
        "billing_mode": "spot" if args.spot else None,
        "on_preempt": args.on_preempt,
        "idle_timeout_seconds": args.idle_timeout,
        "on_idle": args.on_idle,
        "max_price_per_hour": args.max_price,
        "webhook_url": args.webhook,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if args.env:
        body["envs"] = [{"key": key, "value": value} for key, value in args.env]
    if args.volume:
        body["volumes"] = args.volume
    return body


def _wait(
    ctx: Context,
    instance: dict[str, Any],
    target: str,
    events_seen: int,
    answered_at: float | None = None,
) -> int:
    ctx.waiting_for = str(instance["id"])
    waiter = Waiter(
        ctx.client,
        ctx.waiting_for,
        target=target,
        out=ctx.err,
        started=ctx.started,
        timeout=ctx.args.timeout,
        poll_interval=ctx.args.poll_interval,
        events_seen=events_seen,
        answered_at=answered_at,
    )
    outcome = waiter.run(instance)
    ctx.waiting_for = ""
    ctx.emit(outcome.instance, render.instance_view(outcome.instance))
    return outcome.code


def cmd_create(ctx: Context) -> int:
    args = ctx.args
    for mount in args.volume:  # a name is the id of the volume of that name
        mount["volume_id"] = _volume(ctx.client, mount["volume_id"]).split("/")[1]
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    instance = ctx.client.request("POST", "instances/", body=create_body(args), headers=headers)
    answered_at = time.monotonic()
    if not args.wait:
        ctx.emit(instance, render.instance_view(instance))
        ctx.note(f"follow it: novitai wait {instance['id']}")
        return EXIT_OK
    ctx.note(
        f"{instance['name']} ({instance['id']}) is {instance['status']}; waiting for ready "
        f"(Ctrl-C stops waiting, not the instance)"
    )
    return _wait(ctx, instance, TARGETS["create"], events_seen=0, answered_at=answered_at)


def _events_count(ctx: Context, instance_id: str) -> int:
    return ctx.client.page(f"{_instance(instance_id)}events/", {"page_size": 1}).count


def cmd_action(ctx: Context) -> int:
    args = ctx.args
    path = _instance(args.id)
    seen = _events_count(ctx, args.id) if args.wait else 0
    if args.command == "delete":
        instance = ctx.client.request("DELETE", path)
    else:
        instance = ctx.client.request("POST", f"{path}{args.command}/")
    answered_at = time.monotonic()
    if not args.wait:
        ctx.emit(instance, render.instance_view(instance))
        return EXIT_OK
    target = TARGETS[args.command]
    ctx.note(f"{instance['name']} ({instance['id']}) is {instance['status']}; waiting for {target}")
    return _wait(ctx, instance, target, events_seen=seen, answered_at=answered_at)


def cmd_wait(ctx: Context) -> int:
    seen = _events_count(ctx, ctx.args.id)
    instance = ctx.client.request("GET", _instance(ctx.args.id))
    ctx.note(f"{instance['name']} ({instance['id']}) is {instance['status']}; "
             f"waiting for {ctx.args.status}")  # fmt: skip
    return _wait(ctx, instance, ctx.args.status, events_seen=seen)


def cmd_get(ctx: Context) -> int:
    instance = ctx.client.request("GET", _instance(ctx.args.id))
    ctx.emit(instance, render.instance_view(instance))
    return EXIT_OK


def cmd_heartbeat(ctx: Context) -> int:
    instance = ctx.client.request("POST", f"{_instance(ctx.args.id)}heartbeat/")
    text = f"{instance['name']} ({instance['id']}): {instance['status']}, last active " + (
        render.when(instance.get("last_active_at")) or render.NONE
    )
    if instance.get("idle_stop_at"):
        text += f", idle stop at {render.when(instance['idle_stop_at'])}"
    ctx.emit(instance, text)
    return EXIT_OK


def cmd_ssh(ctx: Context) -> int:
    """The ssh command from the instance (no password read), or with --password from
    …/ssh/ (Novita is asked, the read recorded as an event)."""
    path = _instance(ctx.args.id)
    if ctx.args.password:
        access = ctx.client.request("GET", f"{path}ssh/")
        ctx.emit(access, access["command"])
        if not ctx.args.json:
            ctx.note(f"password: {access['password']}")
        return EXIT_OK
    instance = ctx.client.request("GET", path)
    ssh = instance.get("ssh")
    if not ssh:
        ctx.note(f"novitai: {instance['name']} is {instance['status']}: no ssh access now")
        return EXIT_FAILED
    ctx.emit(ssh, ssh["command"] or f"ssh -p {ssh['port']} {ssh['user']}@{ssh['host']}")
    return EXIT_OK


def cmd_list(ctx: Context) -> int:
    args = ctx.args
    params: dict[str, Any] = {
        "status": ",".join(args.status) if args.status else None,
        "name": args.name,
        "region": args.region,
    }
    if args.all:
        count, items = ctx.client.every("instances/", params)
        ctx.emit(
            {"count": count, "results": items},
            render.table(render.INSTANCE_COLUMNS, map(render.instance_row, items)),
        )
        return EXIT_OK
    page = ctx.client.page("instances/", {**params, "page": args.page, "page_size": args.page_size})
    ctx.emit(
        page.body, render.table(render.INSTANCE_COLUMNS, map(render.instance_row, page.results))
    )
    if page.has_next and not args.json:
        ctx.note(
            f"{len(page.results)} of {page.count} shown; next: --page {args.page + 1}, or --all"
        )
    return EXIT_OK


def cmd_events(ctx: Context) -> int:
    count, events = ctx.client.every(f"{_instance(ctx.args.id)}events/")
    ctx.emit(
        {"count": count, "results": events},
        render.table(render.EVENT_COLUMNS, render.event_rows(events)),
    )
    return EXIT_OK


def cmd_products(ctx: Context) -> int:
    args = ctx.args
    params = {
        "name": args.name,
        "region": args.region,
        "billing_mode": "spot" if args.spot else None,
        "available": "true" if args.available else None,
        "max_price": args.max_price,
        "gpu_num": args.gpus,
    }
    count, products = ctx.client.every("products/", params)
    ctx.emit(
        {"count": count, "results": products},
        render.table(render.PRODUCT_COLUMNS, map(render.product_row, products)),
    )
    return EXIT_OK


def cmd_offers(ctx: Context) -> int:
    args = ctx.args
    params = {
        "product_names": ",".join(args.product),
        "gpu_num": args.gpus,
        "region": args.region,
        "billing_mode": "spot" if args.spot else None,
        "max_price_per_hour": args.max_price,
        "rootfs_size": args.rootfs,
    }
    body = ctx.client.request("GET", "products/optimal/", params=params)
    offers = body.get("offers") or []
    text = render.table(
        render.OFFER_COLUMNS, [render.offer_row(i, o) for i, o in enumerate(offers, 1)]
    )
    rejected = body.get("rejected") or []
    if rejected:
        text += "\n\nleft out:\n" + render.table(
            ("PRODUCT", "REGION", "REASON", "MESSAGE"),
            [[r.get("product_name"), r.get("region_code"), r.get("reason"), r.get("message")]
             for r in rejected],
        )  # fmt: skip
    ctx.emit(body, text)
    return EXIT_OK


def cmd_set(ctx: Context) -> int:
    args = ctx.args
    body: dict[str, Any] = {}
    if args.on_preempt is not None:
        body["on_preempt"] = args.on_preempt
    if args.on_idle is not None:
        body["on_idle"] = args.on_idle
    if args.idle_timeout is not _NOT_GIVEN:
        body["idle_timeout_seconds"] = args.idle_timeout
    if args.webhook is not None:
        body["webhook_url"] = None if args.webhook.lower() == "none" else args.webhook
    if not body:
        ctx.note(
            "novitai: nothing to change (give --on-preempt, --on-idle, --idle-timeout or --webhook)"
        )
        return EXIT_USAGE
    instance = ctx.client.request("PATCH", _instance(args.id), body=body)
    ctx.emit(instance, render.instance_view(instance))
    return EXIT_OK


def _volume(client: Client, ident: str) -> str:
    """The path of the volume `ident` names: an id as it is, else the live one of that name."""
    with contextlib.suppress(ValueError):
        uuid.UUID(ident)
        return f"volumes/{quote(ident, safe='')}/"
    _, found = client.every("volumes/")
    named = [v for v in found if v.get("name") == ident]
    target = str(named[0]["id"]) if named else ident
    return f"volumes/{quote(target, safe='')}/"


def cmd_volumes(ctx: Context) -> int:
    args, client = ctx.args, ctx.client
    verb = args.volume_command
    if verb == "list":
        count, items = client.every("volumes/")
        ctx.emit(
            {"count": count, "results": items},
            render.table(render.VOLUME_COLUMNS, map(render.volume_row, items)),
        )
        return EXIT_OK
    if verb == "create":
        body = {"name": args.name, "region": args.region, "size_gb": args.size}
        volume = client.request("POST", "volumes/", body=body)
    elif verb == "delete":
        client.request("DELETE", _volume(client, args.volume))
        ctx.emit({"deleted": args.volume}, f"{args.volume} deleted")
        return EXIT_OK
    elif verb == "get":
        volume = client.request("GET", _volume(client, args.volume))
    else:
        change = {"name": args.new_name} if verb == "rename" else {"size_gb": args.size}
        volume = client.request("PATCH", _volume(client, args.volume), body=change)
    ctx.emit(volume, render.volume_view(volume))
    return EXIT_OK


def cmd_summary(ctx: Context) -> int:
    summary = ctx.client.request("GET", "metrics/")
    ctx.emit(summary, render.summary_view(summary))
    return EXIT_OK


def cmd_costs(ctx: Context) -> int:
    args = ctx.args
    params = {"group_by": args.group_by, "from": args.start, "to": args.end}
    report = ctx.client.request("GET", "costs/", params=params)
    ctx.emit(report, render.costs_view(report))
    return EXIT_OK


def cmd_budget(ctx: Context) -> int:
    args = ctx.args
    params = {"tenant": args.tenant}
    changes = (args.limit, args.thresholds, args.on_exhausted, args.webhook)
    if all(value is None for value in changes):
        budget = ctx.client.request("GET", "budget/", params=params)
    else:
        current = ctx.client.request("GET", "budget/", params=params)
        body: dict[str, Any] = {
            "monthly_limit_usd": current["monthly_limit_usd"],
            "alert_thresholds": current["alert_thresholds"],
            "on_exhausted": current["on_exhausted"],
            "webhook_url": current["webhook_url"],
        }
        if args.limit is not None:
            body["monthly_limit_usd"] = None if args.limit.lower() == "none" else args.limit
        if args.thresholds is not None:
            body["alert_thresholds"] = [_threshold(p) for p in args.thresholds.split(",") if p]
        if args.on_exhausted is not None:
            body["on_exhausted"] = args.on_exhausted
        if args.webhook is not None:
            body["webhook_url"] = None if args.webhook.lower() == "none" else args.webhook
        budget = ctx.client.request("PUT", "budget/", params=params, body=body)
    ctx.emit(budget, render.budget_view(budget))
    return EXIT_OK


def _threshold(text: str) -> Any:
    """A percentage as given: the server says what is wrong with it (400 naming the field)."""
    text = text.strip()
    return int(text) if text.isdigit() else text


COMMANDS: dict[str, Callable[[Context], int]] = {
    "create": cmd_create,
    "list": cmd_list,
    "get": cmd_get,
    "events": cmd_events,
    "heartbeat": cmd_heartbeat,
    "ssh": cmd_ssh,
    "start": cmd_action,
    "stop": cmd_action,
    "restart": cmd_action,
    "delete": cmd_action,
    "wait": cmd_wait,
    "products": cmd_products,
    "offers": cmd_offers,
    "summary": cmd_summary,
    "costs": cmd_costs,
    "budget": cmd_budget,
    "set": cmd_set,
    "volumes": cmd_volumes,
}


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """The `novitai` console script: runs one command, returns the exit code."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        return _run(argv, out, err)
    except BrokenPipeError:
        # `novitai list | head`: the reader left. Nothing more to say, and nothing to flush.
        if out is sys.stdout:
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None, out: IO[str], err: IO[str]) -> int:
    parser = build_parser(out, err)
    try:
        args = parser.parse_args(argv)
        if not args.api_key:
            parser.error("no API key: set NOVITAI_API_KEY (or pass --api-key)")
    except _Exit as exc:
        return exc.code

    client = Client(args.url, args.api_key, trace=err if args.verbose else None)
    ctx = Context(client=client, args=args, out=out, err=err, started=time.monotonic())
    try:
        if getattr(args, "id", None) is not None:
            args.id = resolve(client, args.id)
        return COMMANDS[args.command](ctx)
    except ApiError as exc:
        if args.json and exc.body is not None:
            print(render.dumps(exc.body), file=out)
        print(f"novitai: {render.api_error(exc)}", file=err)
        return EXIT_API
    except Unreachable as exc:
        print(f"novitai: {exc}", file=err)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        if ctx.waiting_for:
            print(
                f"\nnovitai: interrupted: stopped waiting; the operation continues on the "
                f"server (novitai get {ctx.waiting_for})",
                file=err,
            )
        else:
            print("\nnovitai: interrupted", file=err)
        return EXIT_INTERRUPTED
    finally:
        client.close()
