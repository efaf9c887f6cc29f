"""Conformance of ``dino_embedding`` (PROTOCOL.md §3: ``normalize`` bool, ``output/dino_embedding.npy`` float32 [384]).

The checks are ``ImageEmbeddingSuite`` (shared with clip_embedding): the vector file read with numpy (dtype,
length = ``task_output.embedding_dim``, finite, norm 1 with ``normalize``, the same direction without it),
determinism, re-encoded / resized copies closer than unrelated images by a margin, undecodable inputs ending
in ``error`` with a message, and a 422 for a non-boolean ``normalize``; through MQTT callbacks and polling.
"""

from __future__ import annotations

import pytest

from pytest_cl.conformance.plugins._ml_helpers import ImageEmbeddingSuite

pytestmark = [pytest.mark.cl_requires("dino_embedding"), pytest.mark.timeout(120)]


class TestDinoEmbedding(ImageEmbeddingSuite):
    """dino_embedding: 384 floats."""

    TASK = "dino_embedding"
    DIM = 384
