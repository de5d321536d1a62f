"""The embedded broker: kombu's filesystem transport with an atomic publish.

Kombu's filesystem channel creates a message file and then writes it, while a consumer
may already be moving it away: the consumer reads an empty file and its worker stops
consuming. We publish by writing a hidden temporary file and renaming it into place
(rename is atomic on one filesystem), so a consumer only ever sees complete messages;
and a consumer that still meets a damaged file skips it instead of dying.
"""

from __future__ import annotations

import logging
import os
import uuid
from time import monotonic

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


class Transport(filesystem.Transport):
    Channel = Channel
