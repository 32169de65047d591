"""What the tests share, besides fixtures (those live in tests/conftest.py).

- `wire`: the contract's literal values (API.md), the tests' one copy of them.
- `services`: PostgreSQL, Redis and free ports; skipping where a service is missing.
- `seed`: operations, tokens and routing points written straight into a store.
- `servers`: the app in-process, on a real uvicorn in a thread, and requests against it.
- `processes`: `routing-points` run as a real process, the way an operator does.
- `faults`: dependencies a test can take away and give back.

Test modules import from here, never from conftest.py or from one another.
"""
