"""The embedded broker: kombu's filesystem transport with an atomic publish.

Kombu's filesystem channel creates a message file and then writes it, while a consumer
may already be moving it away: the consumer reads an empty file and its worker stops
consuming. We publish by writing a hidden temporary file and renaming it into place
(rename is atomic on one filesystem), so a consumer only ever sees complete messages;
and a consumer that still meets a damaged file skips it instead of dying.

Kombu polls the folder: a message waited on average half the polling interval (25 ms at
the default 50 ms) at every hop, twice between "start run" and "fault active" (worker,
then agent). A consumer here sleeps on an inotify watch of the folder instead and wakes
as soon as a message is renamed into it; the polling interval remains as the upper
bound of a wait, so a missed event (or a system without inotify) only costs the old
latency.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import uuid
from queue import Empty
from time import monotonic, sleep

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

log = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot keeps the partial file out of every queue's listing.
        partial = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.part")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        while True:
            try:
                return super()._get(queue)
            except ValueError:  # an unreadable message: drop it, keep consuming
                log.error("filesystem broker: skipped an unreadable message on %s", queue)


#: inotify(7) event masks: a file renamed into, or written and closed in, the folder.
_IN_MOVED_TO = 0x00000080
_IN_CLOSE_WRITE = 0x00000008


class FolderWakeup:
    """Wait until a file lands in a folder, or a timeout passes.

    inotify through ctypes rather than a package: it is three libc calls, and the
    embedded broker must keep working (by plain sleeping) where they do not exist.
    """

    def __init__(self, folder: str):
        self.fd: int | None = None
        libc_name = ctypes.util.find_library("c")
        if not libc_name:
            return
        try:
            libc = ctypes.CDLL(libc_name, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        if libc.inotify_add_watch(fd, os.fsencode(folder), _IN_MOVED_TO | _IN_CLOSE_WRITE) < 0:
            os.close(fd)
            return
        self.fd = fd

    def wait(self, timeout: float) -> None:
        if self.fd is None:
            sleep(timeout)
            return
        readable, _, _ = select.select([self.fd], [], [], timeout)
        if readable:
            try:  # drain: one wake-up is enough for any number of arrivals
                while os.read(self.fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Transport(filesystem.Transport):
    Channel = Channel

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        self._wakeup: FolderWakeup | None = None

    def drain_events(self, connection, timeout=None):
        """Kombu's loop, with the sleep between polls cut short by a new message."""
        if self._wakeup is None:
            # Watch before the first look at the folder, so nothing lands unseen between.
            self._wakeup = FolderWakeup(
                self.client.transport_options.get("data_folder_in", "data_in")
            )
        started = monotonic()
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                pause = self.polling_interval
                if timeout is not None:
                    left = timeout - (monotonic() - started)
                    if left <= 0:
                        raise TimeoutError() from None
                    pause = min(pause, left) if pause else left
                self._wakeup.wait(pause or 0.0)

    def close_connection(self, connection):
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None
        super().close_connection(connection)
