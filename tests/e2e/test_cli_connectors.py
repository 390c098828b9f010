"""`cdc connectors status | restart` against the running Kafka Connect (leaves the connector RUNNING)."""

from __future__ import annotations

import json

import pytest

from cdc import connectors
from cdc.cli import main
from cdc.config import Settings

pytestmark = pytest.mark.e2e


def _cdc(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_status_then_restart_until_running_again(stack: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cdc(capsys, "connectors", "status", "--output", "json")
    assert code == 0, err
    rows = json.loads(out)["connector"]
    assert rows[0]["name"] == stack.connect.connector_name
    assert rows[0]["task"] == "connector"
    assert [r["task"] for r in rows[1:]] == ["0"]
    assert all(r["state"] == "RUNNING" and r["trace"] == "" for r in rows)

    code, out, err = _cdc(capsys, "connectors", "restart")
    assert code == 0, err
    assert "RUNNING" in out
    states = connectors.task_states(stack)
    assert len(states) == 2
    assert all(s.state == "RUNNING" for s in states)

    code, out, err = _cdc(capsys, "connectors", "status")
    assert code == 0, err
    assert stack.connect.connector_name in out
