"""The dry-run's AWS for detached runs: one background process per dry-run state directory that plays
AWS for as long as a detached dry-run run is live, so that `launch --dry-run --detach` returns and no
process of the user's is needed until the run ends.

    python -m spotrain.cloud.local.stand_in STATE_DIR      # started by `ensure_running`, in its own session

It holds the moto server of every dry-run call while it lives (its endpoint in `stand-in/stand-in.json`:
a LocalCloud made meanwhile talks to it instead of starting its own, see cloud.py), moto's Auto
Scaling, and the groups' instances: a member of a spotrain group with no local process boots here, as
EC2 boots it (its user data, infra/bootstrap.sh, whose detached stage fetches the bundle from S3 and
starts the supervisor) with a fake IMDS of its own. `--inject-interruption` of the run (its attempt's
entry, in `stand-in/RUN.inject.json`) is raised by the trainer at its pinned step; the stand-in then
posts the notice at the IMDS and, once the supervisor wrote the attempt's end (or the notice's two
minutes passed), terminates the instance as EC2 would. moto's group starts the replacement in the same
call, in its first subnet: the stand-in moves the interrupted zone's subnet last first, so the
replacement lands in another zone (AWS chooses by capacity; moto does not).

With `--inject-rebalance` it plays Capacity Rebalancing: on the member's recommendation it launches the
replacement at once, in another zone, beside it; the at-risk trainer, after its rebalance checkpoint,
holds (SPOTRAIN_REBALANCE_HOLD) until the replacement's trainer is warm (onboard/standby.py's marker),
then trains on to its notice; with no notice due, the stand-in posts one then, standing for the group's
termination of the old instance. Once the old attempt's end is in the ledger the old instance goes.
What it did, and what the replacement was when the notice came, is in `stand-in/RUN.events.jsonl`.

It exits by itself when no group of a run is left (`down`), or when every group has been at desired 0
for `LINGER_S` (the run ended; `status` and `down` still find its group meanwhile), or when it never saw
a group for `LINGER_S`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from spotrain.cloud import TAG_RUN
from spotrain.cloud.local import boot
from spotrain.cloud.local import moto_patches as fakes
from spotrain.cloud.local.cloud import REGIONS, LocalCloud
from spotrain.cloud.local.imds import TRAINER_INJECT_ENV, EventsProgress, FakeImds, Schedule, trainer_pids
from spotrain.cloud.local.stand_in_files import (
    STATE_FILE,
    alive,
    injections,
    leased,
    live_endpoint,
    publish,
    record,
    stand_in_dir,
)
from spotrain.onboard.supervisor import RunBucket

POLL_S = 0.2
LINGER_S = float(os.environ.get("SPOTRAIN_STAND_IN_LINGER_S", "300"))
REBALANCE_ENV = "SPOTRAIN_REBALANCE_AT"  # trainer/spot.py's REBALANCE_ENV (the contract's fault injection)
NOTICE_GRACE_S = 120.0  # EC2 takes a spot instance back two minutes after its notice
START_DEADLINE_S = 60.0  # moto, its seed and the stack take seconds; a loaded machine more
HOLD_ENV = "SPOTRAIN_REBALANCE_HOLD"  # trainer/spot.py's HOLD_ENV (the contract's fault injection)
WARM_DEADLINE_S = 240.0  # a replacement not warm by then: the at-risk one goes on without it


def ensure_running(state_dir: Path) -> str:
    """The stand-in's endpoint, started first (detached, in its own session) when none lives."""
    endpoint = live_endpoint(state_dir)
    if endpoint is not None:
        return endpoint
    d = stand_in_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / STATE_FILE).unlink(missing_ok=True)
    with (d / "stand-in.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spotrain.cloud.local.stand_in", str(state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        endpoint = live_endpoint(state_dir)
        if endpoint is not None:
            return endpoint
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    from spotrain.errors import SpotrainError

    raise SpotrainError("the dry-run's AWS stand-in did not start", f"see {d / 'stand-in.log'}")


@dataclass
class Member:
    """A group's instance played here: its directory, IMDS, boot and what is due to it."""

    instance_id: str
    region: str
    zone: str
    run_id: str
    group: str
    home: Path
    imds: FakeImds
    proc: subprocess.Popen | None
    schedule: Schedule | None
    progress: EventsProgress | None
    noticed_at: float | None = None
    rebalance_due: bool = False  # an injected rebalance recommendation not yet posted at the IMDS
    events: Path | None = None  # the trainer's events.jsonl on this instance
    pids: list[int] = field(default_factory=list)
    hold: Path | None = (
        None  # after its rebalance checkpoint its trainer waits for this file (trainer/spot.py)
    )
    rebalanced_at: float | None = None  # Capacity Rebalancing asked the group for its replacement
    replacement: Member | None = None  # that replacement, once booted
    in_service: bool = False  # the replacement's trainer is warm: the notice may come, or the end
    max_size: int = 1  # the group's MaxSize before its replacement was launched beside it

    def warm_marker(self) -> dict[str, Any] | None:
        """This instance's warm trainer (onboard/standby.py's RUN_DIR/warm), if it has one."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            return json.loads((self.events.parent / "warm").read_text())  # type: ignore[union-attr]
        return None

    def stop(self) -> None:
        """The instance ended: every process of it dies, as with the machine."""
        pids = trainer_pids(self.home)
        sup = boot.boot_dir(self.home) / "supervisor.pid"
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(sup.read_text().strip()))
        if self.proc is not None and self.proc.poll() is None:
            pids.append(self.proc.pid)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self.imds.close()


def _raised_rebalance(events: Path | None) -> bool:
    """The trainer raised its injected rebalance recommendation (its `rebalance` event)."""
    with contextlib.suppress(OSError):
        return events is not None and b'"kind":"rebalance"' in events.read_bytes().replace(b" ", b"")
    return False


class StandIn:
    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud
        self.state_dir = Path(cloud.state_dir)
        self.sess = cloud.session()
        self.members: dict[str, Member] = {}
        self.started: dict[str, int] = {}  # members booted per run: the attempt each one's injection is
        self.home_dir = stand_in_dir(self.state_dir) / "instances"
        self.home_dir.mkdir(parents=True, exist_ok=True)

    def groups(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for region in REGIONS:
            asg = self.sess.client("autoscaling", region_name=region)
            for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]:
                if any(t["Key"] == TAG_RUN for t in g.get("Tags", [])):
                    out.append((region, g))
        return out

    def step(self) -> list[tuple[str, dict[str, Any]]]:
        groups = self.groups()
        in_service = {}
        for region, g in groups:
            run_id = next(t["Value"] for t in g["Tags"] if t["Key"] == TAG_RUN)
            for inst in g["Instances"]:
                if inst["LifecycleState"] in ("InService", "Pending"):
                    in_service[inst["InstanceId"]] = (region, g, run_id, inst["AvailabilityZone"])
        for iid in [i for i in self.members if i not in in_service]:
            self.members.pop(iid).stop()  # terminated (desired 0, down, the group's own replacement)
        for iid, (region, g, run_id, zone) in in_service.items():
            if iid not in self.members:
                self.members[iid] = self.boot(iid, region, g["AutoScalingGroupName"], run_id, zone)
        for m in list(self.members.values()):
            self.watch(m)
        return groups

    def boot(self, iid: str, region: str, group: str, run_id: str, zone: str) -> Member:
        home = self.home_dir / iid
        home.mkdir(parents=True, exist_ok=True)
        imds = FakeImds(iid, zone)
        n = self.started.get(run_id, 0)
        self.started[run_id] = n + 1
        wanted = injections(self.state_dir, run_id)
        notices, rebalances = wanted["interruptions"], wanted["rebalances"]
        schedule = Schedule.parse(notices[n]) if n < len(notices) else None
        rebalance = Schedule.parse(rebalances[n]) if n < len(rebalances) else None
        env = {
            "SPOTRAIN_IMDS_URL": imds.url,
            "SPOTRAIN_IMDS_POLL_S": "0.01",
            "AWS_ENDPOINT_URL": self.cloud.endpoint,
            "AWS_ACCESS_KEY_ID": fakes.DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": fakes.DUMMY_KEY,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        if schedule is not None and schedule.pinned:
            env[TRAINER_INJECT_ENV] = schedule.text
        hold = None
        if (
            rebalance is not None
        ):  # the trainer raises it at that step (trainer/spot.py), the IMDS then says so
            env[REBALANCE_ENV] = rebalance.text
            hold = home / "rebalance-hold"  # after that checkpoint it waits for its replacement's warm start
            env[HOLD_ENV] = str(hold)
        proc = boot.start_user_data(home, fakes.user_data(region, iid), env=env)
        events = boot.boot_dir(home) / "runs" / run_id / "events.jsonl"
        progress = EventsProgress(events) if schedule is not None else None
        member = Member(iid, region, zone, run_id, group, home, imds, proc, schedule, progress)
        member.rebalance_due = rebalance is not None
        member.events = events
        member.hold = hold
        at_risk = [
            o for o in self.members.values() if o.group == group and o.rebalanced_at and not o.replacement
        ]
        if at_risk:  # the replacement Capacity Rebalancing launched for it
            at_risk[0].replacement = member
            record(
                self.state_dir,
                run_id,
                "replacement",
                instance=at_risk[0].instance_id,
                replacement=iid,
                zone=zone,
            )
        return member

    def watch(self, m: Member) -> None:
        """A due interruption: the notice at the IMDS, then the reclaim once the attempt ended. A
        rebalance recommendation: its replacement first, and the notice only once that one is warm."""
        if m.rebalance_due and _raised_rebalance(m.events):
            m.imds.post_rebalance()
            m.rebalance_due = False
            self.launch_replacement(m)
        if m.rebalanced_at is not None and not m.in_service:
            if not self.replacement_ready(m):
                return  # its trainer waits after its rebalance checkpoint (m.hold)
            if m.schedule is None:
                # No notice comes: the group terminates it now that the replacement is in service. Played
                # as a notice (the hold ends on it): its trainer checkpoints, exits 75; the warm one goes.
                m.imds.post_notice(datetime.now(timezone.utc) + timedelta(seconds=NOTICE_GRACE_S))
                m.noticed_at = time.monotonic()
                self.note_notice(m, "rebalanced-out")
            elif m.hold is not None:
                m.hold.touch()  # it trains on to its notice
        if m.noticed_at is None:
            if m.schedule is not None and m.progress is not None and m.progress.due(m.schedule):
                m.imds.post_notice()
                m.noticed_at = time.monotonic()
                self.note_notice(m, "notice")
            return
        if self.attempt_ended(m) or time.monotonic() - m.noticed_at > NOTICE_GRACE_S:
            self.reclaim(m)

    def attempt_ended(self, m: Member) -> bool:
        settings_bucket = self.cloud.bucket()
        ledger = RunBucket(self.sess.client("s3", region_name=m.region), settings_bucket, m.run_id).ledger()
        return any(a.instance_id == m.instance_id and a.end is not None for a in ledger.attempts)

    def replacement_ready(self, m: Member) -> bool:
        """Its replacement's trainer is warm (or never will be in time): lift its notice's hold."""
        rep = m.replacement
        warm = rep.warm_marker() if rep is not None else None
        late = time.monotonic() - float(m.rebalanced_at or 0.0) > WARM_DEADLINE_S
        if warm is None and not late:
            return False
        m.in_service = True
        record(self.state_dir, m.run_id, "in-service", instance=m.instance_id, warm=warm, late=warm is None)
        return True

    def note_notice(self, m: Member, kind: str) -> None:
        """What the replacement was at the moment the notice was delivered (the tests' evidence)."""
        rep = m.replacement
        warm = rep.warm_marker() if rep is not None else None
        record(
            self.state_dir,
            m.run_id,
            kind,
            instance=m.instance_id,
            replacement=rep.instance_id if rep is not None else None,
            warm=warm,
            warm_pid_alive=bool(warm and alive(int(warm["pid"]))),
            went=rep is not None and (rep.events.parent / "go").exists(),  # type: ignore[union-attr]
        )

    def launch_replacement(self, m: Member) -> None:
        """Capacity Rebalancing: the group launches a replacement first, in another zone, exceeding its
        desired capacity for a while (Amazon EC2 Auto Scaling User Guide, "Use Capacity Rebalancing to
        handle Amazon EC2 Spot Interruptions": it waits until the new instance passes its health check
        before it terminates the previous one). moto's group launches only up to its desired capacity,
        within MaxSize: both are raised by one here, and lowered again when the old one goes."""
        asg = self.sess.client("autoscaling", region_name=m.region)
        g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[m.group])["AutoScalingGroups"][0]
        m.max_size, m.rebalanced_at = int(g["MaxSize"]), time.monotonic()
        asg.update_auto_scaling_group(
            AutoScalingGroupName=m.group,
            VPCZoneIdentifier=",".join(self.subnets_away_from(m, g)),
            MaxSize=m.max_size + 1,
            DesiredCapacity=int(g["DesiredCapacity"]) + 1,
        )
        record(self.state_dir, m.run_id, "rebalance", instance=m.instance_id, zone=m.zone)

    def subnets_away_from(self, m: Member, g: dict[str, Any]) -> list[str]:
        """The group's subnets with `m`'s zone last (moto launches in the first; AWS by capacity)."""
        ec2 = self.sess.client("ec2", region_name=m.region)
        subnets = [s for s in g["VPCZoneIdentifier"].split(",") if s]
        zone_of = {
            s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
        }
        return [s for s in subnets if zone_of[s] != m.zone] + [s for s in subnets if zone_of[s] == m.zone]

    def retire(self, m: Member) -> None:
        """The at-risk instance, its attempt ended, terminated beside its replacement in service: the
        group's desired capacity (and MaxSize) back to what they were."""
        asg = self.sess.client("autoscaling", region_name=m.region)
        self.members.pop(m.instance_id, None)
        m.stop()
        asg.terminate_instance_in_auto_scaling_group(
            InstanceId=m.instance_id, ShouldDecrementDesiredCapacity=True
        )
        asg.update_auto_scaling_group(AutoScalingGroupName=m.group, MaxSize=m.max_size)
        record(self.state_dir, m.run_id, "terminate", instance=m.instance_id)

    def reclaim(self, m: Member) -> None:
        """EC2 takes the instance back; the group replaces it, steered off the interrupted zone."""
        if m.replacement is not None:
            self.retire(m)  # its replacement is already in service
            return
        asg = self.sess.client("autoscaling", region_name=m.region)
        ec2 = self.sess.client("ec2", region_name=m.region)
        g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[m.group])["AutoScalingGroups"][0]
        subnets = [s for s in g["VPCZoneIdentifier"].split(",") if s]
        order = self.subnets_away_from(m, g)
        if order != subnets:
            asg.update_auto_scaling_group(AutoScalingGroupName=m.group, VPCZoneIdentifier=",".join(order))
        self.members.pop(m.instance_id, None)
        m.stop()
        ec2.terminate_instances(InstanceIds=[m.instance_id])  # moto's group starts the replacement here

    def close(self) -> None:
        for m in self.members.values():
            m.stop()
        self.members.clear()


def serve(state_dir: Path) -> int:
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # ended by hand: its instances end with it
    cloud = LocalCloud(state_dir, boot_delay_s=0.0)
    d = stand_in_dir(state_dir)
    publish(d, cloud.endpoint)
    stand_in = StandIn(cloud)
    seen, quiet_since = False, time.monotonic()
    try:
        while True:
            groups = stand_in.step()
            live = [g for _, g in groups if g["DesiredCapacity"] > 0 or g["Instances"]]
            seen = seen or bool(groups)
            if live:
                quiet_since = time.monotonic()
            elif ((seen and not groups) or time.monotonic() - quiet_since > LINGER_S) and not leased(
                state_dir
            ):
                (d / STATE_FILE).unlink()  # a call from now on starts its own moto; one that began
                if not leased(state_dir):  # between the look and the unlink holds a lease: stay for it
                    return 0  # every run's group deleted (`down`), or ended long ago, and no call uses moto
                publish(d, cloud.endpoint)
            time.sleep(POLL_S)
    finally:
        stand_in.close()
        (d / STATE_FILE).unlink(missing_ok=True)
        cloud.close()


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
