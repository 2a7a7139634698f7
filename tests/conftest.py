"""Session fixtures: one real Apache Kafka for the whole run, a worker per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import engine.localkafka as localkafka
from tests.harness import Segue, cache_dir, start_segue


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localkafka.ClusterInfo]:
    """A single-node Apache Kafka on a free loopback port, stopped after the session."""
    data_dir = tmp_path_factory.mktemp("kafka")
    cluster = localkafka.start(data_dir, cache_dir=cache_dir())
    try:
        yield cluster
    finally:
        localkafka.stop(data_dir)


@pytest.fixture(scope="module")
def segue(
    kafka: localkafka.ClusterInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Segue]:
    running = start_segue(kafka, tmp_path_factory.mktemp("segue"))
    try:
        yield running
    finally:
        running.worker.stop()
