"""The pages a person opens in a browser: `/` (a landing page) and `/docs` (Swagger UI).

Swagger UI is vendored (`static/swagger-ui/`, see its README): version 5 reads the OpenAPI
3.1 document the server emits, and the page works offline. `/` answers HTML only to a
browser; an API client (a token, or no wish for HTML) gets the contract's 404 envelope, as
for any unknown path.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from routing_points import __version__
from routing_points.server.errors import NotFound

SWAGGER_UI = Path(__file__).parent / "static" / "swagger-ui"

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>routing-points API</title>
<link rel="icon" href="/docs/static/favicon-32x32.png">
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""

LANDING_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>routing-points</title>
<link rel="icon" href="/docs/static/favicon-32x32.png">
<style>body{{font-family:sans-serif;max-width:46em;margin:3em auto;padding:0 1em}}
code,pre{{background:#f4f4f4;padding:.1em .3em}}pre{{padding:.8em;overflow-x:auto}}</style>
</head><body>
<h1>routing-points</h1>
<p>A self-hostable, wire-compatible Wolkvox <code>routing_points</code> API
(version {__version__}).</p>
<ul>
<li><a href="/console/">Console</a> (an operation's points, tokens and usage; sign in with
an admin token)</li>
<li><a href="/docs">API documentation</a> (every operation, tried from the browser)</li>
<li><a href="/openapi.json">OpenAPI document</a></li>
<li><a href="/healthz">Liveness</a> and <a href="/readyz">readiness</a></li>
</ul>
<p>Consume it with a token:</p>
<pre>curl -s -H 'wolkvox-token: &lt;token&gt;' \\
  'http://HOST/api/v2/information.php?api=routing_points'</pre>
</body></html>
"""


async def docs_page(_request: Request) -> Response:
    return HTMLResponse(DOCS_PAGE)


def wants_html(request: Request) -> bool:
    """A browser: asks for HTML and sends no token (an API client keeps the envelope)."""
    if "wolkvox-token" in request.headers or "wolkvox_token" in request.headers:
        return False
    return "text/html" in request.headers.get("accept", "")


async def landing_page(request: Request) -> Response:
    if not wants_html(request):
        raise NotFound()
    here = html.escape(str(request.base_url).rstrip("/"))
    return HTMLResponse(LANDING_PAGE.replace("http://HOST", here))


def page_routes() -> list[BaseRoute]:
    return [
        Route("/", landing_page, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Mount("/docs/static", StaticFiles(directory=SWAGGER_UI), name="docs-static"),
    ]
