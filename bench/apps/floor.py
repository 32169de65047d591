"""The floor: a minimal Starlette app returning the same bytes, precomputed.

BENCH_BODY names a file holding the exact body our server sends for the same request.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = Path(os.environ["BENCH_BODY"]).read_bytes()


async def information(_request: Request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/api/v2/information.php", information)])
