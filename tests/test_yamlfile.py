"""labhelpers.yamlfile: every YAML file the course reads fails the same clear way."""

import pytest

from labhelpers.errors import ConfigError
from labhelpers.yamlfile import read_yaml


def test_reads_a_mapping(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("a: 1\nb: [x, y]\n")
    assert read_yaml(path, "config") == {"a": 1, "b": ["x", "y"]}


def test_missing_file_names_the_kind_and_an_example(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: no such grid file$"):
        read_yaml(tmp_path / "nope.yaml", "grid")
    with pytest.raises(ConfigError, match=r"no such search space file; check the path \(e.g. configs/s.yaml\)"):
        read_yaml(tmp_path / "nope.yaml", "search space", example="configs/s.yaml")


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: 1\nb: [unclosed\nc: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:line \d: not valid YAML .*indentation and quotes"):
        read_yaml(path, "config")


def test_empty_file_and_python_objects_are_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# only a comment\n")
    with pytest.raises(ConfigError, match="the config file is empty"):
        read_yaml(empty, "config")
    evil = tmp_path / "evil.yaml"
    evil.write_text("x: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):   # safe_load: no Python objects
        read_yaml(evil, "config")
