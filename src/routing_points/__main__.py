"""`python -m routing_points` is the `routing-points` command."""

from routing_points.entry import main

main()
