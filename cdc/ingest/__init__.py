"""The Kafka consumer loop and the commit protocol (offsets inside the Iceberg commit)."""
