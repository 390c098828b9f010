"""What every benchmark shares: the workload's table, a private lake, interleaved timing, the JSON record.

Rules (design/BENCHMARKS.md): baseline and candidate run in the same invocation, interleaved (the order
rotates every repetition), at least 5 times; the record holds every sample, the medians, their ratio,
the CPU model and the library versions. Nothing here touches the shared lake (`/work/main/.cdc`): each
run gets its own CDC_HOME (SQLite catalog + warehouse folder) under a temporary folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cdc.config import Settings, load_settings
from cdc.events.model import Column, ColumnType, Kind, TableId, TableSchema
from cdc.lake import schema as ls

log = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DB = "bn_bench"  # the bench's database prefix (team rule: `bn_`)

# ---------------------------------------------------------------------------------------------- workload
# A Debezium-shaped order row: 20 source columns of the kinds a MariaDB table brings (about 0.8 KB as
# Debezium JSON without schemas). `id` is the key and the bucket column.
K = Kind
WORKLOAD = TableSchema(
    columns=(
        Column("id", ColumnType(K.LONG), optional=False),
        Column("customer_id", ColumnType(K.LONG)),
        Column("status", ColumnType(K.STRING)),
        Column("qty", ColumnType(K.INT)),
        Column("price", ColumnType(K.DECIMAL, 12, 2)),
        Column("amount", ColumnType(K.DECIMAL, 18, 4)),
        Column("discount", ColumnType(K.DOUBLE)),
        Column("weight", ColumnType(K.FLOAT)),
        Column("name", ColumnType(K.STRING)),
        Column("email", ColumnType(K.STRING)),
        Column("city", ColumnType(K.STRING)),
        Column("country", ColumnType(K.STRING)),
        Column("created_at", ColumnType(K.TIMESTAMP)),
        Column("updated_at", ColumnType(K.TIMESTAMPTZ)),
        Column("ship_date", ColumnType(K.DATE)),
        Column("paid", ColumnType(K.BOOLEAN)),
        Column("notes", ColumnType(K.STRING)),
        Column("version", ColumnType(K.INT)),
        Column("code", ColumnType(K.BINARY)),
        Column("score", ColumnType(K.DOUBLE)),
    ),
    key=("id",),
)
SOURCE_COLUMNS = WORKLOAD.names
STATUSES = ("new", "paid", "packed", "shipped", "delivered", "returned")
CITIES = ("Berlin", "Lisboa", "Kraków", "São Paulo", "Zürich", "Osaka", "Nairobi", "Austin")
EPOCH_SECONDS = 1_577_836_800  # 2020-01-01 UTC

# Spark SQL of each source column for row `id` at version `v` (both SQL expressions); the same values as
# `arrow_rows` below, so a benchmark may fill a table with Spark and land changes with pyarrow.
_STATUS_SQL = "element_at(array(" + ", ".join(f"'{s}'" for s in STATUSES) + "), CAST(({id} + {v}) % 6 AS INT) + 1)"
_CITY_SQL = "element_at(array(" + ", ".join(f"'{c}'" for c in CITIES) + "), CAST({id} % 8 AS INT) + 1)"
SPARK_COLUMNS = {
    "id": "CAST({id} AS BIGINT)",
    "customer_id": "CAST(({id} * 7919) % 1000003 AS BIGINT)",
    "status": _STATUS_SQL,
    "qty": "CAST(({id} + {v}) % 50 + 1 AS INT)",
    "price": "CAST((({id} * 31 + {v}) % 100000) / 100 AS DECIMAL(12,2))",
    "amount": "CAST((({id} * 131 + {v} * 7) % 100000000) / 10000 AS DECIMAL(18,4))",
    "discount": "CAST((({id} + {v}) % 30) / 100.0 AS DOUBLE)",
    "weight": "CAST(({id} % 1000) / 10.0 AS FLOAT)",
    "name": "concat('customer ', CAST({id} % 1000003 AS STRING))",
    "email": "concat('user', CAST({id} AS STRING), '@example.com')",
    "city": _CITY_SQL,
    "country": "element_at(array('DE', 'PT', 'PL', 'BR', 'CH', 'JP', 'KE', 'US'), CAST({id} % 8 AS INT) + 1)",
    "created_at": f"CAST(timestamp_seconds({EPOCH_SECONDS} + {{id}}) AS TIMESTAMP_NTZ)",
    "updated_at": f"timestamp_seconds({EPOCH_SECONDS} + {{id}} + {{v}} * 3600)",
    "ship_date": "date_add(DATE'2020-01-01', CAST(({id} + {v}) % 2000 AS INT))",
    "paid": "(({id} + {v}) % 3) <> 0",
    "notes": "concat('order ', CAST({id} AS STRING), ' rev ', CAST({v} AS STRING), ' — leave at the door, ring twice')",
    "version": "CAST({v} AS INT)",
    "code": "unhex(lpad(hex(CAST({id} AS BIGINT)), 16, '0'))",
    "score": "CAST(({id} * 0.61803398875 + {v}) % 100 AS DOUBLE)",
}


def spark_select(id_expr: str = "id", version: str = "0") -> str:
    """The SELECT list of the source columns (cast to their lake types) for row `id_expr` at `version`."""
    return ", ".join(f"{SPARK_COLUMNS[c].format(id=id_expr, v=version)} AS `{c}`" for c in SOURCE_COLUMNS)


def arrow_rows(schema: pa.Schema, ids: np.ndarray, version: int, ops: np.ndarray, seq_start: int,
               topic: str = "cdc.bn_bench.orders", partition: int = 0, offset_start: int = 0,
               now: dt.datetime | None = None) -> pa.Table:
    """Changelog rows in the table's Arrow schema: the workload's values for `ids` at `version`, op codes
    `ops` (an array of 'c'/'u'/'d'), `_seq` and Kafka offsets counting up from the given starts. Columns the
    generator does not know (a column the lake added since) are NULL."""
    n = len(ids)
    idv = pa.array(ids, type=pa.int64())
    v = int(version)
    ids_i = ids.astype(np.int64)
    at = now or dt.datetime.now(dt.UTC)
    known: dict[str, Any] = {
        "id": idv,
        "customer_id": pa.array((ids_i * 7919) % 1_000_003),
        "status": pa.array(np.array(STATUSES, dtype=object)[(ids_i + v) % 6]),
        "qty": pa.array(((ids_i + v) % 50 + 1).astype(np.int32)),
        "price": unscaled_decimal((ids_i * 31 + v) % 100_000, 12, 2),
        "amount": unscaled_decimal((ids_i * 131 + v * 7) % 100_000_000, 18, 4),
        "discount": pa.array(((ids_i + v) % 30) / 100.0),
        "weight": pa.array(((ids_i % 1000) / 10.0).astype(np.float32)),
        "name": pc.binary_join_element_wise("customer ", pc.cast(pa.array(ids_i % 1_000_003), pa.string()), ""),
        "email": pc.binary_join_element_wise("user", pc.cast(idv, pa.string()), "@example.com", ""),
        "city": pa.array(np.array(CITIES, dtype=object)[ids_i % 8]),
        "country": pa.array(np.array(["DE", "PT", "PL", "BR", "CH", "JP", "KE", "US"], dtype=object)[ids_i % 8]),
        "created_at": pa.array((EPOCH_SECONDS + ids_i) * 1_000_000, type=pa.int64()).cast(pa.timestamp("us")),
        "updated_at": pa.array((EPOCH_SECONDS + ids_i + v * 3600) * 1_000_000, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "ship_date": pa.array((18262 + (ids_i + v) % 2000).astype(np.int32)).cast(pa.date32()),
        "paid": pa.array(((ids_i + v) % 3) != 0),
        "notes": pc.binary_join_element_wise("order ", pc.cast(idv, pa.string()), f" rev {v} — leave at the door, ring twice", ""),
        "version": pa.array(np.full(n, v, dtype=np.int32)),
        "code": pa.array([int(i).to_bytes(8, "big", signed=True) for i in ids_i], type=pa.binary()),
        "score": pa.array(np.mod(ids_i * 0.61803398875 + v, 100.0)),
        ls.OP: pa.array(ops, type=pa.string()),
        ls.SEQ: unscaled_decimal(np.arange(seq_start, seq_start + n, dtype=np.int64), 38, 0),
        ls.SOURCE_TS: pa.array(np.full(n, int(at.timestamp() * 1_000_000), dtype=np.int64)).cast(pa.timestamp("us", tz="UTC")),
        ls.INGESTED_AT: pa.array(np.full(n, int(at.timestamp() * 1_000_000), dtype=np.int64)).cast(pa.timestamp("us", tz="UTC")),
        ls.KAFKA_TOPIC: pa.array([topic] * n, type=pa.string()),
        ls.KAFKA_PARTITION: pa.array(np.full(n, partition, dtype=np.int32)),
        ls.KAFKA_OFFSET: pa.array(np.arange(offset_start, offset_start + n, dtype=np.int64)),
    }
    arrays = []
    for f in schema:
        value = known.get(f.name)
        if value is None:
            arrays.append(pa.nulls(n, type=f.type))
            continue
        arr = value if isinstance(value, pa.Array | pa.ChunkedArray) else pa.array(value)
        arrays.append(arr.cast(f.type, safe=False) if f.type != arr.type else arr)
    return pa.Table.from_arrays(arrays, schema=schema)


def unscaled_decimal(unscaled: np.ndarray, precision: int, scale: int) -> pa.Array:
    """A decimal128 array from its unscaled non-negative int64 values (exact; no float on the way)."""
    words = np.zeros((len(unscaled), 2), dtype=np.int64)
    words[:, 0] = unscaled
    words[:, 1] = np.where(unscaled < 0, -1, 0)
    return pa.Array.from_buffers(pa.decimal128(precision, scale), len(unscaled), [None, pa.py_buffer(words.tobytes())])


def change_ops(n: int, rng: np.random.Generator, updates: float = 0.7, inserts: float = 0.2) -> np.ndarray:
    """Op codes for `n` changes: 70 % updates, 20 % inserts, 10 % deletes (BENCHMARKS.md's workload)."""
    draw = rng.random(n)
    return np.where(draw < updates, "u", np.where(draw < updates + inserts, "c", "d"))


# ---------------------------------------------------------------------------------------------- lake
@dataclass
class Lake:
    """A private CDC_HOME: SQLite catalog and warehouse under `home` (or a PostgreSQL catalog URI)."""

    home: Path
    settings: Settings

    @property
    def catalog_name(self) -> str:
        return self.settings.catalog.name


def private_settings(home: Path, catalog_uri: str | None = None, **overrides: Any) -> Settings:
    catalog: dict[str, Any] = {"name": "lake"}
    if catalog_uri:
        catalog["uri"] = catalog_uri
        catalog["warehouse"] = (home / "lake" / "warehouse").resolve().as_uri()
    return load_settings(home=home, catalog=catalog, **overrides)


@contextmanager
def workdir(keep: bool = False, base: str | None = None) -> Iterator[Path]:
    """A temporary folder for the benchmark's lake (removed afterwards unless `keep`)."""
    path = Path(tempfile.mkdtemp(prefix="cdc-bench-", dir=base or os.environ.get("CDC_BENCH_TMP")))
    try:
        yield path
    finally:
        if keep:
            log.warning("kept the bench lake at %s", path)
        else:
            shutil.rmtree(path, ignore_errors=True)


def table_id(name: str) -> TableId:
    return TableId(DB, name)


# ---------------------------------------------------------------------------------------------- timing
def seconds(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def stats(samples: Sequence[float]) -> dict[str, Any]:
    values = [float(s) for s in samples]
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p = {"p90": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
         "p99": ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]}
    return {"n": len(values), "median": statistics.median(values), "min": ordered[0], "max": ordered[-1], **p,
            "samples": [round(v, 6) for v in values]}


def ratio(candidate: float | None, baseline: float | None) -> float | None:
    if candidate is None or baseline is None or baseline == 0:
        return None
    return round(candidate / baseline, 4)


def rotated(names: Sequence[str], rep: int) -> list[str]:
    """The variants' order in repetition `rep`: rotated, so none always runs first (warm caches, JIT)."""
    k = rep % len(names)
    return [*names[k:], *names[:k]]


@dataclass
class Samples:
    """Per variant, per metric: the samples of every repetition."""

    data: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, variant: str, metric: str, value: float | None) -> None:
        if value is not None:
            self.data.setdefault(variant, {}).setdefault(metric, []).append(float(value))

    def median(self, variant: str, metric: str) -> float | None:
        values = self.data.get(variant, {}).get(metric)
        return statistics.median(values) if values else None

    def paired_ratio(self, candidate: str, baseline: str, metric: str) -> float | None:
        """The median of the per-repetition ratios candidate/baseline (samples of one repetition share its noise:
        on a shared machine this moves less than the ratio of the two medians)."""
        a, b = self.data.get(candidate, {}).get(metric, []), self.data.get(baseline, {}).get(metric, [])
        pairs = [x / y for x, y in zip(a, b, strict=False) if y]
        return round(statistics.median(pairs), 4) if pairs and len(a) == len(b) else None

    def summary(self) -> dict[str, dict[str, Any]]:
        return {v: {m: stats(s) for m, s in metrics.items()} for v, metrics in self.data.items()}


def slope(ys: Sequence[float]) -> float | None:
    """Least-squares slope of `ys` over their index (units of y per run)."""
    if len(ys) < 2:
        return None
    xs = np.arange(len(ys), dtype=float)
    return float(np.polyfit(xs, np.asarray(ys, dtype=float), 1)[0])


# ---------------------------------------------------------------------------------------------- the record
def _run(args: list[str], strip: bool = True) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30).stdout  # noqa: S603
        return out.strip() if strip else out
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {}
    for line in _run(["lscpu"]).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "CPU family", "Model", "Stepping", "CPU(s)", "Thread(s) per core", "Hypervisor vendor",
                           "BogoMIPS", "CPU max MHz", "L2 cache", "L3 cache"):
            info[key.strip()] = value.strip()
    if not info:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["Model name"] = line.split(":", 1)[1].strip()
                break
    info["cores_online"] = os.cpu_count()
    try:
        mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        info["mem_total_gb"] = round(int(mem.split()[1]) / 1024 / 1024, 1)
    except (OSError, StopIteration):
        pass
    return info


def versions(settings: Settings | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for module in ("pyspark", "pyiceberg", "pyarrow", "numpy", "duckdb"):
        try:
            out[module] = __import__(module).__version__
        except ImportError:
            out[module] = None
    if settings is not None:
        try:
            from cdc import jvm

            out["spark_jars"] = [p.name for p in jvm.spark_jars(settings.cache)]
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            out["spark_jars"] = f"unavailable: {exc}"
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()  # noqa: S607
    out["java"] = java[0] if java else None
    return out


def git_state() -> dict[str, Any]:
    head = _run(["git", "-C", str(ROOT.parent), "rev-parse", "HEAD"])
    dirty = _run(["git", "-C", str(ROOT.parent), "status", "--porcelain", "--untracked-files=no"], strip=False)
    return {"commit": head, "dirty_files": [line[3:] for line in dirty.splitlines() if line.strip()]}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def record(bench: str, profile: str, params: Mapping[str, Any], results: Mapping[str, Any], settings: Settings | None,
           started: float, load_before: list[float], notes: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "id": f"{bench}-{profile}",
        "benchmark": bench,
        "profile": profile,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "params": dict(params),
        "results": dict(results),
        "notes": list(notes),
        "machine": {"cpu": cpu_info(), "load_average_before": load_before, "load_average_after": load_average(),
                    "platform": platform.platform()},
        "versions": versions(settings),
        "git": git_state(),
        "argv": sys.argv,
    }


def write_record(rec: Mapping[str, Any], out_dir: Path = RESULTS) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{rec['id']}.json"
    path.write_text(json.dumps(rec, indent=1, sort_keys=False, default=str) + "\n")
    return path


def fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}{unit}"


# ---------------------------------------------------------------------------------------------- a run
@dataclass
class Context:
    """One invocation: the size profile, repetitions, the private lake, and a Spark session when asked."""

    profile: str
    reps: int
    root: Path  # the temporary folder every lake of this invocation lives under
    lake: Lake
    _spark: Any = None

    @property
    def settings(self) -> Settings:
        return self.lake.settings

    def spark(self) -> Any:
        """The local Spark session on the private lake (started on first use: ~15 s)."""
        if self._spark is None:
            from cdc.spark import session

            self._spark = session(self.settings)
        return self._spark

    def stop(self) -> None:
        if self._spark is not None:
            self._spark.stop()
            self._spark = None
