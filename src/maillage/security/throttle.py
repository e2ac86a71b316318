"""Failed sign-ins per client address.

Past ``limit`` failed sign-ins (wrong password or TOTP, locked account, wrong client
secret) from one address within ``window_s``, the token endpoint refuses that address
(429 with ``Retry-After``) until its oldest failure leaves the window, without checking
any credential. The per-account lockout does not see a guesser who spreads tries over
many logins, and each try costs the hub an argon2 hash: this bounds both. Counted per
process (each ``serve`` worker keeps its own), keyed by the connecting address (behind a
reverse proxy, run uvicorn with the proxy's forwarded headers trusted, or every client is
the proxy).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureThrottle:
    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a throttle needs a limit >= 1 and a window > 0 s")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """Seconds before ``address`` may try again, or None when it may now."""
        failures = self._recent(address)
        if failures is None or len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + self.window_s - self._clock()))

    def failed(self, address: str) -> None:
        failures = self._recent(address)
        if failures is None:
            failures = self._failures[address] = deque()
        failures.append(self._clock())
        self._failures.move_to_end(address)
        while len(self._failures) > self._max_addresses:  # the least recently failing go
            self._failures.popitem(last=False)

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        horizon = self._clock() - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures
