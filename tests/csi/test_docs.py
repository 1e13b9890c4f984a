"""README's Kubernetes section documents every volume attribute, StorageClass parameter and flag the driver
accepts (the tables and the parser must not drift apart)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ossmount.csi import validation
from ossmount.csi.cli import build_parser

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTION = README.split("## Kubernetes", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("name", sorted(set(validation.PROVISION_PARAMETERS) | set(validation.ATTRIBUTE_SECRETS)))
def test_every_attribute_and_parameter_is_documented(name):
    assert f"`{name}`" in SECTION


@pytest.mark.parametrize("name", sorted(set(validation.IGNORED_ATTRIBUTES) | set(validation.UNSUPPORTED_ATTRIBUTES)))
def test_ignored_and_refused_alibaba_attributes_are_documented(name):
    assert name in SECTION.lower()


@pytest.mark.parametrize("flag", [a.option_strings[-1] for a in build_parser()._actions if a.option_strings
                                  and a.option_strings[-1] not in ("--help",)])
def test_every_flag_is_documented(flag):
    assert flag in SECTION


def test_values_are_documented():
    for value in validation.VOLUME_AS + validation.ON_DELETE:
        assert f"`{value}`" in SECTION
