"""The HTTP face: the contract's endpoint, its errors, admission and the request log."""

from routing_points.server.app import create_app

__all__ = ["create_app"]
