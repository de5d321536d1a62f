"""The embedded filesystem broker never hands a consumer a half-written message, and a
waiting consumer wakes when a message lands rather than at its next poll."""

from __future__ import annotations

import os
import threading
import time

from kombu import Connection

from scep.broker import FolderWakeup, Transport


def options(folder, polling_interval: float = 0.001) -> dict:
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        "polling_interval": polling_interval,
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


def test_a_folder_wakeup_returns_when_a_file_is_renamed_into_the_folder(tmp_path):
    (tmp_path / ".partial").write_bytes(b"{}")  # written before the watch: no event
    wakeup = FolderWakeup(str(tmp_path))
    assert wakeup.fd is not None, "inotify is available on Linux"
    try:
        threading.Timer(0.2, os.replace, (tmp_path / ".partial", tmp_path / "m.q.msg")).start()
        began = time.monotonic()
        wakeup.wait(60)
        assert time.monotonic() - began < 30, "woke on the rename, not at the timeout"
    finally:
        wakeup.close()


def test_a_consumer_gets_a_message_long_before_its_next_poll(tmp_path):
    # Polling alone would look again only when get()'s 60 s timeout caps the 600 s
    # interval; woken by the message, the consumer has it within seconds.
    # A queue name of its own: kombu keeps filesystem exchange bindings process-wide.
    (tmp_path / "processed").mkdir()
    slow = options(tmp_path, polling_interval=600)
    got: list[tuple[dict, float]] = []
    waiting = threading.Event()

    def consume() -> None:
        with Connection(transport=Transport, transport_options=slow) as conn:
            queue = conn.SimpleQueue("wake")
            waiting.set()
            message = queue.get(timeout=60)
            got.append((message.payload, time.monotonic()))

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert waiting.wait(10)
    time.sleep(0.5)  # into its first wait, past its first look at the empty folder
    with Connection(transport=Transport, transport_options=slow) as conn:
        conn.SimpleQueue("wake").put({"hello": 1})
        sent = time.monotonic()
    consumer.join(timeout=90)
    [(payload, received)] = got
    assert payload == {"hello": 1}
    assert received - sent < 20, "delivered by a poll, not by the wake-up"
