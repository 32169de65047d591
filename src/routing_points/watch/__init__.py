"""Watching an operation: poll every few minutes, keep history, report changes, export metrics."""
