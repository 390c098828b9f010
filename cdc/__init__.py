"""Change data capture from MariaDB/MySQL into an Apache Iceberg lakehouse."""

__version__ = "0.1.0"
