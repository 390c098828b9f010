"""The local stack: MariaDB, Kafka (KRaft) and Kafka Connect with Debezium as local processes."""
