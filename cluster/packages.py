"""Each version's runtime_env: its clean ZIP uploaded to Ray's GCS under a content-addressed URI.

A `gcs://` URI works on every node of the cluster (a `file://` path exists on one node only) and, being
named by the content's hash, can never serve stale code the way a reused `file://` URI does (ray#49036).
"""

from __future__ import annotations

from typing import Any

from ray._private.runtime_env.packaging import package_exists, upload_package_to_gcs


def package_uri(sha256: str) -> str:
    """The GCS URI of a bundle; Ray unpacks `gcs://` zips as they are (no top-level dir stripping)."""
    return f"gcs://_ray_pkg_{sha256[:40]}.zip"


def ensure_uploaded(sha256: str, read_bundle: Any) -> str:
    """Upload the bundle to GCS unless it is there already; return its URI."""
    uri = package_uri(sha256)
    if not package_exists(uri):
        upload_package_to_gcs(uri, read_bundle(sha256))
    return uri


def runtime_env_for(sha256: str, read_bundle: Any) -> dict[str, Any]:
    """The runtime_env of a version (build it once per version, not per submission)."""
    return {"working_dir": ensure_uploaded(sha256, read_bundle)}
