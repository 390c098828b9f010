"""A topic's partitions and their first and next offsets, read from Kafka (no consumer group joined)."""

from __future__ import annotations

import logging
import uuid

from confluent_kafka import Consumer, TopicPartition

from cdc.config import Settings
from cdc.errors import ServiceError


def watermarks(settings: Settings, topic: str) -> dict[int, tuple[int, int]]:
    """`{partition: (low, high)}`; empty when the topic does not exist (yet)."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"cdc-watermarks-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "allow.auto.create.topics": False,
                         "logger": logging.getLogger("cdc.librdkafka")})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return {}
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in sorted(meta.partitions)}
    except Exception as exc:  # noqa: BLE001 - librdkafka raises KafkaException and RuntimeError alike
        raise ServiceError(f"cannot read the offsets of {topic} from Kafka at {settings.kafka.bootstrap_servers}: {exc}") from exc
    finally:
        consumer.close()
