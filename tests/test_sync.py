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
