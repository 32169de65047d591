"""Consumption limits: a policy (what the contract demands) over pluggable backends (state)."""
