"""A scripted vendor service over real HTTP: what a broken or hostile service can send."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

# (status, headers, body) for the path and query a request asked for.
Answer = tuple[int, dict[str, str], bytes]


@dataclass
class ScriptedVendor:
    url: str
    # Every path+query asked, with the token it came with.
    asked: list[tuple[str, str | None]] = field(default_factory=list)


def records_answer(records: list[dict[str, Any]], **headers: str) -> Answer:
    body = {"code": 200, "error": None, "msg": f"{len(records)} records were found"}
    return 200, headers, orjson.dumps({**body, "data": records})


@contextlib.contextmanager
def scripted_vendor(answer: Callable[[str], Answer]) -> Iterator[ScriptedVendor]:
    """A real HTTP server on a free port that answers every GET with `answer(path)`."""
    vendor = ScriptedVendor("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            vendor.asked.append((self.path, self.headers.get("wolkvox-token")))
            status, headers, body = answer(self.path)
            self.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    vendor.url = f"http://127.0.0.1:{http.server_address[1]}"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield vendor
    finally:
        http.shutdown()
        http.server_close()
