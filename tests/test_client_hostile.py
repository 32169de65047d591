"""`get` and `watch --once` against a service that sends what it should not: one line, the
right exit code, and the token never handed to anyone else."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.support.processes import cli
from tests.support.vendor import Answer, records_answer, scripted_vendor
from tests.support.wire import SALES_LINE

TOKEN = {"ROUTING_POINTS_TOKEN": "secret-of-0032"}


def get(url: str, folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = ["get", "--server", "0032", "--base-url", url, "--retries", "0", *options]
    return cli(*command, env=TOKEN, cwd=folder)


def watch_once(url: str, folder: Path) -> subprocess.CompletedProcess[str]:
    command = ["watch", "--server", "0032", "--base-url", url, "--once"]
    return cli(*command, env=TOKEN, cwd=folder)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_mysql_zero_date_is_never_used(tmp_path: Path) -> None:
    """ "0000-00-00 00:00:00" was a ValueError traceback."""
    record = {**SALES_LINE, "last_use": "0000-00-00 00:00:00"}
    with scripted_vendor(lambda _path: records_answer([record])) as vendor:
        result = get(vendor.url, tmp_path, "--timezone", "UTC")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "Sales line" in line)
    assert "0000" not in row  # never used, as an empty last_use is


@pytest.mark.parametrize(
    ("record", "said"),
    [
        ({**SALES_LINE, "rp_id": "abc"}, "a routing point's rp_id is not a number: 'abc'"),
        (
            {**SALES_LINE, "last_use": "yesterday"},
            "routing point 101: last_use is not a date and time: 'yesterday'",
        ),
    ],
)
def test_a_record_that_cannot_be_typed_is_one_line(
    tmp_path: Path, record: dict[str, str], said: str
) -> None:
    with scripted_vendor(lambda _path: records_answer([record])) as vendor:
        result = get(vendor.url, tmp_path)
        watched = watch_once(vendor.url, tmp_path)
    assert result.returncode == 1
    assert error_line(result) == f"Error: MalformedResponse: {said}"
    assert watched.returncode == 6  # not 1, which means "something changed"
    assert error_line(watched).endswith(said)


def test_a_body_that_is_not_what_its_encoding_says_is_one_line(tmp_path: Path) -> None:
    def lying(_path: str) -> Answer:
        status, headers, body = records_answer([SALES_LINE])
        return status, {**headers, "content-encoding": "gzip"}, body

    with scripted_vendor(lying) as vendor:
        result = get(vendor.url, tmp_path)
    assert result.returncode == 1
    assert error_line(result).startswith(
        "Error: MalformedResponse: the body does not decode as its Content-Encoding says"
    )


def test_a_continuation_to_another_server_is_not_followed(tmp_path: Path) -> None:
    """The token went along to wherever the link pointed, in the clear if it said http."""
    with scripted_vendor(lambda _path: records_answer([])) as elsewhere:

        def leading_away(_path: str) -> Answer:
            link = f'<{elsewhere.url}/steal?after=101>; rel="next"'
            return records_answer([SALES_LINE], link=link, **{"x-truncated": "true"})

        with scripted_vendor(leading_away) as vendor:
            result = get(vendor.url, tmp_path)
    assert result.returncode == 1
    assert error_line(result) == (
        f"Error: MalformedResponse: the continuation link leads to another server "
        f"({elsewhere.url}): not followed"
    )
    assert elsewhere.asked == []
    assert len(vendor.asked) == 1


def test_continuations_that_go_round_stop_at_once(tmp_path: Path) -> None:
    """Two links that pointed at each other were followed for ever, a consumption each."""

    served = itertools.count(101)

    def round_and_round(path: str) -> Answer:
        following = "after=2" if "after=1" in path else "after=1"
        link = f'</api/v2/information.php?api=routing_points&{following}>; rel="next"'
        return records_answer([{**SALES_LINE, "rp_id": str(next(served))}], link=link)

    with scripted_vendor(round_and_round) as vendor:
        result = get(vendor.url, tmp_path)
        watched = watch_once(vendor.url, tmp_path)
    assert result.returncode == 1
    assert error_line(result) == (
        "Error: MalformedResponse: the continuation links go round in a circle"
    )
    # get: the first page, after=1, after=2, then after=1 again is refused unasked;
    # the watcher the same.
    assert len(vendor.asked) == 6
    assert watched.returncode == 6


def test_an_rp_id_the_history_cannot_hold_is_one_line(tmp_path: Path) -> None:
    """A 400-digit rp_id crashed the watcher with SQLite's OverflowError."""
    huge = "9" * 400
    with scripted_vendor(lambda _path: records_answer([{**SALES_LINE, "rp_id": huge}])) as vendor:
        watched = watch_once(vendor.url, tmp_path)
    assert watched.returncode == 6
    assert error_line(watched).endswith(f"a routing point's rp_id is out of range: {huge[:40]}")


def test_pages_that_bring_the_same_records_again_stop_at_once(tmp_path: Path) -> None:
    """A link new each time (after=1, 2, 3...) to the same records was followed for ever:
    the pages go up by rp_id, so a page not past the one before is the service's fault."""
    served = itertools.count(1)

    def endless(_path: str) -> Answer:
        link = f'</api/v2/information.php?api=routing_points&after={next(served)}>; rel="next"'
        return records_answer([SALES_LINE], link=link)

    with scripted_vendor(endless) as vendor:
        result = get(vendor.url, tmp_path)
    assert result.returncode == 1
    assert error_line(result) == (
        "Error: MalformedResponse: a continuation page repeats records of the page before"
    )
    assert len(vendor.asked) == 2


def answer_of(status: int, body: dict[str, object], **headers: str) -> Answer:
    return status, headers, orjson.dumps(body)


@pytest.mark.parametrize(
    ("answer", "code", "said"),
    [
        # A Retry-After of 12 digits could not be made a date: an OverflowError traceback.
        (
            answer_of(
                403,
                {"code": 403, "error": "FORBIDDEN", "msg": "TOKEN LIMIT EXCEEDED", "data": None},
                **{"retry-after": "999999999999"},
            ),
            4,
            "Error: QuotaExceeded: TOKEN LIMIT EXCEEDED (the budget resets at ",
        ),
        # A code that is a list could not be looked up: a TypeError traceback.
        (
            answer_of(200, {"code": [1], "msg": "", "data": []}),
            1,
            "Error: MalformedResponse: the envelope's code is not a number: [1]",
        ),
        # A 304 to a request without a tag read as an empty operation, exit 0.
        (
            (304, {}, b""),
            1,
            "Error: MalformedResponse: HTTP 304 to a request that sent no If-None-Match",
        ),
    ],
)
def test_odd_answers_are_one_line_with_the_right_code(
    tmp_path: Path, answer: Answer, code: int, said: str
) -> None:
    with scripted_vendor(lambda _path: answer) as vendor:
        result = get(vendor.url, tmp_path)
    assert result.returncode == code
    assert error_line(result).startswith(said)


def test_a_token_info_count_that_is_no_number_is_not_read_as_zero(tmp_path: Path) -> None:
    """ "1,000" read as 0: the user was told no budget was left."""
    record = {
        "description": "BI",
        "token_limit": "1,000",
        "token_use_today": "3",
        "all_token_today": "3",
        "available_consumption_options": "997",
    }
    with scripted_vendor(lambda _path: records_answer([record])) as vendor:
        command = ["token-info", "--server", "0032", "--base-url", vendor.url, "--retries", "0"]
        result = cli(*command, env=TOKEN, cwd=tmp_path)
    assert result.returncode == 1
    assert error_line(result) == (
        "Error: MalformedResponse: token_info's token_limit is not a whole number: '1,000'"
    )
