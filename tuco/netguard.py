"""HTTP connections whose peer address is vetted on the connected socket.

A host name is checked where the connection actually lands, after DNS: an answer
that changes between a check at save time and the connection (rebinding) cannot
slip through. Used for webhooks and attachment URLs (messaging.delivery: public
addresses only) and for relays (lines.relay: RELAY_ALLOWED_NETWORKS).
"""

from collections.abc import Callable

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# Called with the connected socket; raises to refuse it (after closing it).
SocketCheck = Callable[[object], None]


def _pool_classes(check: SocketCheck) -> dict:
    class CheckedHTTPConnection(HTTPConnection):
        def _new_conn(self):
            sock = super()._new_conn()
            check(sock)
            return sock

    class CheckedHTTPSConnection(HTTPSConnection):
        def _new_conn(self):
            sock = super()._new_conn()
            check(sock)
            return sock

    class CheckedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = CheckedHTTPConnection

    class CheckedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = CheckedHTTPSConnection

    return {"http": CheckedHTTPConnectionPool, "https": CheckedHTTPSConnectionPool}


class PeerCheckedAdapter(HTTPAdapter):
    """A requests adapter whose every new connection is passed to `check`."""

    def __init__(self, check: SocketCheck, **kwargs):
        self._pool_classes = _pool_classes(check)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pool_classes)
