"""A topic's partitions and their first and next offsets, read from Kafka (no consumer group joined)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from cdc.config import Settings
from cdc.errors import ServiceError, TransientError


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


def admin_client(settings: Settings) -> AdminClient:
    """An admin client whose librdkafka logs go through `logging` (one per consumer, not one per call)."""
    conf: dict[str, Any] = {**settings.kafka.client_config(), "logger": logging.getLogger("cdc.librdkafka")}
    return AdminClient(conf)


def topic_ids(settings: Settings, topics: list[str], admin: AdminClient | None = None, timeout: float = 10.0) -> dict[str, str]:
    """The Kafka topic id of each existing topic (a deleted and recreated topic gets a new one)."""
    if not topics:
        return {}
    client = admin or admin_client(settings)
    out: dict[str, str] = {}
    for topic, future in client.describe_topics(TopicCollection(sorted(set(topics))), request_timeout=timeout).items():
        try:
            out[topic] = str(future.result().topic_id)
        except Exception as exc:  # noqa: BLE001 - KafkaException: an unknown topic has no id; anything else is Kafka away
            code = exc.args[0].code() if exc.args and hasattr(exc.args[0], "code") else None
            if code != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise TransientError(f"cannot describe {topic} in Kafka at {settings.kafka.bootstrap_servers}: {exc}") from exc
    return out
