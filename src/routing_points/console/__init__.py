"""The web console at /console/: operators see and manage their operation in a browser.

Server-rendered (Starlette + Jinja2), charts drawn as inline SVG on the server, one small
script (the copy button) and one stylesheet, all shipped in the package: no CDN, no
Node.js. Sessions and every change go through the store, so any worker can serve any page.
"""

from routing_points.console.pages import Console

__all__ = ["Console"]
