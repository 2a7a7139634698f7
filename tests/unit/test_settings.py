from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import Settings, SettingsError


def test_defaults_and_environment_overrides() -> None:
    s = Settings.from_env(
        {"SEGUE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "SEGUE_PARTITIONS": "6", "SEGUE_DATA_DIR": "/x"}
    )
    assert (s.kafka_bootstrap, s.partitions, s.data_dir) == ("127.0.0.1:1", 6, Path("/x"))
    assert s.topic_prefix == "cx." and Settings.from_env({}).partitions == 3


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SEGUE_PARTITIONS", "three"),
        ("SEGUE_PARTITIONS", "0"),
        ("SEGUE_EXPLORATION_RATE", "1.5"),
        ("SEGUE_TABLE_STORE", "redis://"),
        ("SEGUE_FETCH_MIN_BYTES", "0"),
        ("SEGUE_FETCH_GATHER_MS", "-1"),
        ("SEGUE_FETCH_GATHER_MS", "10001"),
        ("SEGUE_PROFILE_WRITE_DELAY_MS", "-1"),
        ("SEGUE_PROFILE_WRITE_DELAY_MS", "60001"),
    ],
)
def test_bad_values_fail_with_the_variable_named(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: value})


def test_describe_masks_secrets_and_documents_every_setting() -> None:
    s = Settings.from_env({"SEGUE_KAFKA_SASL_PASSWORD": "hunter2"})
    rows = {env: (value, doc) for env, value, _, doc in s.describe()}
    assert rows["SEGUE_KAFKA_SASL_PASSWORD"][0] == "****"
    assert "hunter2" not in repr(s.describe())
    assert all(doc for _, doc in rows.values())


def test_to_env_round_trips() -> None:
    s = Settings.from_env({"SEGUE_TOPIC_PREFIX": "t1.", "SEGUE_MIN_SCORE": "0.2"})
    assert Settings.from_env(s.to_env()) == s
