"""An asyncio event loop in a thread of its own: how the tests' own servers (webhook receivers,
the registry's fault proxy) serve while the test's code blocks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """Runs from construction until `stop()`; `call` runs a coroutine on the loop and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self, last: Coroutine[Any, Any, None]) -> None:
        """Runs `last` (a server's clean-up) on the loop, then stops the loop, whatever happened."""
        try:
            self.call(last)
        finally:
            self.stop()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
