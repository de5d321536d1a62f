"""The embedded filesystem broker never hands a consumer a half-written message."""

from __future__ import annotations

import threading

from kombu import Connection

from scep.broker import Transport


def options(folder) -> dict:
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        "polling_interval": 0.001,
        "control_folder": str(folder / "control"),
    }


def test_messages_published_while_being_consumed_all_arrive_whole(tmp_path):
    (tmp_path / "processed").mkdir()
    received: list[dict] = []
    total = 400
    declared = threading.Event()

    def consume() -> None:
        with Connection(transport=Transport, transport_options=options(tmp_path)) as conn:
            queue = conn.SimpleQueue("q")
            declared.set()
            while len(received) < total:
                message = queue.get(timeout=10)
                received.append(message.payload)
                message.ack()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert declared.wait(10)
    with Connection(transport=Transport, transport_options=options(tmp_path)) as conn:
        queue = conn.SimpleQueue("q")
        for i in range(total):
            queue.put({"n": i, "pad": "x" * 2000})
    consumer.join(timeout=30)

    assert sorted(m["n"] for m in received) == list(range(total))
    assert all(m["pad"] == "x" * 2000 for m in received)


def test_an_unreadable_message_is_skipped_not_fatal(tmp_path):
    (tmp_path / "processed").mkdir()
    (tmp_path / "0_broken.other.msg").write_bytes(b"")
    with Connection(transport=Transport, transport_options=options(tmp_path)) as conn:
        queue = conn.SimpleQueue("other")
        queue.put({"ok": True})
        assert queue.get(timeout=5).payload == {"ok": True}
