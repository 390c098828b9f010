"""`cdc stack up | status | down` on a second, private stack (own CDC_HOME and ports)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.cli import main
from cdc.config import load_settings
from cdc.stack import services
from cdc.stack.process import alive

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CDC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CDC_MARIADB__PORT", "13307")
    monkeypatch.setenv("CDC_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv("CDC_KAFKA__CONTROLLER_PORT", "19093")
    monkeypatch.setenv("CDC_CONNECT__URL", "http://127.0.0.1:18083")
    yield tmp_path
    services.down(load_settings())


def _cdc(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_up_twice_status_down(private_stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cdc(capsys, "stack", "up")
    assert code == 0
    assert "started: mariadb, kafka, connect" in out
    pids = {s.name: s.pid for s in services.status(load_settings())}
    assert all(pids.values())

    code, out, _ = _cdc(capsys, "stack", "up")
    assert code == 0
    assert "already running" in out
    assert {s.name: s.pid for s in services.status(load_settings())} == pids

    code, out, _ = _cdc(capsys, "stack", "status")
    assert code == 0
    for name, port in (("mariadb", 13307), ("kafka", 19092), ("connect", 18083)):
        line = next(line for line in out.splitlines() if f" {name} " in line)
        assert "running" in line
        assert f"127.0.0.1:{port}" in line
        assert str(pids[name]) in line
    assert "10.11" in out  # MariaDB's version
    assert "4.1.1" in out  # Kafka's version

    code, out, _ = _cdc(capsys, "stack", "down")
    assert code == 0
    assert "stopped: connect, kafka, mariadb" in out
    assert not any(alive(pid) for pid in pids.values() if pid)
    code, out, _ = _cdc(capsys, "stack", "down")
    assert "nothing was running" in out


def test_port_taken_gives_one_line_and_leaves_nothing_running(private_stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 19092))
        squatter.listen()
        code, _, err = _cdc(capsys, "stack", "up")
    assert code == 3
    assert "port 127.0.0.1:19092 is already taken" in err  # after the grace period
    assert len(err.strip().splitlines()) == 1
    assert not any(s.running for s in services.status(load_settings()))


def test_bad_settings_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CDC_MARIADB__PORT", "not-a-port")
    code, _, err = _cdc(capsys, "config", "show")
    assert code == 2
    assert "mariadb.port" in err
