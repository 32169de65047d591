"""`tokens rotate`: the old secret keeps working for its grace period, then is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from routing_points.clock import ManualClock
from routing_points.server import create_app
from routing_points.store import tenants
from tests.support.seed import Tenant
from tests.support.servers import asgi_client, headers, make_settings

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True),
]

QUERY = "/api/v2/information.php?api=routing_points"
ROTATED_AT = 1_900_000_000  # a fixed instant: nothing here depends on today's date


async def test_the_old_secret_works_within_grace_and_is_refused_after(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    clock = ManualClock(float(ROTATED_AT))
    new = tenants.rotate_token(engine, tenant.token_id, grace_s=3600, now=ROTATED_AT)
    assert new.id == tenant.token_id
    assert new.secret != tenant.token
    app = create_app(make_settings(database_url), clock=clock)
    async with asgi_client(app) as client:
        for secret in (tenant.token, new.secret):
            assert (await client.get(QUERY, headers=headers(secret))).status_code == 200
        clock.advance(3599)  # the last second of the grace period
        assert (await client.get(QUERY, headers=headers(tenant.token))).status_code == 200
        clock.advance(1)  # the grace period is over
        old = await client.get(QUERY, headers=headers(tenant.token))
        assert old.status_code == 403
        assert old.json()["msg"] == "PLEASE VALIDATE TOKEN"
        assert (await client.get(QUERY, headers=headers(new.secret))).status_code == 200


async def test_no_grace_refuses_the_old_secret_at_once_and_a_second_rotation_ends_it(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    clock = ManualClock(float(ROTATED_AT))
    first = tenants.rotate_token(engine, tenant.token_id, grace_s=3600, now=ROTATED_AT)
    second = tenants.rotate_token(engine, tenant.token_id, grace_s=0, now=ROTATED_AT)
    app = create_app(make_settings(database_url), clock=clock)
    async with asgi_client(app) as client:
        for secret in (tenant.token, first.secret):
            assert (await client.get(QUERY, headers=headers(secret))).status_code == 403
        assert (await client.get(QUERY, headers=headers(second.secret))).status_code == 200
