"""The sync API also works where an event loop is already running (Jupyter, async apps)."""

import asyncio

import pytest

from bestofn.sync import run_sync


async def double(x):
    await asyncio.sleep(0)
    return 2 * x


def test_run_sync_without_a_running_loop():
    assert run_sync(double(2)) == 4


async def test_run_sync_inside_a_running_loop():
    assert run_sync(double(3)) == 6


async def test_errors_propagate_inside_a_running_loop():
    async def boom():
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        run_sync(boom())


# ------------------------------------------------------------------------------------------------ Portal


def test_a_portal_keeps_one_loop_and_its_per_loop_state_across_calls():
    """Why wrap's sync clients use a Portal: a backend's per-loop HTTP client must survive between calls."""
    from bestofn.backends.limits import PerLoop
    from bestofn.sync import Portal

    closed = []

    async def close(obj):
        closed.append(obj)

    clients = PerLoop(object, close)

    async def client_and_loop():
        return await clients.get(), asyncio.get_running_loop()

    portal = Portal()
    (first, loop1), (second, loop2) = portal.run(client_and_loop()), portal.run(client_and_loop())
    assert first is second and loop1 is loop2 and closed == []
    portal.close()  # stopping the loop closes what it held, once
    assert closed == [first] and loop1.is_closed()
    # a closed portal starts a fresh loop on its next call
    third, loop3 = portal.run(client_and_loop())
    assert third is not first and loop3 is not loop1
    portal.close()


async def test_a_portal_works_inside_a_running_loop_and_errors_propagate():
    from bestofn.sync import Portal

    async def where():
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    async def boom():
        raise KeyError("nope")

    portal = Portal()
    try:
        assert portal.run(where()) is not asyncio.get_running_loop()
        with pytest.raises(KeyError, match="nope"):
            portal.run(boom())
        assert portal.run(double(5)) == 10  # still serving after a failure
    finally:
        portal.close()
