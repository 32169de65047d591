"""routing-points: the Wolkvox routing_points API, served and consumed within its limits."""

__version__ = "0.1.0"
