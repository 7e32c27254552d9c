import asyncio
import json
import secrets
import zlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from channels.layers import get_channel_layer

from servers import relay


def line(text: str) -> str:
    return relay.frame("console output", text)


@pytest_asyncio.fixture
async def quiet_relay(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[relay.Relay]:
    """A relay that never dials a daemon: the test hands it the frames."""

    async def offline(self: relay.Relay) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(relay.Relay, "run", offline)
    monkeypatch.setattr(relay.Relay, "connected", True)
    quiet = relay.Relay("batches")
    yield quiet
    await quiet.stop()


def frames_of(messages: list[str]) -> list[dict]:
    loaded = [json.loads(m) for m in messages]
    return [f for m in loaded for f in (m if isinstance(m, list) else [m])]


def inflate(message: bytes | str) -> str:
    assert isinstance(message, bytes)
    inflater = zlib.decompressobj(-15)
    return (inflater.decompress(message) + inflater.flush()).decode()


async def listening(quiet: relay.Relay, viewers: int, deflated: int = 0) -> str:
    """A channel in the relay's group, which counts `viewers` (`deflated` of them
    wanting deflated batches)."""
    channel = await get_channel_layer().new_channel()
    await get_channel_layer().group_add(quiet.group, channel)
    quiet.viewers, quiet.deflated_viewers = viewers, deflated
    return channel


async def next_batch(channel: str, timeout: float = 2) -> dict:
    return await asyncio.wait_for(get_channel_layer().receive(channel), timeout)


class TestConsoleBatches:
    def test_it_keeps_order_and_every_message_under_the_frame_limit(self) -> None:
        frames = [line(f"{i} " + "é" * (i * 37 % 3000)) for i in range(400)]
        messages = relay.pack(frames)
        assert len(messages) > 1

        # Counted in bytes, so lines that are not ASCII cannot overflow a message.
        assert frames_of(messages) == [json.loads(f) for f in frames]
        for message in messages:
            assert len(message.encode()) <= relay.MAX_FRAME

    def test_it_sends_a_lone_frame_as_it_is(self) -> None:
        frame = relay.frame("status", "running")
        assert relay.pack([frame]) == [frame]

    def test_it_deflates_a_flood_into_fewer_smaller_messages(self) -> None:
        frames = [
            line(f"[12:00:00 INFO]: tick {i} " + "é" * (i % 90)) for i in range(30000)
        ]
        texts = relay.pack(frames)
        deflated = relay.deflate(frames)

        # The same frames in the same order, far fewer bytes on the wire.
        assert frames_of([inflate(m) for m in deflated]) == frames_of(texts)
        assert len(deflated) < len(texts)
        assert all(len(m) <= relay.MAX_FRAME for m in deflated)
        assert sum(map(len, deflated)) * 5 < sum(len(t.encode()) for t in texts)

    def test_it_sends_short_messages_as_text(self) -> None:
        short = [line("one"), line("two")]
        assert relay.deflate(short) == relay.pack(short)

    def test_it_sends_as_text_what_deflate_cannot_shrink_enough(self) -> None:
        noise = [line(secrets.token_urlsafe(3000)) for _ in range(400)]
        messages = relay.deflate([line("first"), *noise])

        # Random text shrinks too little to fit a message: it goes as text.
        assert any(isinstance(m, str) for m in messages)
        restored = [m if isinstance(m, str) else inflate(m) for m in messages]
        assert frames_of(restored) == frames_of(relay.pack([line("first"), *noise]))
        assert all(
            len(m if isinstance(m, bytes) else m.encode()) <= relay.MAX_FRAME
            for m in messages
        )

    @pytest.mark.asyncio
    async def test_it_pushes_frames_that_come_together_as_one_numbered_batch(
        self, quiet_relay: relay.Relay
    ) -> None:
        # Two viewers: one takes text, the other raw-deflated batches.
        viewer = await listening(quiet_relay, 2, deflated=1)

        quiet_relay.receive(line("alone"))
        first = await next_batch(viewer)
        for n in range(1000):
            quiet_relay.receive(line(f"flood {n} " + "x" * 100))
        second = await next_batch(viewer)

        # A quiet line goes out at once; a flood waits for others, encoded once.
        assert (first["batch"], first["texts"]) == (1, [line("alone")])
        assert second["batch"] == 2
        assert 1 < len(second["texts"]) < 10
        lines = [f["args"][0] for f in frames_of(second["texts"])]
        assert lines == [f"flood {n} " + "x" * 100 for n in range(1000)]
        # Deflated once for the viewers that asked for it, too; a line alone is
        # too short to be worth it.
        inflated = [inflate(m) for m in second["deflated"]]
        assert frames_of(inflated) == frames_of(second["texts"])
        assert first["deflated"] == [line("alone")]

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("deflated_viewers", "encodings"),
        [(0, {"texts"}), (1, {"deflated"}), (2, {"deflated"})],
    )
    async def test_it_encodes_a_batch_only_the_ways_its_viewers_want(
        self, quiet_relay: relay.Relay, deflated_viewers: int, encodings: set[str]
    ) -> None:
        viewer = await listening(quiet_relay, 2, deflated=deflated_viewers)
        if deflated_viewers == 1:
            encodings = encodings | {"texts"}

        quiet_relay.receive(line("counted"))
        batch = await next_batch(viewer)
        assert set(batch) - {"type", "batch"} == encodings

    @pytest.mark.asyncio
    async def test_it_drops_what_is_not_a_frame_and_carries_on(
        self, quiet_relay: relay.Relay
    ) -> None:
        viewer = await listening(quiet_relay, 1)

        for junk in (
            '{"event": ["console output"], "args": []}',
            '{"event": "console output", "args": "no list"}',
            "[" * 100_000,
            '"just a string"',
            '{"event": "format disk", "args": []}',
        ):
            quiet_relay.receive(junk)
        quiet_relay.receive(line("still relayed"))
        assert frames_of((await next_batch(viewer))["texts"]) == [
            json.loads(line("still relayed"))
        ]

    @pytest.mark.asyncio
    async def test_it_catches_a_viewer_up_to_the_last_batch_pushed(
        self, quiet_relay: relay.Relay, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(relay, "_relays", {"batches": quiet_relay})
        viewer = await listening(quiet_relay, 0)
        quiet_relay.receive(relay.frame("status", "running"))
        quiet_relay.receive(line("pushed"))
        await next_batch(viewer)

        # What was not pushed yet is left to the next batch, so none comes twice.
        quiet_relay.receive(relay.frame("status", "stopping"))
        quiet_relay.receive(line("pending"))
        batch, messages = relay.console_so_far("batches")
        assert batch == 1
        assert frames_of(messages) == [
            {"event": "relay", "args": ["connected"]},
            {"event": "status", "args": ["running"]},
            {"event": "console output", "args": ["pushed"]},
        ]
        assert (await next_batch(viewer))["batch"] == 2

    @pytest.mark.asyncio
    async def test_it_holds_the_next_batch_until_the_viewers_have_the_last(
        self, quiet_relay: relay.Relay, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(relay, "_relays", {"batches": quiet_relay})
        monkeypatch.setattr(relay, "HOLD_S", 5.0)
        viewer = await listening(quiet_relay, 2)

        quiet_relay.receive(line("first"))
        assert (await next_batch(viewer))["batch"] == 1
        relay.delivered("batches", 1)
        quiet_relay.receive(line("second"))
        quiet_relay.receive(line("third"))

        # One viewer still sends batch 1: the lines after it wait, and gather.
        with pytest.raises(TimeoutError):
            await next_batch(viewer, timeout=0.3)
        quiet_relay.receive(line("fourth"))
        relay.delivered("batches", 1)
        second = await next_batch(viewer, timeout=1)
        assert second["batch"] == 2
        assert [f["args"][0] for f in frames_of(second["texts"])] == [
            "second",
            "third",
            "fourth",
        ]

    @pytest.mark.asyncio
    async def test_it_holds_a_batch_no_longer_than_the_hold(
        self, quiet_relay: relay.Relay, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(relay, "HOLD_S", 0.2)
        viewer = await listening(quiet_relay, 1)

        quiet_relay.receive(line("never acknowledged"))
        await next_batch(viewer)
        quiet_relay.receive(line("goes anyway"))
        assert (await next_batch(viewer, timeout=1))["batch"] == 2

    @pytest.mark.asyncio
    async def test_a_viewer_leaving_does_not_hold_the_console(
        self, quiet_relay: relay.Relay, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(relay, "_relays", {"batches": quiet_relay})
        monkeypatch.setattr(relay, "HOLD_S", 5.0)
        viewer = await listening(quiet_relay, 2)

        quiet_relay.receive(line("first"))
        await next_batch(viewer)
        relay.delivered("batches", 1)
        relay.leave("batches")
        quiet_relay.receive(line("second"))
        assert (await next_batch(viewer, timeout=1))["batch"] == 2

    @pytest.mark.asyncio
    async def test_it_gathers_as_long_again_as_the_last_fan_out_took(
        self, quiet_relay: relay.Relay, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(relay, "_relays", {"batches": quiet_relay})
        viewer = await listening(quiet_relay, 1)

        quiet_relay.receive(line("first"))
        await next_batch(viewer)
        await asyncio.sleep(0.3)  # a slow fan-out
        quiet_relay.receive(line("second"))
        relay.delivered("batches", 1)

        # The next batch leaves the process half its time to read the daemon.
        with pytest.raises(TimeoutError):
            await next_batch(viewer, timeout=0.2)
        assert (await next_batch(viewer, timeout=1))["batch"] == 2
