"""Dynamic batching: requests wait on the event loop, one inference thread runs them in batches.

A batch is the oldest waiting image plus the next images with the same batch key (the model's
padded canvas), up to `max_batch`. It starts when it is full, or when the oldest image has waited
`max_wait` seconds; while the thread is busy, images gather, so under load the batches fill
without any wait. Images with another key keep their place for a later batch, oldest first.

Each caller awaits its own future, so a result can only reach the request it belongs to. A batch
that fails is run again image by image, so one image the model refuses fails only its request.
`close()` stops taking images and runs every one already waiting before it returns.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from simpledet.serve.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The service is shutting down and takes no new images."""


@dataclass
class _Waiting:
    item: object
    key: object
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    def __init__(self, run_batch: Callable[[list], list], max_batch: int, max_wait: float,
                 metrics: ServiceMetrics) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait >= 0, got {max_batch} and {max_wait}")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._metrics = metrics
        self._waiting: list[_Waiting] = []
        self._arrival = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        # one thread: the model runs one batch at a time, never from two threads at once
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve_batches(), name="batcher")

    async def submit(self, item, key) -> object:
        """The model's output for `item`, once its batch has run (the model's exception if it failed)."""
        if self._closing:
            raise BatcherClosed("the service is shutting down")
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(item, key, future))
        self._metrics.queue_depth.set(len(self._waiting))
        self._arrival.set()
        return await future

    async def close(self) -> None:
        """Takes no more images, runs all that wait, then stops the inference thread."""
        self._closing = True
        self._arrival.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _serve_batches(self) -> None:
        while self._waiting or not self._closing:
            if not self._waiting:
                await self._wait_for_arrival(None)
                continue
            oldest = self._waiting[0]
            batch = [w for w in self._waiting if w.key == oldest.key][: self.max_batch]
            wait = oldest.arrived + self.max_wait - time.monotonic()
            if len(batch) < self.max_batch and wait > 0 and not self._closing:
                await self._wait_for_arrival(wait)
                continue
            taken = {id(w) for w in batch}
            self._waiting = [w for w in self._waiting if id(w) not in taken]
            self._metrics.queue_depth.set(len(self._waiting))
            await self._run(batch)

    async def _wait_for_arrival(self, timeout: float | None) -> None:
        # clearing and waiting happen with no await between the caller's look at the queue and
        # here, so an arrival cannot slip by unseen
        self._arrival.clear()
        try:
            await asyncio.wait_for(self._arrival.wait(), timeout)
        except TimeoutError:
            pass

    async def _run(self, batch: list[_Waiting]) -> None:
        self._metrics.batch_size.observe(len(batch))
        start = time.perf_counter()
        outcomes = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._outcomes, [w.item for w in batch])
        self._metrics.batch_seconds.observe(time.perf_counter() - start)
        for waiting, (result, error) in zip(batch, outcomes):
            if waiting.future.done():  # the caller has gone (cancelled)
                continue
            if error is not None:
                waiting.future.set_exception(error)
            else:
                waiting.future.set_result(result)

    def _outcomes(self, items: list) -> list[tuple[object, BaseException | None]]:
        """(result, None) or (None, exception) per item; in the inference thread."""
        try:
            results = self._run_batch(items)
            if len(results) != len(items):
                raise RuntimeError(f"the model returned {len(results)} results for {len(items)} images")
            return [(r, None) for r in results]
        except Exception as e:
            if len(items) == 1:
                log.exception("inference failed")
                return [(None, e)]
            log.warning("a batch of %d failed (%s: %s); running its images one by one", len(items),
                        type(e).__name__, e)
            return [outcome for item in items for outcome in self._outcomes([item])]
