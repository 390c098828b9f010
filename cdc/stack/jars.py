"""JVM artifacts from Maven Central, resolved once into a cache outside the clone.

`~/.m2` keeps the downloads; `<cache>/jars/<bundle>` holds the flat jar folders the local stack
and the Spark session put on their class paths. A bundle folder with a `.complete` marker is never
resolved again, so a warm run downloads nothing.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
from pathlib import Path

from cdc.errors import ServiceError
from cdc.jvm import (  # re-exported: the local stack names them through here
    DEBEZIUM_PLUGIN as DEBEZIUM_PLUGIN,
    DEBEZIUM_VERSION as DEBEZIUM_VERSION,
    ICEBERG_VERSION as ICEBERG_VERSION,
    KAFKA_VERSION as KAFKA_VERSION,
    kafka_dir as kafka_dir,
    plugin_dir as plugin_dir,
    spark_dir as spark_dir,
    spark_jars as spark_jars,
)

log = logging.getLogger(__name__)

MAVEN_DIR = Path(__file__).parent / "maven"


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"{name} not found on PATH: {hint}")
    return path


def _mvn(args: list[str], log_file: Path) -> None:
    mvn = require_tool("mvn", "install Maven (Debian: apt-get install maven)")
    require_tool("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless)")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        proc = subprocess.run([mvn, "-B", "-q", *args], stdout=out, stderr=subprocess.STDOUT, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise ServiceError(f"Maven could not resolve {' '.join(args[-2:])}", str(log_file))


def _copy_bundle(pom: str, target: Path, log_file: Path) -> None:
    if (target / ".complete").exists():
        return
    log.info("resolving %s into %s", pom, target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    _mvn(
        ["-f", str(MAVEN_DIR / pom), "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={target}"],
        log_file,
    )
    (target / ".complete").touch()


def _debezium_plugin(cache: Path, log_file: Path) -> None:
    target = plugin_dir(cache)
    if (target / ".complete").exists():
        return
    log.info("resolving %s into %s", DEBEZIUM_PLUGIN, target)
    _mvn(["dependency:get", "-Dtransitive=false", f"-Dartifact={DEBEZIUM_PLUGIN}"], log_file)
    group, artifact, version, packaging, classifier = DEBEZIUM_PLUGIN.split(":")
    archive = (
        Path.home() / ".m2" / "repository" / group.replace(".", "/") / artifact / version
        / f"{artifact}-{version}-{classifier}.{packaging}"
    )
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    (target / ".complete").touch()


def install(cache: Path) -> None:
    """Resolve every JVM artifact the local stack and Spark need (idempotent, offline when warm)."""
    log_file = cache / "logs" / "maven.log"
    _copy_bundle("kafka.xml", kafka_dir(cache), log_file)
    _copy_bundle("spark.xml", spark_dir(cache), log_file)
    _debezium_plugin(cache, log_file)
