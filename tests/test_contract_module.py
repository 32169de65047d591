"""`routing_points.contract` says what API.md says, and the code reads it from there."""

from __future__ import annotations

from routing_points import contract
from routing_points.client import models
from routing_points.client.base import ENDPOINT as CLIENT_ENDPOINT
from routing_points.server.errors import (
    InvalidParameters,
    InvalidToken,
    MissingToken,
    TokenLimitExceeded,
    TooManySimultaneous,
    UnknownApi,
)
from routing_points.server.reports import REPORTS
from routing_points.settings import Settings
from tests.support.wire import ENDPOINT, EXAMPLE_RECORDS, FIELDS


def test_the_module_matches_the_spec() -> None:
    assert contract.ENDPOINT == ENDPOINT
    assert contract.REPORTS == ("routing_points", "token_info")
    assert list(contract.FIELDS) == FIELDS
    assert [dict(record) for record in contract.EXAMPLE_RECORDS] == EXAMPLE_RECORDS
    assert contract.records_found(2) == "2 records were found"


def test_every_report_of_the_contract_has_one_handler() -> None:
    assert tuple(REPORTS) == contract.REPORTS


def test_the_vendors_messages_are_section_4s() -> None:
    assert UnknownApi().msg == "THE API YOU WANT TO CONSULT DOES NOT EXIST"
    assert InvalidParameters().msg == "SOME PARAMETERS ARE REQUIRED"
    assert MissingToken().msg == "PLEASE ENTER THE WOLKVOX-TOKEN"
    assert InvalidToken().msg == "PLEASE VALIDATE TOKEN"
    assert TokenLimitExceeded().msg == "TOKEN LIMIT EXCEEDED"
    assert TooManySimultaneous(2).msg == "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)"


def test_the_limits_defaults_are_section_6s() -> None:
    settings = Settings()
    assert settings.max_records_per_response == 60_000  # L3
    assert settings.max_records_per_upload == 10_000  # L4
    assert settings.max_date_range_days == 31  # L5
    assert settings.max_response_bytes == 256 * 1024 * 1024  # L6
    assert settings.consumption_timeout_s == 60  # L7
    assert settings.max_in_flight_per_token == 2  # L8
    assert settings.daily_calls_per_license == 1000  # L9
    assert settings.poll_interval_s == 300  # L2


def test_the_sdk_reads_the_contract() -> None:
    assert CLIENT_ENDPOINT == contract.ENDPOINT
    assert models.FIELDS == contract.FIELDS
