"""Mirror mode: one upstream budget, many local consumers.

schedule    when the upstream may be called: poll interval, budget share, back-off
sync        one sync: every page fetched, applied in one transaction (or a free 304)
freshness   the mirror's state: Age and x-mirror-* headers, /readyz, /metrics
runner      the loop beside the server, the only thing that talks to the upstream
"""

from routing_points.mirror.runner import Mirror, MirrorConfig, record_once

__all__ = ["Mirror", "MirrorConfig", "record_once"]
