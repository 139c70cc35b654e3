"""The dry-run cloud: `cloud.py` (LocalCloud, the `Cloud` of `--dry-run`), `moto_patches.py` (what moto
does not emulate: spot prices, interruptions, quotas, DLAMIs), `imds.py` (each instance's fake IMDS)."""

from spotrain.cloud.local.cloud import BUCKET, REGIONS, LocalCloud

__all__ = ["BUCKET", "REGIONS", "LocalCloud"]
