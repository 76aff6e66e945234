"""Nodes called directly, as an API prompt calls them (bypassing the widgets' limits): every bad
value gets a clear error naming the input."""
from __future__ import annotations

import shutil

import pytest

from test_nodes import loaded, plain  # noqa: F401  (the session's pack on tiny models)


def test_the_loader_refuses_a_t5_of_another_width(plain):  # noqa: F811
    folder = plain.models / "text_encoders" / "narrow-t5"
    plain.mod("infinity_core.tiny_t5").write_tiny_t5(str(folder), d_model=64)
    try:
        message = plain.error("InfinityStyleLoader", **{**plain.files, "text_encoder": "narrow-t5"})
    finally:
        shutil.rmtree(folder)  # the models folder is shared with the other node tests
    assert "narrow-t5" in message and "64-wide features" in message and "128-wide" in message
