"""A live source's wait for new data: polled, not busy, and bounded by its ``live_timeout``.

A live source yields ``sd.NOT_YET`` while no new data is there but the run goes on. Each
time, the runner waits ``live_poll`` seconds and asks again; between waits the pipeline can
be stopped. Without a bound, a source whose feed died silently would wait until someone
interrupts it: with ``live_timeout`` (seconds of ``NOT_YET`` in a row) the request fails
instead, with a ``LiveTimeout`` naming the source, the run and how long it waited.
"""

from __future__ import annotations

import time
from typing import Any

from strax_decl.errors import LiveTimeout

__all__ = ["LiveTimeout", "LiveWait"]


class LiveWait:
    """The current wait of one live source instance (see the module doc)."""

    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin
        self.since: float | None = None  # the first NOT_YET of the current wait

    def not_yet(self) -> None:
        """The source has nothing new: sleep ``live_poll`` s, or raise LiveTimeout once it
        has had nothing new for ``live_timeout`` s."""
        plugin = self.plugin
        now = time.monotonic()
        if self.since is None:
            self.since = now
        limit = plugin.live_timeout
        if limit is not None and now - self.since >= limit:
            raise LiveTimeout(
                f"live source {plugin.name} of run {plugin.run_id} had no new data for "
                f"{now - self.since:.1f} s (live_timeout = {limit:g} s) and did not end; "
                "raise its live_timeout, or check what feeds it"
            )
        time.sleep(plugin.live_poll if limit is None else min(plugin.live_poll, limit))

    def reset(self) -> None:
        """Data came: the next wait starts afresh."""
        self.since = None
