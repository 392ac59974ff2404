"""Bounded waits: a phase that hangs fails with where it hung, instead of hanging the run."""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Stuck(RuntimeError):
    """Something did not finish in time; the message has the stacks of the pending tasks."""


def _stacks(limit: int = 12) -> str:
    out = io.StringIO()
    current = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not current:
            print(f"--- task {task.get_name()}", file=out)
            task.print_stack(limit=limit, file=out)
    return out.getvalue()


async def bounded(aw: Awaitable[T], timeout_s: float, what: str) -> T:
    """Await `aw` for at most `timeout_s`. Unlike asyncio.wait_for, a task that ignores its
    cancellation cannot hold us: on time-out it is cancelled and left behind."""
    task = asyncio.ensure_future(aw)
    done, _pending = await asyncio.wait({task}, timeout=timeout_s)
    if task in done:
        return task.result()
    stacks = _stacks()
    task.cancel()
    raise Stuck(f"{what} did not finish within {timeout_s:.0f} s. Pending tasks:\n{stacks}")


async def cancellable_by_sigterm(run: Callable[[], Awaitable[T]]) -> T:
    """Run a benchmark so that SIGTERM cancels it: servers are stopped and databases dropped
    on the way out. A second SIGTERM kills the process at once."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def on_sigterm() -> None:
        loop.remove_signal_handler(signal.SIGTERM)
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    return await run()
