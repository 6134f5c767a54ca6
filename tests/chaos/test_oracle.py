"""The chaos suite's invariant checker judges duplicates, orphans, deliveries and 5xx right."""

from __future__ import annotations

from dataclasses import replace

from chaos.oracle import (
    DB_OUTAGE,
    Accepted,
    Delivery,
    Received,
    Response,
    Row,
    Snapshot,
    Upstream,
    judge,
    owner_key,
)

A = "0a1b2c3d-4e5f-4061-8a9b-0c1d2e3f4a5b"
B = "1b2c3d4e-5f60-4172-9bac-1d2e3f4a5b6c"
HOOKS = "http://127.0.0.1:9001/hooks"


def upstream_name(row_id: str, suffix: str = "") -> str:
    return f"novitai-{row_id.replace('-', '')[:12]}{suffix}"


def healthy() -> Snapshot:
    """Two ready instances, each with its one upstream GPU and its instance.ready received."""
    return Snapshot(
        prefix="novitai",
        rows=[Row(A, "ready", "up-a"), Row(B, "ready", "up-b")],
        upstream=[
            Upstream("up-a", upstream_name(A), live=True),
            Upstream("up-b", upstream_name(B), live=True),
        ],
        events=[(A, "instance.ready"), (B, "instance.ready")],
        deliveries=[
            Delivery("msg_a", "instance.ready", A, HOOKS, "succeeded"),
            Delivery("msg_b", "instance.ready", B, HOOKS, "succeeded"),
        ],
        received=[
            Received(HOOKS, "msg_a", "instance.ready", A, started=10.0, finished=10.1),
            Received(HOOKS, "msg_b", "instance.ready", B, started=11.0, finished=11.1),
        ],
        receiver_urls=frozenset({HOOKS}),
        responses=[
            Response(1.0, 1.1, "POST", "create", 202),
            Response(1.2, 1.3, "POST", "create", 202),
            Response(2.0, 2.1, "GET", "list", 200),
        ],
        accepted=[Accepted(A), Accepted(B)],
    )


def test_a_healthy_snapshot_passes_with_its_counts() -> None:
    verdict = judge(healthy())
    assert verdict.violations() == []
    assert verdict.ok is True
    assert (verdict.accepted, verdict.at_end, verdict.deliveries) == (2, 2, 2)
    assert verdict.server_errors == {}
    assert verdict.received_twice == {}


def test_two_live_upstream_instances_of_one_row_are_a_duplicate_and_the_extra_an_orphan() -> None:
    snapshot = healthy()
    snapshot.upstream.append(Upstream("up-a2", upstream_name(A), live=True))
    verdict = judge(snapshot)
    assert verdict.duplicate_gpus == {A: ["up-a", "up-a2"]}
    assert verdict.orphans == ["up-a2"]
    assert verdict.violations() == [
        "1 row(s) with two live upstream instances",
        "1 live upstream instance(s) without a live row",
    ]


def test_a_removed_duplicate_is_no_longer_counted() -> None:
    snapshot = healthy()
    snapshot.upstream.append(Upstream("up-a2", upstream_name(A), live=False))
    assert judge(snapshot).ok is True


def test_a_live_upstream_instance_of_a_terminated_or_failed_row_is_an_orphan() -> None:
    snapshot = healthy()
    snapshot.rows = [Row(A, "terminated", "up-a"), Row(B, "failed", "up-b", "upstream_error")]
    snapshot.accepted = [Accepted(A, frozenset({"terminated"})), Accepted(B, frozenset({"failed"}))]
    verdict = judge(snapshot)
    assert verdict.orphans == ["up-a", "up-b"]
    assert verdict.duplicate_gpus == {}
    assert verdict.not_at_end == {}


def test_an_upstream_instance_nobody_knows_is_an_orphan_and_other_prefixes_are_ignored() -> None:
    snapshot = healthy()
    stranger = "2c3d4e5f-6071-4283-acbd-2e3f4a5b6c7d"
    snapshot.upstream += [
        Upstream("up-x", upstream_name(stranger), live=True),
        Upstream("up-y", "other-deployment-2c3d4e5f6071", live=True),
    ]
    verdict = judge(snapshot)
    assert verdict.orphans == ["up-x"]
    assert verdict.duplicate_gpus == {}


def test_a_reprovisioned_name_belongs_to_its_row() -> None:
    assert owner_key(upstream_name(A, "-r2"), "novitai") == "0a1b2c3d4e5f"
    assert owner_key(upstream_name(A, "-x"), "novitai") is None
    snapshot = healthy()
    snapshot.rows[0] = Row(A, "ready", "up-a-r1")
    snapshot.upstream[0] = Upstream("up-a-r1", upstream_name(A, "-r1"), live=True)
    assert judge(snapshot).ok is True


def test_a_create_not_at_its_end_is_reported_with_its_status() -> None:
    snapshot = healthy()
    snapshot.rows[1] = Row(B, "failed", "", "no_capacity")
    missing = "3d4e5f60-7182-4394-bdce-3f4a5b6c7d8e"
    snapshot.accepted.append(Accepted(missing))
    verdict = judge(snapshot)
    assert verdict.not_at_end == {B: "failed (no_capacity)", missing: "missing"}
    assert (verdict.accepted, verdict.at_end) == (3, 1)
    assert verdict.ok is False


def test_a_delivery_never_received_is_missing() -> None:
    snapshot = healthy()
    snapshot.received = snapshot.received[:1]
    verdict = judge(snapshot)
    assert verdict.missing_deliveries == ["msg_b"]
    assert verdict.violations() == ["1 delivery(ies) never received"]


def test_a_notifiable_event_without_its_delivery_row_is_reported() -> None:
    snapshot = healthy()
    snapshot.events.append((A, "instance.stopped"))
    verdict = judge(snapshot)
    assert verdict.events_without_delivery == {f"{A} instance.stopped": 1}
    assert verdict.ok is False


def test_deliveries_to_other_urls_are_not_judged() -> None:
    snapshot = healthy()
    snapshot.deliveries.append(Delivery("msg_c", "instance.ready", A, "http://127.0.0.1:9/x"))
    snapshot.events.append((A, "instance.ready"))
    assert judge(snapshot).ok is True


def test_the_same_webhook_id_twice_in_turn_is_one_delivery_received_twice() -> None:
    snapshot = healthy()
    snapshot.received.append(replace(snapshot.received[0], started=20.0, finished=20.1))
    verdict = judge(snapshot)
    assert verdict.received_twice == {"msg_a": 2}
    assert verdict.concurrent_resends == []
    assert verdict.ok is True


def test_a_second_post_while_the_first_is_still_answered_is_a_concurrent_resend() -> None:
    snapshot = healthy()
    first = replace(snapshot.received[0], started=10.0, finished=80.0)  # a drip-fed answer
    snapshot.received[0] = first
    snapshot.received.append(replace(first, started=70.5, finished=71.0))
    verdict = judge(snapshot)
    assert verdict.received_twice == {"msg_a": 2}
    assert verdict.concurrent_resends == ["msg_a"]
    assert verdict.violations() == ["1 delivery(ies) POSTed again mid-attempt"]


def test_an_unfinished_first_post_overlaps_any_later_one() -> None:
    snapshot = healthy()
    snapshot.received[0] = replace(snapshot.received[0], finished=None)
    snapshot.received.append(replace(snapshot.received[0], started=500.0, finished=500.1))
    assert judge(snapshot).concurrent_resends == ["msg_a"]


def test_an_unknown_webhook_and_a_bad_signature_are_violations() -> None:
    snapshot = healthy()
    snapshot.received.append(Received(HOOKS, "msg_zz", "instance.ready", A, 30.0, 30.1))
    snapshot.received[1] = replace(snapshot.received[1], signature_valid=False)
    verdict = judge(snapshot)
    assert verdict.unknown_received == ["msg_zz"]
    assert verdict.bad_signatures == 1
    assert verdict.violations() == [
        "1 webhook(s) received that no row sent",
        "1 webhook(s) with a bad signature",
    ]


def test_a_500_outside_a_database_outage_is_forbidden() -> None:
    snapshot = healthy()
    snapshot.phases = [("redis_outage", 5.0, 15.0)]
    snapshot.responses += [
        Response(6.0, 6.1, "POST", "create", 500, code="server_error"),
        Response(20.0, 20.1, "GET", "list", 502),
    ]
    verdict = judge(snapshot)
    assert verdict.server_errors == {"500 redis_outage": 1, "502 outside any phase": 1}
    assert verdict.forbidden_errors == 2
    assert verdict.ok is False


def test_during_a_database_outage_only_a_503_with_retry_after_is_allowed() -> None:
    snapshot = healthy()
    snapshot.phases = [("before", 0.0, 5.0), (DB_OUTAGE, 5.0, 15.0)]
    proper = Response(6.0, 6.1, "GET", "list", 503, retry_after="5", code="service_unavailable")
    snapshot.responses.append(proper)
    # in flight when the outage began: still inside it
    snapshot.responses.append(replace(proper, sent=4.9, answered=5.2))
    verdict = judge(snapshot)
    assert verdict.server_errors == {"503 db_outage": 2}
    assert verdict.forbidden_errors == 0
    assert verdict.ok is True

    snapshot.responses += [
        replace(proper, retry_after=None),
        replace(proper, status=500, code="server_error", retry_after=None),
        replace(proper, sent=16.0, answered=16.1),  # after the outage
    ]
    verdict = judge(snapshot)
    assert verdict.server_errors == {
        "500 db_outage": 1,
        "503 db_outage": 3,
        "503 outside any phase": 1,
    }
    assert verdict.forbidden_errors == 3


def test_a_request_without_an_answer_is_a_violation() -> None:
    snapshot = healthy()
    snapshot.responses.append(Response(3.0, 18.0, "GET", "list", 0))
    verdict = judge(snapshot)
    assert verdict.unanswered == 1
    assert verdict.violations() == ["1 API request(s) without an answer"]


def test_history_violations_do_not_stop_the_state_from_converging() -> None:
    snapshot = healthy()
    snapshot.responses.append(Response(6.0, 6.1, "POST", "create", 500))
    verdict = judge(snapshot)
    assert (verdict.ok, verdict.converged) == (False, True)
    snapshot.upstream.append(Upstream("up-a2", upstream_name(A), live=True))
    assert judge(snapshot).converged is False
