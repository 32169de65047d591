"""uvicorn's httptools protocol with the per-connection bounds it lacks.

uvicorn (0.54) has no cap on the size or count of request headers, no deadline for them
to arrive (its keep-alive timer only starts after a first response), and no deadline for
a client that stops reading: a 64 MB header block was answered 200, slowloris sockets
were never dropped, and a stalled reader held its answer for ever. Each bound is a few
lines at the protocol level, where the bytes arrive, so this subclass adds them:

- the request line and headers together: at most `max_header_bytes` bytes and
  `max_header_count` headers, else `431` in the contract's envelope, and the connection
  is closed;
- `header_timeout_s` for a request's headers to arrive, counted from the connection (or
  from the first byte of a follow-up request), else the connection is dropped;
- the time limit (`consumption_timeout_s`, 60 s) for a request's body to arrive once its
  headers are in, else the connection is dropped: a form posted a byte a minute would
  otherwise hold its connection for ever (the API's calls are bounded by their own limit,
  the console's forms were not);
- `send_timeout_s` for a client that stops reading: the connection is aborted when the
  write buffer stays above its high-water mark that long, which ends the answer's send
  and so frees its concurrency slot;
- a parser error is answered `400` in the envelope, not uvicorn's text/plain.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from routing_points.server.errors import envelope_body
from routing_points.server.one_write import OneWritePerTurn
from routing_points.settings import Settings

HEADER_FIELDS_TOO_LARGE = 431
# How long a refused connection's remaining bytes are read and discarded.
LINGER_S = 2.0


def _envelope_reply(status: int, phrase: str, msg: str) -> bytes:
    body = envelope_body(status, phrase.upper(), msg)
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 32 * 1024
    max_header_count = 100
    header_timeout_s = 10.0
    body_timeout_s = 60.0
    send_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._header_count = 0
        self._refused = False
        # Bytes received while a request's headers are incomplete: httptools buffers a
        # header until it ends, so one endless header is caught here, not in on_header.
        self._awaiting_headers = True
        self._unparsed = 0
        self._deadline_timer: asyncio.TimerHandle | None = None
        # By when (loop time) the request being received must be in: its headers, then its
        # body; None once it is whole.
        self._deadline: float | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        # The envelope for bad bytes, held until the requests before them are answered.
        self._refusal_after: bytes | None = None
        # The request whose answer is being made (uvicorn keeps only the newest parsed).
        self._running: Any = None

    # Headers: a deadline and a size.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        one_write = OneWritePerTurn(transport, asyncio.get_running_loop())
        super().connection_made(one_write)  # type: ignore[arg-type]
        self._arm_deadline(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self._cancel_send_timer()
        super().connection_lost(exc)

    def _arm_deadline(self, seconds: float) -> None:
        """The request being received must be in within `seconds` (its headers, then its
        body). One timer per connection serves every request: arming and cancelling one
        per keep-alive request would cost each request a timer."""
        self._deadline = deadline = self.loop.time() + seconds
        timer = self._deadline_timer
        if timer is not None and timer.when() > deadline:
            timer.cancel()  # set for a longer deadline (a body's): too late for this one
            timer = None
        if timer is None:
            self._deadline_timer = self.loop.call_at(deadline, self._deadline_due)

    def _cancel_deadline(self) -> None:
        self._deadline = None
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def _deadline_due(self) -> None:
        self._deadline_timer = None
        if self._deadline is None:
            return  # the request came in whole; the next one arms the deadline again
        left = self._deadline - self.loop.time()
        if left > 0:  # a later request's deadline: still ahead
            self._deadline_timer = self.loop.call_later(left, self._deadline_due)
        elif not self.transport.is_closing():
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_headers:
            self._unparsed += len(data)
        super().data_received(data)
        if self._awaiting_headers and not self._refused and self._unparsed > self.max_header_bytes:
            self._refuse_headers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = self._header_count = 0
        self._arm_deadline(self.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), 1)
        super().on_header(name, value)

    def _count(self, size: int, headers: int) -> None:
        self._header_bytes += size
        self._header_count += headers
        if self._header_bytes > self.max_header_bytes or self._header_count > self.max_header_count:
            self._refuse_headers()
            # Stops the parser: uvicorn's handler then calls send_400_response, a no-op now.
            raise ValueError("request headers over the limit")

    def _refuse_headers(self) -> None:
        self._refuse(
            HEADER_FIELDS_TOO_LARGE,
            "Request Header Fields Too Large",
            f"THE REQUEST HEADERS EXCEED {self.max_header_bytes} BYTES "
            f"OR {self.max_header_count} FIELDS",
        )

    def on_headers_complete(self) -> None:
        # Now its body, if any (a request without one completes at once, below). The timer
        # stays: it checks the deadline when it fires.
        self._arm_deadline(self.body_timeout_s)
        self._awaiting_headers = False
        self._unparsed = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._deadline = None
        self._awaiting_headers = True
        super().on_message_complete()

    def _refuse(self, status: int, phrase: str, msg: str) -> None:
        """Answer bad bytes with the envelope and close; what is read after is ignored.

        Behind requests still being answered (pipelined), the refusal waits for their
        answers (on_response_complete): an answer now would cut into theirs, and dropping
        the connection lost answers already charged. Bad bytes in a request's own body make
        that request the bad one: it is dropped, unrun if it has not started.
        """
        self._refused = True
        self._cancel_deadline()
        reply = _envelope_reply(status, phrase, msg)
        cycle = self.cycle
        in_its_body = (
            cycle is not None and not cycle.response_complete and not self._awaiting_headers
        )
        if in_its_body and not self._drop_request(cycle):
            return
        if self._answering():
            self._refusal_after = reply
            return
        self._send_refusal(reply)

    def _answering(self) -> bool:
        """Whether a request of this connection is still being answered, or waits to be."""
        running = self._running
        return bool(self.pipeline) or (running is not None and not running.response_complete)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def _drop_request(self, cycle: Any) -> bool:
        """Drop the request whose body is bad; False if its answer has begun (the
        connection is then aborted: a refusal cannot follow half an answer)."""
        for queued in list(self.pipeline):
            if queued[0] is cycle:  # not started: behind others still being answered
                self.pipeline.remove(queued)
                return True
        if cycle.response_started:
            self.transport.abort()
            return False
        cycle.disconnected = True  # what it still sends goes nowhere
        cycle.message_event.set()
        for task in list(self.tasks):
            coro = task.get_coro()
            if not inspect.iscoroutine(coro) or coro.cr_frame is None:
                continue
            if (
                inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
                and coro.cr_frame.f_locals.get("self") is cycle
            ):
                task.cancel()  # its headers came in these same bytes: never admitted
        cycle.response_complete = True
        return True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        reply = self._refusal_after
        if reply is not None and not self._answering():
            self._refusal_after = None
            self._send_refusal(reply)

    def _send_refusal(self, reply: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(reply)
            # Lingering close, as nginx does: closing with unread bytes would reset the
            # connection and lose the answer, so half-close, discard what still comes
            # (data_received ignores it now), and abort after a short linger.
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(LINGER_S, self._abort)
            else:
                self.transport.close()

    def _abort(self) -> None:
        if not self.transport.is_closing():
            self.transport.abort()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            self._refuse(400, "Bad Request", "THE REQUEST IS NOT VALID HTTP")

    # Sending: a deadline for a client that stopped reading.
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout_s, self._send_stalled)

    def resume_writing(self) -> None:
        self._cancel_send_timer()
        super().resume_writing()

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_stalled(self) -> None:
        self._send_timer = None
        self.logger.info("dropped a client that stopped reading its answer")
        self.transport.abort()


def bounded_protocol(settings: Settings) -> type[BoundedHttpToolsProtocol]:
    """The protocol class with the settings' bounds."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "max_header_bytes": settings.max_header_bytes,
            "max_header_count": settings.max_header_count,
            "header_timeout_s": settings.header_timeout_s,
            "body_timeout_s": settings.consumption_timeout_s,
            "send_timeout_s": settings.send_timeout_s,
        },
    )


@functools.cache
def _environment_protocol() -> type[BoundedHttpToolsProtocol]:
    return bounded_protocol(Settings())


def from_environment(**kwargs: Any) -> BoundedHttpToolsProtocol:
    """What uvicorn's worker processes build connections with (`http=` as an import
    string): the bounds from ROUTING_POINTS_* like the rest of their settings."""
    return _environment_protocol()(**kwargs)
