from __future__ import annotations

import pytest

from spotrain import catalog
from spotrain.errors import SpotrainError

ISSUE_TYPES = [
    "p3.2xlarge", "p3.8xlarge", "p3.16xlarge", "p3dn.24xlarge", "g4dn.xlarge", "g4dn.12xlarge",
    "g5.xlarge", "g5.12xlarge", "g5.48xlarge", "g6.xlarge", "p4d.24xlarge", "p5.48xlarge",
]  # fmt: skip


@pytest.mark.parametrize("name", ISSUE_TYPES)
def test_every_type_the_issue_names_is_complete(name: str) -> None:
    t = catalog.instance_type(name)
    assert t.gpus >= 1 and t.vcpus >= 4 and t.memory_gib >= 16 and t.on_demand_usd_per_hour > 0
    assert t.gpu.peak_tflops > 0 and t.gpu.memory_gib >= 16


def test_published_figures() -> None:
    p3 = catalog.instance_type("p3.16xlarge")
    assert (p3.gpus, p3.gpu.name, p3.vcpus, p3.memory_gib, p3.on_demand_usd_per_hour) == (
        8,
        "V100",
        64,
        488,
        24.48,
    )
    assert p3.peak_tflops == 1000.0 and p3.gpu.compute_capability == (7, 0) and p3.quota_class == "P"
    assert catalog.instance_type("p4d.24xlarge").gpu.peak_tflops == 312
    assert catalog.instance_type("p5.48xlarge").gpu.peak_tflops == 989
    assert catalog.instance_type("g5.xlarge").quota_class == "G"


def test_unknown_type_lists_close_matches() -> None:
    with pytest.raises(SpotrainError) as err:
        catalog.instance_type("p3.16xlarg")
    assert "'p3.16xlarg'" in err.value.message and "p3.16xlarge" in err.value.message
    assert "g5.xlarge" in err.value.hint


def test_recipe_defaults() -> None:
    assert catalog.recipe("imagenet").instance == "p3.16xlarge"
    with pytest.raises(SpotrainError, match="'resnet'"):
        catalog.recipe("resnet")
