"""The Redis broker transport, sturdy against a broker restart while tasks run.

When the connection to Redis is lost while a worker holds unacknowledged messages (every
orchestrator worker does: a run's task is ``acks_late`` and lasts the whole run), Celery
closes the channel, and kombu's Redis QoS then tries to restore those messages through
a connection that is already gone: ``AttributeError: 'NoneType' object has no attribute
'hostname'``. Celery treats that as unrecoverable and the worker stops consuming for
good, with its runs still going. Found by tests/scale/test_platform_faults.py.

The same holds for the task's final acknowledgement on that dead channel. Here the
restore, ack and reject are skipped when the channel's connection is gone: the messages
are still in Redis's unacked index (or were lost with a non-persistent Redis), redelivered
after the visibility timeout, and a redelivered run finds nothing to claim — so the
worker reconnects and carries on.
"""

from __future__ import annotations

import logging

from kombu.transport import redis

log = logging.getLogger(__name__)


class QoS(redis.QoS):
    def _orphaned(self) -> bool:
        """True when this channel's connection is gone (closed after a broker outage)."""
        connection = getattr(self.channel, "connection", None)
        return getattr(connection, "client", None) is None

    def restore_unacked(self, client=None):
        if client is None and self._orphaned():
            log.warning(
                "broker connection lost with %d unacknowledged message(s): left for "
                "redelivery after the visibility timeout",
                len(self._delivered),
            )
            self._delivered.clear()
            return None
        return super().restore_unacked(client)

    def ack(self, delivery_tag):
        # A task that outlived its connection (a run spanning a broker restart) acks on a
        # dead channel: forget the message locally; the broker redelivers it later and
        # the redelivery finds nothing to claim.
        if self._orphaned():
            log.warning("ack of message %s skipped: its broker connection is gone", delivery_tag)
            self._delivered.pop(delivery_tag, None)
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if self._orphaned():
            log.warning("reject of message %s skipped: its broker connection is gone", delivery_tag)
            self._delivered.pop(delivery_tag, None)
            return
        super().reject(delivery_tag, requeue=requeue)


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
