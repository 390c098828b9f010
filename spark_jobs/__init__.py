"""PySpark entry points (merge) runnable in-process from `cdc` or with spark-submit on a cluster."""
