"""The table of TRL's config fields that config validation reads (no TRL import) is the installed TRL's."""

import dataclasses

from po_bench.training.trl import fields


def test_the_table_holds_the_installed_classes_fields():
    assert fields.VERSIONS == fields.installed_versions(), "python -m po_bench.training.trl.fields writes it again"
    for family, name in fields.CLASSES.items():
        cls = fields.config_class(family)
        assert cls.__name__ == name
        assert fields.table_fields(family) == {f.name for f in dataclasses.fields(cls)}, family


def test_the_module_is_as_its_writer_writes_it(tmp_path):
    path = tmp_path / "fields.py"
    path.write_text(open(fields.__file__).read())
    fields.write(path)
    assert path.read_text() == open(fields.__file__).read()


def test_another_trl_version_reads_the_classes(monkeypatch):
    monkeypatch.setattr(fields, "VERSIONS", {**fields.VERSIONS, "trl": "0.0.1"})
    assert fields.table_fields("dpo") is None
