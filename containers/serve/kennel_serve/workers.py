"""Several server processes behind one port, the connections dealt to them in turn.

uvicorn's own supervisor hands one listening socket to every worker, and the worker that wakes first accepts
every connection waiting. Clients that keep their connections alive (load balancers, SDKs, wrk) open them in
a burst: with two workers and wrk's 16 connections, `ss -tnp` counted 16/0 in three runs of five, and the
idle worker's model copy went unused. A socket per worker (SO_REUSEPORT) spreads them by a hash of their
addresses, which is only even on average: 10/6 splits were common, and the busier worker's requests waited
longer, which showed in the p99. So here the supervisor accepts, and deals each connection to the next worker
over a Unix socket (SCM_RIGHTS), as Node's cluster module does: 16 connections are 8 and 8. It deals only to
workers that have loaded their model (`announce_ready`), so that one still loading, at start or after a
restart, never answers 503 while another could answer.

Each worker is a uvicorn Server that listens on nothing and serves the connections it is handed, with the
protocol uvicorn would have made for them (`HandedServer`, written against the pinned uvicorn). The
supervisor restarts a worker that dies, stops if one cannot start (a restart would fail the same way), and on
SIGTERM or SIGINT stops accepting and passes SIGTERM to every worker, each of which drains its requests in
flight before it exits.
"""

import asyncio
import contextlib
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from kennel_serve.metrics import forget_process

log = logging.getLogger("kennel_serve")
_spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or sockets inherited


def supported() -> bool:
    """Passing sockets between processes (SCM_RIGHTS) needs a Unix system; elsewhere uvicorn's own
    supervisor runs the workers."""
    return hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


class HandedServer(uvicorn.Server):
    """A uvicorn Server that accepts nothing itself: it serves the connections that arrive on `channel`."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self._channel = channel
        self._connecting: set[asyncio.Task] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:  # what uvicorn's startup makes for each connection it accepts
            return self.config.http_protocol_class(
                config=self.config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop
            )

        def take() -> None:
            try:
                message, fds, _, _ = socket.recv_fds(self._channel, 1, 64)
            except BlockingIOError:
                return
            if not message:  # the supervisor is gone
                loop.remove_reader(self._channel)
                self.should_exit = True
                return
            for fd in fds:
                task = loop.create_task(loop.connect_accepted_socket(protocol, socket.socket(fileno=fd)))
                self._connecting.add(task)  # held until it has run: the loop keeps only a weak reference
                task.add_done_callback(self._connecting.discard)

        self._channel.setblocking(False)
        loop.add_reader(self._channel, take)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._channel)
        await super().shutdown(sockets=sockets)


_channel: socket.socket | None = None  # in a worker: its line to the supervisor


def announce_ready() -> None:
    """Tells the supervisor, where there is one, that this worker's model has loaded. It deals connections
    only to workers that have said so (to all of them while none has, so that /ping can say why): a
    connection never meets a worker that would answer 503 while another could answer."""
    if _channel is not None:
        with contextlib.suppress(OSError):
            _channel.send(b"r")


def _worker(config: uvicorn.Config, channel: socket.socket) -> None:
    global _channel
    _channel = channel
    config.configure_logging()
    HandedServer(config, channel).run()


class _Worker:
    def __init__(self, config: uvicorn.Config, name: str) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.channel.setblocking(False)  # a worker that stops reading must not stop the supervisor
        self.process = _spawn.Process(target=_worker, args=(config, theirs), name=name)
        self.process.start()
        theirs.close()
        self.ready = False

    def hand(self, connection: socket.socket) -> bool:
        try:
            socket.send_fds(self.channel, [b"c"], [connection.fileno()])
            return True
        except OSError:  # ended (the supervisor replaces it), or too far behind to take more now
            return False

    def read(self) -> bool:
        """Takes the worker's news; False once it has closed its end."""
        try:
            news = self.channel.recv(64)
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.ready = self.ready or b"r" in news
        return bool(news)

    def stop(self) -> None:
        self.channel.close()
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGTERM)


def _listen(config: uvicorn.Config) -> socket.socket:
    try:
        listener = socket.create_server((config.host, config.port), backlog=config.backlog)
    except OSError as err:
        print(f"serve: cannot listen on {config.host}:{config.port}: {err}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)
    listener.setblocking(False)
    return listener


def _deal(listener: socket.socket, workers: list[_Worker], dealt: int) -> int:
    """Hands every connection waiting on `listener` to the next worker that is ready; returns the count."""
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return dealt
        with connection:  # the worker holds its own copy once handed
            order = [worker for worker in workers if worker.ready] or workers
            for offset in range(len(order)):
                if order[(dealt + offset) % len(order)].hand(connection):
                    break
        dealt += 1


def run(config: uvicorn.Config, count: int) -> int:
    """Runs `count` server processes until SIGTERM or SIGINT; returns the exit status for `serve`."""
    listener = _listen(config)
    stopping: list[int] = []
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda number, _: stopping.append(number))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    workers = [_Worker(config, f"worker-{index}") for index in range(count)]
    for worker in workers:
        selector.register(worker.channel, selectors.EVENT_READ, worker)
    dealt, status = 0, 0
    while not stopping and not status:
        for key, _ in selector.select(timeout=0.5):
            if key.data is None:
                dealt = _deal(listener, workers, dealt)
            elif not key.data.read():
                selector.unregister(key.fileobj)
        for index, worker in enumerate(workers):
            if worker.process.is_alive():
                continue
            if worker.process.exitcode == STARTUP_FAILURE:
                log.error("worker %d could not start; stopping", worker.process.pid)
                status = STARTUP_FAILURE
                break
            log.warning(
                "worker %d ended with %s; starting another", worker.process.pid, worker.process.exitcode
            )
            forget_process(worker.process.pid)
            with contextlib.suppress(KeyError):
                selector.unregister(worker.channel)
            worker.channel.close()
            workers[index] = _Worker(config, worker.process.name)
            selector.register(workers[index].channel, selectors.EVENT_READ, workers[index])
    selector.close()
    listener.close()
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.process.join()
    return status
