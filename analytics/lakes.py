"""`open_lake`: the lake for a location, on the local filesystem (``analytics.lake``) or on object storage
(``analytics.object_lake``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from analytics.lake import Lake, ParquetLake
from analytics.object_lake import ObjectStoreLake
from core.settings import LAKE_OBJECT_SCHEMES


def open_lake(uri: Path | str) -> Lake:
    """The lake at a local path, a file:// URI, or s3://bucket/prefix and gs://bucket/prefix (object storage)."""
    if isinstance(uri, str) and urlparse(uri).scheme in LAKE_OBJECT_SCHEMES:
        return ObjectStoreLake(uri)
    return ParquetLake(uri)
