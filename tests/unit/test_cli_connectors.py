"""`cdc connectors status` on a stand-in for Connect's REST API: states, a failed task's first trace line, exit codes."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from cdc.cli import main

FAILED = {
    "name": "cdc-mariadb",
    "connector": {"state": "RUNNING", "worker_id": "127.0.0.1:8083"},
    "tasks": [{"id": 0, "state": "FAILED", "worker_id": "127.0.0.1:8083",
               "trace": "org.apache.kafka.connect.errors.ConnectException: Access denied for user 'debezium'\n\tat io.debezium..."}],
    "type": "source",
}


@pytest.fixture
def connect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A local HTTP server answering GET /connectors/cdc-mariadb/status with `answer["status"]` (404 when None)."""
    answer: dict[str, Any] = {"status": FAILED}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = answer["status"]
            self.send_response(404 if body is None else 200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body or {"error_code": 404, "message": "No status found"}).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("CDC_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("CDC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CDC_CONNECT__URL", f"http://127.0.0.1:{server.server_port}")
    try:
        yield answer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_a_failed_task_shows_its_first_trace_line_and_exits_1(connect: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["connectors", "status", "--output", "json"], capsys)
    assert code == 1
    assert json.loads(out)["connector"] == [
        {"name": "cdc-mariadb", "task": "connector", "state": "RUNNING", "worker": "127.0.0.1:8083", "trace": ""},
        {"name": "cdc-mariadb", "task": "0", "state": "FAILED", "worker": "127.0.0.1:8083",
         "trace": "org.apache.kafka.connect.errors.ConnectException: Access denied for user 'debezium'"},
    ]
    assert err.strip().splitlines() == ["error: connector cdc-mariadb: 0 FAILED"]


def test_a_missing_connector_exits_1(connect: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    connect["status"] = None
    code, _, err = run(["connectors", "status"], capsys)
    assert code == 1
    assert err.strip().splitlines() == ["error: connector cdc-mariadb: not created (run `cdc connectors apply`)"]


def test_all_running_exits_0(connect: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    connect["status"] = {**FAILED, "tasks": [{"id": 0, "state": "RUNNING", "worker_id": "127.0.0.1:8083"}]}
    code, out, err = run(["connectors", "status"], capsys)
    assert code == 0, err
    assert "RUNNING" in out
    assert "FAILED" not in out
