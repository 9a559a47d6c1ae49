"""MicroBatcher: concurrent requests share one model call.

Like Triton's and TorchServe's dynamic batchers: block for the first item, then take whatever else is queued,
waiting at most `max_delay_s` for more, up to `max_batch_size` items. With the default delay of 0 a lone
request is never held back; under load, requests that arrive while a batch runs form the next batch.
With `concurrency` 2 (KENNEL_CONCURRENT_BATCHES; the default is 1), a second batch starts while the first
runs, and the two share ONNX Runtime's threads: docs/benchmarks.md has the measurement that chose it.

`run_now` is a lone request's short cut: when the model is idle and nothing waits for it, the thread that
has just preprocessed the item runs the model itself. That is the batch of one the batcher would have formed,
without the hand-offs from that thread to the event loop, to the batcher's thread and back: each costs a
sleeping thread's wake-up, and on the benchmark machine the short cut took 0.6 ms off a lone INT8 request's
time inside the server (docs/benchmarks.md). Under load the model is busy or items wait, and they batch.
"""

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

log = logging.getLogger(__name__)


class MicroBatcher:
    """Runs `predict` (N items stacked on axis 0 -> N results) on batches of the items submitted to it."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        max_delay_s: float,
        on_batch: Callable[[int], None] = lambda size: None,
        concurrency: int = 1,
    ) -> None:
        self._predict = predict
        self._max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self._on_batch = on_batch
        self._concurrency = concurrency
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        # `concurrency` threads: with 1, batches run one after another, each using all of the model's intra-op
        # threads; with 2, the next batch starts while one runs, and ONNX Runtime shares its threads between.
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="predict")
        # A slot per model call in progress, taken by the batcher's threads or by `run_now`'s caller.
        self._model = threading.Semaphore(concurrency)
        self._submitted = 0  # items in `submit` without their result yet; changed on the event loop only
        self._task: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._batches):
            task.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def run_now(self, item: np.ndarray) -> np.ndarray | None:
        """The model's result for one item, computed on the calling thread when the model is idle and no
        other item waits for it; None otherwise (then `submit` it). Never with a batching delay, which asks
        requests to wait for each other."""
        if self._max_delay_s > 0 or self._submitted or not self._model.acquire(blocking=False):
            return None
        try:
            self._on_batch(1)
            return self._predict(item[np.newaxis])[0]
        finally:
            self._model.release()

    def _predict_batch(self, inputs: np.ndarray) -> np.ndarray:
        with self._model:
            return self._predict(inputs)

    async def submit(self, item: np.ndarray) -> np.ndarray:
        """The model's result for one item; waits for the batch it joins."""
        future = asyncio.get_running_loop().create_future()
        self._submitted += 1
        try:
            self._queue.put_nowait((item, future))
            return await future
        finally:
            self._submitted -= 1

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self._max_delay_s
        while len(batch) < self._max_batch_size:
            if self._queue.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            else:
                batch.append(self._queue.get_nowait())
        # Requests that timed out or disconnected while queued need no answer.
        return [(item, future) for item, future in batch if not future.done()]

    async def _run(self) -> None:
        # A batch is formed only when a model slot is free, so that what arrives meanwhile joins the next one.
        slots = asyncio.Semaphore(self._concurrency)
        while True:
            await slots.acquire()
            batch = await self._collect()
            if not batch:
                slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._answer(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _answer(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        self._on_batch(len(batch))
        inputs = np.stack([item for item, _ in batch])
        try:
            outputs = await loop.run_in_executor(self._executor, self._predict_batch, inputs)
            for (_, future), output in zip(batch, outputs, strict=True):
                if not future.done():
                    future.set_result(output)
        except Exception as err:  # the model's failure belongs to every request in the batch
            log.exception("a batch of %d failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
