"""Bundle intake: hardened ZIP validation, deterministic repacking, safe unpacking, content-addressed storage.

Modules, one role each: `zipfmt` (raw structure, polyglots, overlaps), `names` (entry-name rules),
`entries` (all header-level checks), `inflate` (budgeted decompression), `repack` (deterministic
writer), `validate` (the intake pipeline), `folder` (zip a local folder), `unpack`, `store`.
"""

from core.bundles.folder import zip_folder
from core.bundles.model import Bundle, BundleLimits
from core.bundles.store import BundleStore
from core.bundles.unpack import unpack
from core.bundles.validate import validate_and_repack

__all__ = ["Bundle", "BundleLimits", "BundleStore", "unpack", "validate_and_repack", "zip_folder"]
