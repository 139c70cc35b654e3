"""The plan: every decision made before a launch, made once, here. Which zones and in what order
(`order_zones`: the one answer, shown by `make_plan` and followed by every attempt's launch, which asks
`zone_order` again with the prices then and the zone that just interrupted the run), on what image,
at what price, for how long and how much, and how often to checkpoint (the only interval: the trainer
gets it from the stored `PlanRecord`).

Pure where it can be: `order_zones`, `young_interval` and `estimate` are functions of numbers;
`make_plan` reads prices and the image from the cloud and past throughput and interruptions from the
store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from spotrain import catalog, volumes
from spotrain.cloud import ImageChoice, ZoneFailure, ZoneQuote
from spotrain.cloud.aws import attempt, client, data_access, images, instances, translated
from spotrain.cloud.aws.instances import ZoneCandidate, ZoneOrder
from spotrain.config import CHECKPOINT_BOUNDS_S, PlanRecord, RunSpec
from spotrain.errors import SpotrainError

# Before any interruption of ours was seen for a type: the Spot Instance Advisor's worst bucket (>20% a
# month) read as a mean time between interruptions of about two hours, so the interval errs short.
DEFAULT_MTBI_S = 2 * 3600.0
DEFAULT_CHECKPOINT_COST_S = 5.0  # before the trainer measured one: a synchronous save of ResNet-50


@dataclass(frozen=True)
class CheckpointPlan:
    seconds: float  # the interval handed to the trainer (--checkpoint-every)
    checkpoint_cost_s: float  # seconds the loop is blocked per checkpoint (measured, or the default)
    mtbi_s: float  # mean time between interruptions (observed for this type, or the default)
    basis: str  # one sentence: where the two inputs came from


def young_interval(checkpoint_cost_s: float, mtbi_s: float) -> float:
    """Young's (1974) optimal checkpoint interval, sqrt(2 C M), within CHECKPOINT_BOUNDS_S (the
    bounds --checkpoint-every is held to as well)."""
    raw = math.sqrt(2.0 * max(checkpoint_cost_s, 0.0) * max(mtbi_s, 0.0))
    low, high = CHECKPOINT_BOUNDS_S
    return min(max(raw, low), high)


def checkpoint_plan(
    *, measured_cost_s: float | None, interruptions: int, instance_hours: float
) -> CheckpointPlan:
    """The interval from what past attempts of this instance type measured, else conservative defaults."""
    cost = measured_cost_s if measured_cost_s is not None else DEFAULT_CHECKPOINT_COST_S
    if interruptions > 0:
        mtbi, seen = (
            instance_hours * 3600.0 / interruptions,
            f"{interruptions} interruptions in {instance_hours:.1f} h",
        )
    else:
        mtbi, seen = DEFAULT_MTBI_S, "no interruption seen yet, assumed one every 2 h"
    measured = f"checkpoint cost {cost:.2f} s " + (
        "(measured)" if measured_cost_s is not None else "(default)"
    )
    return CheckpointPlan(young_interval(cost, mtbi), cost, mtbi, f"{measured}; {seen}")


@dataclass(frozen=True)
class Estimate:
    hours: float | None  # wall-clock for the whole schedule; None: unknown (the user's own command)
    spot_usd: float | None  # at the spot price now
    on_demand_usd: float | None
    images_per_s: float
    basis: str  # "measured in N past runs" or "assumed X% of peak"
    nodes: int = 1  # instances the run trains on at once
    usd_per_hour: float = 0.0  # spot $/h of all of them: the zone's price x nodes


def estimate(
    recipe: catalog.RecipeDefaults,
    itype: catalog.InstanceType,
    *,
    spot_usd_per_hour: float,
    nodes: int = 1,
    measured_images_per_s: float | None = None,
) -> Estimate:
    """Expected hours and dollars for the recipe's schedule: FLOPs over the GPUs' peak at an assumed
    utilisation, unless past runs of this recipe on this type measured the throughput."""
    work = recipe.samples_per_epoch * recipe.epochs
    if not work:  # the user's own command: spotrain has no model of its work, and guesses none
        return Estimate(None, None, None, 0.0, "unknown: your own command's work is its own")
    if measured_images_per_s:
        rate, basis = (
            measured_images_per_s * nodes,
            "throughput measured in past runs of this recipe and type",
        )
    else:
        rate = itype.peak_tflops * 1e12 * nodes * recipe.utilisation / recipe.train_flops_per_sample
        # two significant figures: digits' tiny CNN assumes 0.1%, which `:.0%` wrote as 0%
        basis = f"assumed {recipe.utilisation * 100:.2g}% of the GPUs' peak {itype.peak_tflops:g} TFLOPS"
    hours = work / rate / 3600.0
    return Estimate(
        hours=hours,
        spot_usd=hours * spot_usd_per_hour * nodes,
        on_demand_usd=hours * itype.on_demand_usd_per_hour * nodes,
        images_per_s=rate,
        basis=basis,
        nodes=nodes,
        usd_per_hour=spot_usd_per_hour * nodes,
    )


@dataclass(frozen=True)
class Plan:
    instance_type: str
    image: ImageChoice  # for the first zone's region
    order: ZoneOrder  # every allowed zone of every region of the run, in the order the launch tries them
    estimate: Estimate
    checkpoint: CheckpointPlan
    volume: volumes.VolumePlan  # the gp3 volume the data is read from, provisioned for the estimate's rate
    record: PlanRecord  # what is stored with the run, and what every attempt follows

    @property
    def zones(self) -> list[ZoneQuote]:
        return [c.quote for c in self.order.candidates]

    @property
    def zone(self) -> ZoneQuote:
        return self.order.candidates[0].quote

    @property
    def region(self) -> str:
        return self.order.candidates[0].region


# ---------------------------------------------------------------------------------------------- zones
def order_zones(
    quotes: Mapping[str, Sequence[ZoneQuote]],
    *,
    instance_type: str,
    zones: Sequence[str] = (),
    max_price: float | None = None,
    demote: Iterable[str] = (),
) -> ZoneOrder:
    """The one answer to "which zone": region by region in the run's order, cheapest first within a
    region; only the --zone ones when any are given; none priced over --max-price (skipped with why);
    the `demote`d zones (the one that just interrupted the run) last of all."""
    last = set(demote)
    keep: list[ZoneCandidate] = []
    skipped: list[ZoneFailure] = []
    for region, region_quotes in quotes.items():
        if not region_quotes:
            skipped.append(ZoneFailure(region, "*", "NotOffered", f"no spot price for {instance_type}"))
        for q in sorted(region_quotes, key=lambda q: (q.usd_per_hour, q.zone)):
            if zones and q.zone not in zones:
                continue  # not allowed by --zone: not a failure, just not ours to try
            if max_price is not None and q.usd_per_hour > max_price:
                msg = f"spot price ${q.usd_per_hour:.4f}/h is above --max-price ${max_price:.4f}/h"
                skipped.append(ZoneFailure(region, q.zone, "MaxPrice", msg))
            else:
                keep.append(ZoneCandidate(region, q))
    keep.sort(key=lambda c: c.zone in last)  # stable: keeps region order and price order otherwise
    return ZoneOrder(tuple(keep), tuple(skipped))


def zone_order(sess, spec: RunSpec, *, demote: Iterable[str] = (), now: datetime | None = None) -> ZoneOrder:
    """The zones one attempt of `spec` tries, from the spot prices of all its regions now."""
    return _order(_quotes(sess, spec, now), spec, demote)


def _quotes(sess, spec: RunSpec, now: datetime | None) -> dict[str, list[ZoneQuote]]:
    return instances.region_quotes(sess, instance_type=spec.instance, regions=spec.regions, now=now)


def _order(quotes: Mapping[str, Sequence[ZoneQuote]], spec: RunSpec, demote: Iterable[str]) -> ZoneOrder:
    return order_zones(
        quotes, instance_type=spec.instance, zones=spec.zones, max_price=spec.max_price, demote=demote
    )


def refuse_empty(order: ZoneOrder, quotes: Mapping[str, Sequence[ZoneQuote]], spec: RunSpec) -> None:
    """No zone left to try: refused before anything is launched or billed, saying which limit did it."""
    if order.candidates:
        return
    priced = [q for region_quotes in quotes.values() for q in region_quotes]
    if not priced:
        raise SpotrainError(
            f"{spec.instance} has no spot price in {', '.join(quotes)}: it is not offered there as spot",
            f"try another region, e.g. `spotrain prices --instance {spec.instance} --region us-west-2`",
        )
    allowed = [q for q in priced if not spec.zones or q.zone in spec.zones]
    if not allowed:
        raise SpotrainError(
            f"{spec.instance} has no spot price in --zone {', '.join(spec.zones)} of {', '.join(quotes)}",
            f"spot prices exist in {', '.join(q.zone for q in priced)}: allow one of those",
        )
    cheapest = min(allowed, key=lambda q: (q.usd_per_hour, q.zone))
    raise SpotrainError(
        f"--max-price ${spec.max_price:g}/h is below every allowed zone's spot price: the cheapest is "
        f"{cheapest.zone} at ${cheapest.usd_per_hour:.4f}/h",
        f"raise --max-price to at least {cheapest.usd_per_hour:.4f}, or leave it out (AWS then caps "
        "at the on-demand price)",
    )


# ---------------------------------------------------------------------------------------------- the plan
def make_plan(
    sess,
    spec: RunSpec,
    *,
    measured_images_per_s: float | None,
    measured_cost_s: float | None,
    interruptions: int,
    instance_hours: float,
    now: datetime | None = None,
) -> Plan:
    """Prices and image from the cloud (real boto3 calls), figures from the caller's store."""
    itype = catalog.instance_type(spec.instance)
    check_zones(sess, spec)
    check_snapshot(sess, spec)
    check_data_access(sess, spec)
    check_includes(spec)
    quotes = _quotes(sess, spec, now or datetime.now(timezone.utc))
    order = _order(quotes, spec, demote=())
    refuse_empty(order, quotes, spec)
    region = order.candidates[0].region
    image = images.choose_image(sess, region=region, instance_type=itype.name, override=spec.ami)
    est = estimate(
        catalog.recipe(spec.recipe),
        itype,
        spot_usd_per_hour=order.candidates[0].usd_per_hour,
        nodes=spec.nodes,
        measured_images_per_s=measured_images_per_s,
    )
    if spec.checkpoint_every == "auto":
        ckpt = checkpoint_plan(
            measured_cost_s=measured_cost_s, interruptions=interruptions, instance_hours=instance_hours
        )
    else:
        ckpt = CheckpointPlan(
            float(spec.checkpoint_every), measured_cost_s or 0.0, 0.0, "given with --checkpoint-every"
        )
    recipe = catalog.recipe(spec.recipe)
    # Sized from the prior estimate of images/s per instance (as fast as the GPUs could go), never
    # below it: a disk slower than the GPUs is what bounds ImageNet.
    vol = volumes.size_volume(
        gb=recipe.root_volume_gb,
        images_per_s=est.images_per_s / spec.nodes,
        bytes_per_sample=recipe.bytes_per_sample,
    )
    record = PlanRecord(
        itype.name, itype.gpus, recipe.root_volume_gb, round(ckpt.seconds, 1), vol.iops, vol.mib_s
    )
    return Plan(itype.name, image, order, est, ckpt, vol, record)


def check_zones(sess, spec: RunSpec) -> None:
    """Every --zone must be a zone of one of the run's regions, as AWS lists them."""
    if not spec.zones:
        return
    known = {z for r in spec.regions for z in instances.region_zones(sess, r)}
    unknown = [z for z in spec.zones if z not in known]
    if unknown:
        raise SpotrainError(
            f"--zone {', '.join(unknown)}: not an availability zone of {', '.join(spec.regions)}",
            f"the zones there are {', '.join(sorted(known))}; pass one of those, or no --zone for any",
        )


@translated("look up the data snapshot")
def check_snapshot(sess, spec: RunSpec) -> None:
    """A --data snapshot must exist in at least one of the run's regions (snapshots are regional: the
    launch skips the regions without it)."""
    if not (spec.data or "").startswith("snap-"):
        return
    missing = [attempt.snapshot_missing(client(sess, "ec2", r), r, spec.data) for r in spec.regions]
    if all(missing):
        raise SpotrainError(
            f"--data {spec.data}: no such EBS snapshot in {', '.join(spec.regions)}",
            f"check the id with `aws ec2 describe-snapshots --snapshot-ids {spec.data}`; a snapshot is "
            "regional: copy it into a region of the run (`aws ec2 copy-snapshot`)",
        )


@translated("read which datasets spotrain's instance role may read")
def check_data_access(sess, spec: RunSpec) -> None:
    """An s3:// --data must be inside what spotrain's stack lets the instance role read."""
    if (spec.data or "").startswith("s3://"):
        data_access.check_readable(sess, uri=spec.data, regions=spec.regions)


def check_includes(spec: RunSpec) -> None:
    """Every `includes` path is there to be sent (beside `trainer/` in the bundle, under its own name),
    before anything is launched or billed."""
    if spec.workdir is not None and not spec.workdir.is_dir():
        raise SpotrainError(
            f"workdir: {spec.workdir} is not a directory; your own command runs in the directory synced",
            "run launch from your project's directory, or give workdir: an existing directory",
        )
    missing = [str(p) for p in spec.includes if not Path(p).exists()]
    if missing:
        raise SpotrainError(
            f"includes: {', '.join(missing)}: no such file or directory",
            "give paths that exist (in a spec file, relative to the file's directory)",
        )
