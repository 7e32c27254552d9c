import json

from servers import relay
from servers.consumers import _batches


class TestConsoleBatches:
    def test_it_keeps_order_and_every_message_under_the_frame_limit(self) -> None:
        frames = [
            relay.frame("console output", f"{i} " + "x" * (i * 37 % 3000))
            for i in range(400)
        ]
        batches = list(_batches(frames))
        assert len(batches) > 1
        assert [f for batch in batches for f in batch] == frames
        for batch in batches:
            message = "[" + ",".join(batch) + "]"
            assert len(message) <= relay.MAX_FRAME
            assert [json.loads(f) for f in batch] == json.loads(message)

    def test_it_sends_a_lone_frame_as_it_is(self) -> None:
        frame = relay.frame("status", "running")
        assert list(_batches([frame])) == [[frame]]
