"""The README's promises: the two commands, and a feature table that matches the schema."""

from __future__ import annotations

from pathlib import Path

from mqttids import schema
from mqttids.docs_tables import with_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_feature_table_is_the_schema_s():
    text = README.read_text()
    assert with_table(text) == text, "run: python -m mqttids.docs_tables README.md"
    for field in schema.FEATURES:
        assert f"`{field.name}`" in text


def test_the_quick_start_is_exactly_make_demo_and_make_test():
    text = README.read_text()
    block = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert block.split("\n") == ["", "make demo", "make test", ""]


def test_storage_names_map_back_to_wireshark_names():
    for name in schema.COLUMN_NAMES:
        assert schema.field_name(schema.storage_name(name)) == name
    assert schema.storage_name("mqtt.proto_len") == "mqtt_proto_len"
    assert schema.field_name("mqtt_willtopic_len") == "mqtt.willtopic_len"
