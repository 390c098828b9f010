"""Pure decoding of change messages into typed change records (no Kafka, Iceberg or Spark here)."""
