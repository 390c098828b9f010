"""One exception root for the project; the CLI maps each kind to an exit code."""

from __future__ import annotations


class CdcError(Exception):
    """Root of every error this project raises on purpose."""

    exit_code = 3


class ConfigError(CdcError):
    """Bad usage or configuration: the user must change something."""

    exit_code = 2


class ServiceError(CdcError):
    """A service (MariaDB, Kafka, Connect, catalog) is missing, failed, or did not come up."""

    exit_code = 3

    def __init__(self, message: str, log_file: str | None = None) -> None:
        if log_file:
            message = f"{message} (see {log_file})"
        super().__init__(message)
        self.log_file = log_file


class TransientError(CdcError):
    """Worth retrying with backoff (a service briefly away); `cdc.retry.error_kind` sorts every error."""


class CheckFailed(CdcError):
    """A quality check or a source-vs-lake comparison failed."""

    exit_code = 1


class TablesHalted(CdcError):
    """Everything else landed, but these tables are halted (each with its reason and remedy)."""

    exit_code = 1


class DecodeError(CdcError):
    """A message that cannot be decoded; it goes to the dead-letter table, never becomes None."""

    exit_code = 3
