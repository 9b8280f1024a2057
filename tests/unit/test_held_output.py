"""ServerState.flush_held_heads, the once-a-loop-pass flush of held HTTP/1.1 output."""

from __future__ import annotations

import pytest

from roadrunner.server_state import ServerState


class HeldConnection:
    """What flush_held_heads needs of a connection (protocols/http1/writer.ResponseWriter)."""

    def __init__(self, fails: bool = False) -> None:
        self.held_registered = True
        self.fails = fails
        self.flushed = 0

    def flush_held(self) -> None:
        self.flushed += 1
        if self.fails:
            raise ConnectionResetError("the write failed")


def test_a_failed_flush_leaves_the_connections_after_it_free_to_hold_again() -> None:
    """A write that raises in one connection's flush must not leave the others registered for
    a callback that will never come: their next held output would never be flushed."""
    state = ServerState()
    first, failing, last = HeldConnection(), HeldConnection(fails=True), HeldConnection()
    state.held_heads = [first, failing, last]
    with pytest.raises(ConnectionResetError):
        state.flush_held_heads()
    assert state.held_heads == []
    assert (first.flushed, failing.flushed, last.flushed) == (1, 1, 0)
    assert not first.held_registered and not failing.held_registered
    assert not last.held_registered  # it registers again on its next hold_output
