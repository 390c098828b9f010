"""Kafka Connect keeps secrets in their place: the worker's file config provider reads only the secrets
folder (checked on Kafka's own FileConfigProvider with the worker properties the stack renders), the
REST API listens on loopback only, and the connector config it serves names the secrets file, never a secret."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from cdc.config import Settings, load_settings
from cdc.connectors import write_secrets
from cdc.stack import jars
from cdc.stack.services import Connect

pytestmark = pytest.mark.e2e


def _properties(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))


def test_the_worker_file_provider_reads_only_the_secrets_folder(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CDC_") and name.upper() != "CDC_CACHE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("CDC_HOME", str(tmp_path / "home"))  # never the shared stack's worker.properties
    monkeypatch.setenv("CDC_MARIADB__DEBEZIUM_PASSWORD", "inside-the-folder")
    local = load_settings()
    write_secrets(local)
    allowed = _properties(Connect(local).worker_properties(tmp_path / "plugins"))["config.providers.file.param.allowed.paths"]
    outside = tmp_path / "outside.properties"
    outside.write_text("database.password=outside-the-folder\n")
    inside = local.connector_secrets_file()
    script = tmp_path / "check.jsh"
    script.write_text(
        "var p = new org.apache.kafka.common.config.provider.FileConfigProvider();\n"
        f'p.configure(java.util.Map.of("allowed.paths", "{allowed}"));\n'
        'var keys = java.util.Set.of("database.password");\n'
        f'System.out.println("inside=" + p.get("{inside}", keys).data());\n'
        f'System.out.println("outside=" + p.get("{outside}", keys).data());\n'
        f'System.out.println("traversal=" + p.get("{inside.parent}/../../../../outside.properties", keys).data());\n'
        "/exit\n"
    )
    jshell = jars.require_tool("jshell", "install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless)")
    classpath = ":".join(str(p) for p in sorted(jars.kafka_dir(settings.cache).glob("*.jar")))
    proc = subprocess.run(  # noqa: S603
        [jshell, "--class-path", classpath, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if "=" in line]
    assert "inside={database.password=inside-the-folder}" in lines, proc.stdout + proc.stderr
    assert "outside={}" in lines, proc.stdout + proc.stderr
    assert "traversal={}" in lines, proc.stdout + proc.stderr


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, state = fields[1], fields[3]
            if state == "0A" and int(address.rsplit(":", 1)[1], 16) == port:
                found.append(address.rsplit(":", 1)[0])
    return found


def test_the_rest_api_listens_on_loopback_and_serves_no_secret(stack: Settings) -> None:
    port = int(stack.connect.url.rstrip("/").rsplit(":", 1)[1])
    v4 = socket.inet_aton("127.0.0.1")[::-1].hex().upper()  # /proc/net/tcp: 32-bit words, little-endian
    loopback = {v4, "0000000000000000FFFF0000" + v4, "00000000000000000000000001000000"}  # also ::ffff:127.0.0.1, ::1
    addresses = _listening(port)
    assert addresses, f"nothing listens on {port}"
    assert set(addresses) <= loopback, f"Connect REST listens beyond loopback: {addresses}"

    secrets = [p.read_text().strip() for p in (stack.home / "secrets").iterdir()]
    secrets += [line.split("=", 1)[1] for line in stack.connector_secrets_file().read_text().splitlines() if "=" in line]
    name = stack.connect.connector_name
    served = ""
    for path in ("/connectors?expand=info&expand=status", f"/connectors/{name}/config", f"/connectors/{name}/status",
                 f"/connectors/{name}/tasks"):
        with urllib.request.urlopen(f"{stack.connect.url}{path}", timeout=10) as resp:  # noqa: S310
            served += resp.read().decode()
    assert not [s for s in secrets if s and s in served], "a secret in Connect's REST output"
    with urllib.request.urlopen(f"{stack.connect.url}/connectors/{name}/config", timeout=10) as resp:  # noqa: S310
        config = json.loads(resp.read())
    assert config["database.password"] == f"${{file:{stack.connector_secrets_file()}:database.password}}"
