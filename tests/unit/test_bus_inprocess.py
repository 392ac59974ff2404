"""InProcessBus: fan-out, filtering, retries, dead letters, ordering and draining."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Collection

import pytest

from ioc_core.bus import Event, Handler, InProcessBus, RedisStreamsBus, make_bus
from ioc_core.config import Settings


def ev(name: str = "incident.created", **payload: object) -> Event:
    return Event(name=name, payload=payload, correlation_id="test")


class Recorder:
    """Handler that records what it saw, failing the first `fail_times` deliveries of
    every event."""

    def __init__(self, fail_times: int = 0) -> None:
        self.fail_times = fail_times
        self.calls: dict[str, int] = defaultdict(int)
        self.handled: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.calls[event.event_id] += 1
        if self.calls[event.event_id] <= self.fail_times:
            raise RuntimeError(f"boom {self.calls[event.event_id]}")
        self.handled.append(event)


@pytest.mark.parametrize(
    ("subscriptions", "published", "expected"),
    [
        pytest.param(
            {"a": None, "b": None},
            ["x", "y"],
            {"a": ["x", "y"], "b": ["x", "y"]},
            id="every group gets every event",
        ),
        pytest.param(
            {"a": None, "b": {"y"}},
            ["x", "y", "z", "y"],
            {"a": ["x", "y", "z", "y"], "b": ["y", "y"]},
            id="name filter",
        ),
        pytest.param(
            {"a": {"x", "z"}, "b": set()},
            ["x", "y", "z"],
            {"a": ["x", "z"], "b": []},
            id="empty filter receives nothing",
        ),
    ],
)
async def test_fan_out_and_filter(
    subscriptions: dict[str, Collection[str] | None],
    published: list[str],
    expected: dict[str, list[str]],
) -> None:
    bus = InProcessBus()
    recorders = {group: Recorder() for group in subscriptions}
    for group, names in subscriptions.items():
        bus.subscribe(group=group, handler=recorders[group], names=names)
    await bus.start()
    await bus.publish([ev(name) for name in published])
    await bus.wait_idle(2)
    assert {g: [e.name for e in r.handled] for g, r in recorders.items()} == expected
    assert bus.dead_letters == []
    await bus.close()


@pytest.mark.parametrize(
    ("fail_times", "max_deliveries", "calls", "dead"),
    [
        pytest.param(0, 3, 1, False, id="success first time"),
        pytest.param(2, 3, 3, False, id="retry then success on the last delivery"),
        pytest.param(3, 3, 3, True, id="dead letter after max deliveries"),
        pytest.param(99, 1, 1, True, id="max_deliveries=1 means no retry"),
    ],
)
async def test_retry_and_dead_letter(
    fail_times: int, max_deliveries: int, calls: int, dead: bool, caplog: pytest.LogCaptureFixture
) -> None:
    bus = InProcessBus(max_deliveries=max_deliveries, retry_delay_s=0.001)
    rec = Recorder(fail_times)
    bus.subscribe(group="g", handler=rec)
    await bus.start()
    event = ev()
    with caplog.at_level(logging.WARNING, logger="ioc_core.bus"):
        await bus.publish([event])
        await bus.wait_idle(2)
    assert rec.calls[event.event_id] == calls
    if dead:
        assert rec.handled == []
        assert len(bus.dead_letters) == 1
        group, dead_event, error = bus.dead_letters[0]
        assert (group, dead_event) == ("g", event)
        assert f"boom {calls}" in error
        assert any(
            r.levelno == logging.ERROR and event.event_id in r.getMessage() for r in caplog.records
        )
    else:
        assert rec.handled == [event]
        assert bus.dead_letters == []
    await bus.close()


async def test_dead_letter_does_not_block_the_group() -> None:
    bus = InProcessBus(max_deliveries=2, retry_delay_s=0.001)
    poison = ev("poison")

    async def handler(event: Event) -> None:
        if event.name == "poison":
            raise ValueError("cannot apply")
        seen.append(event)

    seen: list[Event] = []
    bus.subscribe(group="g", handler=handler)
    await bus.start()
    after = [ev(), ev()]
    await bus.publish([poison, *after])
    await bus.wait_idle(2)
    assert seen == after
    assert [(g, e.event_id) for g, e, _ in bus.dead_letters] == [("g", poison.event_id)]
    await bus.close()


async def test_order_is_kept_within_a_group_even_across_retries() -> None:
    bus = InProcessBus(max_deliveries=3, retry_delay_s=0.001)
    seen: list[int] = []
    failed: set[int] = set()

    async def handler(event: Event) -> None:
        n = int(event.payload["n"])
        if n % 7 == 0 and n not in failed:  # every 7th event fails once
            failed.add(n)
            raise RuntimeError("transient")
        await asyncio.sleep(0)  # let other groups' workers interleave
        seen.append(n)

    other = Recorder()
    bus.subscribe(group="ordered", handler=handler)
    bus.subscribe(group="other", handler=other)
    await bus.start()
    for chunk in range(5):
        await bus.publish([ev(n=chunk * 20 + i) for i in range(20)])
    await bus.wait_idle(5)
    assert seen == list(range(100))
    assert [e.payload["n"] for e in other.handled] == list(range(100))
    await bus.close()


async def test_close_drains_queued_events() -> None:
    bus = InProcessBus()
    handled: list[int] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0.001)
        handled.append(int(event.payload["n"]))

    bus.subscribe(group="g", handler=slow)
    await bus.start()
    await bus.publish([ev(n=i) for i in range(50)])
    assert (await bus.health())["groups"]["g"]["pending"] > 0
    await bus.close()
    assert handled == list(range(50))
    assert (await bus.health())["groups"] == {"g": {"pending": 0}}
    with pytest.raises(RuntimeError, match="closed"):
        await bus.publish([ev()])


async def test_close_gives_up_on_a_stuck_handler(caplog: pytest.LogCaptureFixture) -> None:
    bus = InProcessBus()
    release = asyncio.Event()

    async def stuck(event: Event) -> None:
        await release.wait()

    bus.subscribe(group="g", handler=stuck)
    await bus.start()
    await bus.publish([ev(), ev()])
    with pytest.raises(TimeoutError):
        await bus.wait_idle(0.05)
    with caplog.at_level(logging.WARNING, logger="ioc_core.bus"):
        await bus.close(grace_s=0.05)
    assert "2 event(s) unhandled" in caplog.text


async def test_handlers_may_publish_follow_up_events() -> None:
    bus = InProcessBus()
    followups = Recorder()

    async def first(event: Event) -> None:
        await bus.publish([ev("followup", of=event.event_id)])

    bus.subscribe(group="first", handler=first, names={"start"})
    bus.subscribe(group="second", handler=followups, names={"followup"})
    await bus.start()
    await bus.publish([ev("start") for _ in range(3)])
    await bus.close()  # drains the chain, not just the first hop
    assert len(followups.handled) == 3


async def test_subscribe_rules() -> None:
    bus = InProcessBus()
    handler: Handler = Recorder()
    bus.subscribe(group="g", handler=handler)
    with pytest.raises(ValueError, match="already"):
        bus.subscribe(group="g", handler=handler)
    await bus.start()
    # A feature's role may join once the hub runs: it gets what is published from then on.
    late = Recorder()
    bus.subscribe(group="h", handler=late)
    await bus.publish([ev()])
    await bus.wait_idle()
    assert len(late.handled) == 1
    health = await bus.health()
    assert health == {
        "status": "ok",
        "kind": "in-process",
        "groups": {"g": {"pending": 0}, "h": {"pending": 0}},
    }
    await bus.close()
    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe(group="i", handler=handler)


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, InProcessBus),
        ({"IOC_REDIS_URL": "redis://127.0.0.1:6379/0", "IOC_BUS_STREAM": "s"}, RedisStreamsBus),
    ],
)
async def test_make_bus_chooses_by_redis_url(env: dict[str, str], kind: type) -> None:
    bus = make_bus(Settings.from_env(env))
    assert isinstance(bus, kind)
    if isinstance(bus, RedisStreamsBus):
        assert bus.stream == "s"
    await bus.close()  # closes the unused Redis client; never connects


async def test_relay_close_returns_while_commits_keep_notifying() -> None:
    """Shutdown must not hang when commits keep waking the relay (seen under load)."""
    from typing import Any

    from ioc_core.outbox import Relay

    class FakeSessions:
        pass

    relay = Relay(sessions=FakeSessions(), bus=InProcessBus(), poll_s=0.01)  # type: ignore[arg-type]
    calls = 0

    async def publish_batch() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.001)
        return 0

    relay.publish_batch = publish_batch  # type: ignore[method-assign]

    async def notifier() -> Any:
        while True:
            relay.notify()
            await asyncio.sleep(0)

    await relay.start()
    noise = asyncio.create_task(notifier())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(relay.close(grace_s=2), timeout=5)
    noise.cancel()
    assert calls > 1
