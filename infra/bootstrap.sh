#!/usr/bin/env bash
# spotrain's user data for a Deep Learning AMI: pick (or install) the PyTorch environment, check that
# torch can use every GPU, prepare the data directory, then write the ready marker the controller
# waits for (over SSH: `test -f READY`). Any failure writes the failure marker with its reason instead:
# an instance whose driver or torch cannot run its GPUs must never train quietly on its CPUs.
#
# The controller prepends `export NAME=value` lines for the run; everything has a default, and every
# path and outside command can be overridden so a test can run this in a temporary root:
#   SPOTRAIN_BOOT_DIR     state, log and markers              /opt/spotrain
#   SPOTRAIN_DATA_DIR     where the trainer reads its data    /opt/dlami/nvme/data, else /data
#   SPOTRAIN_DATA_S3      s3://... to copy into the data dir  (none)
#   SPOTRAIN_DATA_DEVICE  the snapshot volume's device        /dev/sdf (or its NVMe name)
#   SPOTRAIN_DEV_DIR      where devices are looked up         /dev
#   SPOTRAIN_PYTHON       the Python to train with            /opt/pytorch/bin/python, else conda's
#   SPOTRAIN_TORCH_PIP    pip requirements for a torch venv   (none: the image's own torch)
#   SPOTRAIN_VENV         where that venv goes                $SPOTRAIN_BOOT_DIR/venv
#   SPOTRAIN_BASE_PYTHONS the Pythons to build it from        python3.12 python3.11 python3.10
#   SPOTRAIN_GPUS         GPUs torch must see (0: no check)   0
#   SPOTRAIN_LOGIN_USER   who owns the data directory         ubuntu (if that user exists)
#   SPOTRAIN_DETACHED_BUCKET, SPOTRAIN_DETACHED_RUN, SPOTRAIN_DETACHED_REGION  a detached run's
#                         (`launch --detach`): once ready, fetch its bundle and start its supervisor
#   SPOTRAIN_AWS, SPOTRAIN_MOUNT, SPOTRAIN_MOUNTPOINT, SPOTRAIN_NVME, SPOTRAIN_NVIDIA_SMI,
#   SPOTRAIN_CHOWN, SPOTRAIN_FIO, SPOTRAIN_BLOCKDEV  the commands used (no fio: dd in parallel)
# While it works it writes the stage it is in to $SPOTRAIN_BOOT_DIR/stage (`data-s3`, `data-init`,
# `data-init 3/8`, `ready`), which the controller shows while it waits.
# Idempotent: run again, it finds each step done and leaves the same files behind.
set -euo pipefail

BOOT_DIR="${SPOTRAIN_BOOT_DIR:-/opt/spotrain}"
DEV_DIR="${SPOTRAIN_DEV_DIR:-/dev}"
DATA_S3="${SPOTRAIN_DATA_S3:-}"
DATA_DEVICE="${SPOTRAIN_DATA_DEVICE:-$DEV_DIR/sdf}"
AWS="${SPOTRAIN_AWS:-aws}"
MOUNT="${SPOTRAIN_MOUNT:-mount}"
MOUNTPOINT="${SPOTRAIN_MOUNTPOINT:-mountpoint}"
NVME="${SPOTRAIN_NVME:-nvme}"
NVIDIA_SMI="${SPOTRAIN_NVIDIA_SMI:-nvidia-smi}"
CHOWN="${SPOTRAIN_CHOWN:-chown}"
FIO="${SPOTRAIN_FIO:-fio}"
BLOCKDEV="${SPOTRAIN_BLOCKDEV:-blockdev}"
TORCH_PIP="${SPOTRAIN_TORCH_PIP:-}"
VENV="${SPOTRAIN_VENV:-$BOOT_DIR/venv}"
BASE_PYTHONS="${SPOTRAIN_BASE_PYTHONS:-python3.12 python3.11 python3.10}"
GPUS="${SPOTRAIN_GPUS:-0}"
LOGIN_USER="${SPOTRAIN_LOGIN_USER:-ubuntu}"
READY="$BOOT_DIR/ready"
DETACHED_BUCKET="${SPOTRAIN_DETACHED_BUCKET:-}"
DETACHED_RUN="${SPOTRAIN_DETACHED_RUN:-}"
DETACHED_REGION="${SPOTRAIN_DETACHED_REGION:-us-east-1}"

# A detached run's bundle (trainer/ and onboard/), unpacked from the run's prefix with the image's boto3.
FETCH_BUNDLE='
import io, sys, tarfile, boto3
bucket, key, dest, region = sys.argv[1:]
body = boto3.client("s3", region_name=region).get_object(Bucket=bucket, Key=key)["Body"].read()
with tarfile.open(fileobj=io.BytesIO(body)) as tar:
    # the data filter refuses links and paths out of dest (Python 3.12, and backported to 3.8.17+)
    tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
'

# Does torch see the GPUs, and does it carry kernels for them? A cubin for sm_XY runs on a GPU of the
# same major version and minor >= Y (so sm_86 kernels run an Ada sm_89); PTX for compute_XY is JIT-
# compiled for any GPU of XY or newer (NVIDIA's CUDA compatibility guide).
TORCH_CHECK='
import sys
want = int(sys.argv[1])
try:
    import torch
except Exception as err:
    sys.exit(f"import torch failed: {err}")
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)")
count = torch.cuda.device_count()
if count < want:
    sys.exit(f"torch {torch.__version__} sees {count} of the {want} GPUs")
archs = torch.cuda.get_arch_list()
def runs(arch, major, minor):
    kind, _, digits = arch.partition("_")
    digits = digits.rstrip("abcdefghijklmnopqrstuvwxyz")
    if not digits.isdigit() or len(digits) < 2:
        return False
    a_major, a_minor = int(digits[:-1]), int(digits[-1])
    if kind == "sm":
        return a_major == major and a_minor <= minor
    return kind == "compute" and (a_major, a_minor) <= (major, minor)
for i in range(count):
    major, minor = torch.cuda.get_device_capability(i)
    if not any(runs(a, major, minor) for a in archs):
        sys.exit(f"torch {torch.__version__} has no kernels for sm_{major}{minor} (GPU {i}, "
                 f"{torch.cuda.get_device_name(i)}); its arch list is {archs}")
print(f"torch {torch.__version__} sees {count} GPUs, sm_{major}{minor}, arch list {archs}")
'

log() { printf '%s bootstrap: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$BOOT_DIR/bootstrap.log"; }
fail() { log "FAILED: $*"; printf '%s\n' "$*" >"$BOOT_DIR/failed"; exit 1; }
stage() { printf '%s\n' "$*" >"$BOOT_DIR/stage.tmp"; mv -f "$BOOT_DIR/stage.tmp" "$BOOT_DIR/stage"; log "stage: $*"; }

# The PyTorch DLAMIs keep torch in /opt/pytorch; older ones in a conda env.
pick_python() {
  local candidate
  for candidate in "${SPOTRAIN_PYTHON:-}" /opt/pytorch/bin/python /opt/conda/envs/pytorch/bin/python; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  return 1
}

# An image without PyTorch (the proprietary-driver base image for Volta): a venv with the pinned
# torch, built once per instance; a rerun with the same requirements finds it done.
install_torch() {
  local done_marker="$BOOT_DIR/torch.done" base="" candidate
  if [ -f "$done_marker" ] && [ "$(cat "$done_marker")" = "$TORCH_PIP" ] && [ -x "$VENV/bin/python" ]; then
    log "torch venv already at $VENV"
    return 0
  fi
  for candidate in $BASE_PYTHONS; do
    if command -v "$candidate" >/dev/null 2>&1; then
      base="$(command -v "$candidate")"
      break
    fi
  done
  [ -n "$base" ] || fail "no Python to build the torch venv from (looked for: $BASE_PYTHONS)"
  "$base" -m venv "$VENV" || fail "cannot create a venv at $VENV with $base"
  # shellcheck disable=SC2086  # TORCH_PIP is a list of requirements, one word each
  "$VENV/bin/python" -m pip install --quiet --no-cache-dir $TORCH_PIP >>"$BOOT_DIR/bootstrap.log" 2>&1 ||
    fail "cannot install $TORCH_PIP into $VENV (see bootstrap.log)"
  printf '%s\n' "$TORCH_PIP" >"$done_marker"
  log "installed $TORCH_PIP into $VENV"
}

check_gpus() {
  local python="$1" listed count out
  listed="$("$NVIDIA_SMI" -L 2>&1)" ||
    fail "nvidia-smi failed, so the NVIDIA driver is not running these GPUs: $(printf '%s' "$listed" | head -c 300)"
  count="$(printf '%s\n' "$listed" | grep -c '^GPU ' || true)"
  [ "$count" -ge "$GPUS" ] || fail "nvidia-smi lists $count GPUs, but this instance type has $GPUS"
  out="$("$python" -c "$TORCH_CHECK" "$GPUS" 2>&1)" || fail "$(printf '%s' "$out" | tail -n 1)"
  log "gpus: $out"
}

# The trainer runs as the login user, so the data directory must be theirs (a recipe that downloads
# its own data writes there). A read-only snapshot is left as it is.
own() {
  if id "$LOGIN_USER" >/dev/null 2>&1; then
    "$CHOWN" -R "$LOGIN_USER:" "$1" || fail "cannot give $1 to $LOGIN_USER"
  fi
}

default_data_dir() {
  if [ -d /opt/dlami/nvme ]; then echo /opt/dlami/nvme/data; else echo /data; fi
}

# On Nitro instances /dev/sdf shows up as /dev/nvmeXn1; the NVMe controller's vendor data names it.
find_device() {
  local dev short="${DATA_DEVICE##*/}"
  for dev in "$DATA_DEVICE" "$DEV_DIR/xvd${short#sd}"; do
    if [ -e "$dev" ]; then
      printf '%s\n' "$dev"
      return 0
    fi
  done
  for dev in "$DEV_DIR"/nvme*n1; do
    [ -e "$dev" ] || continue
    if "$NVME" id-ctrl -v "$dev" 2>/dev/null | grep -q "$short"; then
      printf '%s\n' "$dev"
      return 0
    fi
  done
  return 1
}

mount_snapshot() {
  local data_dir="$1" dev
  if "$MOUNTPOINT" -q "$data_dir"; then
    log "data volume already mounted at $data_dir"
    if dev="$(find_device)"; then initialize "$dev"; fi  # a run cut short before it finished reading
    return 0
  fi
  dev="$(find_device)" || return 1
  mkdir -p "$data_dir"
  "$MOUNT" -o ro,noatime "$dev" "$data_dir" || fail "cannot mount $dev at $data_dir"
  log "mounted $dev read-only at $data_dir"
  initialize "$dev"
}

device_bytes() {
  if [ -b "$1" ]; then "$BLOCKDEV" --getsize64 "$1"; else stat -c %s "$1"; fi
}

# A volume made from a snapshot fetches each block from S3 the first time it is read, so the first
# epoch would crawl; AWS advises reading every block once before use, with fio, in parallel (EBS User
# Guide, "Initialize Amazon EBS volumes"). Without fio: dd of 8 slices at once. Once per instance: the
# seconds it took are kept and go in the ready marker.
initialize() {
  local dev="$1" done_marker="$BOOT_DIR/data-init.done" start bytes slice i done_count=0 pids=()
  [ -f "$done_marker" ] && return 0
  stage "data-init"
  start="$(date +%s)"
  if command -v "$FIO" >/dev/null 2>&1; then
    "$FIO" --filename="$dev" --rw=read --bs=1M --iodepth=32 --ioengine=libaio --direct=1 \
      --name=volume-initialize >>"$BOOT_DIR/bootstrap.log" 2>&1 || fail "cannot read $dev ahead with $FIO"
  else
    bytes="$(device_bytes "$dev")" || fail "cannot read the size of $dev"
    slice=$(((bytes / 1048576 + 8) / 8))  # MiB a slice, rounded up
    for i in 0 1 2 3 4 5 6 7; do
      dd if="$dev" of=/dev/null bs=1M skip=$((i * slice)) count="$slice" status=none &
      pids+=("$!")
    done
    for i in "${pids[@]}"; do
      wait "$i" || fail "cannot read $dev ahead with dd"
      done_count=$((done_count + 1))
      stage "data-init $done_count/8"
    done
  fi
  printf '%s\n' "$(($(date +%s) - start))" >"$done_marker"
  log "read $dev ahead in $(cat "$done_marker") s"
}

download() {
  local data_dir="$1" done_marker="$BOOT_DIR/data-s3.done"
  if [ -f "$done_marker" ] && [ "$(cat "$done_marker")" = "$DATA_S3" ]; then
    log "data from $DATA_S3 already in $data_dir"
    return 0
  fi
  mkdir -p "$data_dir"
  stage "data-s3"
  "$AWS" s3 sync --only-show-errors "$DATA_S3" "$data_dir" || fail "cannot copy $DATA_S3 to $data_dir"
  own "$data_dir"
  printf '%s\n' "$DATA_S3" >"$done_marker"
  log "copied $DATA_S3 to $data_dir"
}

# The instance belongs to a detached run: its supervisor (spotrain/onboard/supervisor.py) runs the run
# from here, as the login user where there is one, in its own session so that cloud-init's run of this
# script ends. Started once: a second run of this script finds it alive.
start_supervisor() {
  local python="$1" bundle="$BOOT_DIR/bundle" run_dir pid_file="$BOOT_DIR/supervisor.pid"
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    log "supervisor already running"
    return
  fi
  stage "detached-bundle"
  rm -rf "$bundle.tmp"
  "$python" -c "$FETCH_BUNDLE" "$DETACHED_BUCKET" "runs/$DETACHED_RUN/detached/bundle.tar.gz" \
    "$bundle.tmp" "$DETACHED_REGION" || fail "cannot fetch the bundle of run $DETACHED_RUN from s3://$DETACHED_BUCKET"
  rm -rf "$bundle" && mv "$bundle.tmp" "$bundle"
  run_dir="$BOOT_DIR/runs/$DETACHED_RUN"
  mkdir -p "$run_dir"
  own "$bundle"
  own "$run_dir"
  local as_user=()
  if [ "$(id -u)" = 0 ] && id -u "$LOGIN_USER" >/dev/null 2>&1; then
    as_user=(runuser -u "$LOGIN_USER" --)
  fi
  stage "detached"
  (
    cd "$bundle"
    setsid nohup "${as_user[@]}" "$python" -m onboard.supervisor --bucket "$DETACHED_BUCKET" \
      --run-id "$DETACHED_RUN" --region "$DETACHED_REGION" --run-dir "$run_dir" \
      >>"$BOOT_DIR/supervisor.log" 2>&1 </dev/null &
    echo $! >"$pid_file"
  )
  log "supervisor started: pid $(cat "$pid_file")"
}

main() {
  mkdir -p "$BOOT_DIR"
  log "start"
  local python data_dir source tmp
  if [ -n "$TORCH_PIP" ]; then
    install_torch
    python="$VENV/bin/python"
  else
    python="$(pick_python)" || fail "no PyTorch environment (/opt/pytorch/bin/python or conda's pytorch env)"
  fi
  if [ "$GPUS" -gt 0 ]; then
    check_gpus "$python"
  fi
  data_dir="${SPOTRAIN_DATA_DIR:-$(default_data_dir)}"
  if [ -n "$DATA_S3" ]; then
    download "$data_dir"
    source="$DATA_S3"
  elif mount_snapshot "$data_dir"; then
    source="snapshot"
  else
    mkdir -p "$data_dir"
    own "$data_dir"
    source="none"
    log "no data source: the recipe downloads its own data into $data_dir"
  fi
  tmp="$READY.tmp"
  {
    printf 'SPOTRAIN_PYTHON=%s\n' "$python"
    printf 'SPOTRAIN_DATA=%s\n' "$data_dir"
    printf 'SPOTRAIN_DATA_SOURCE=%s\n' "$source"
    if [ "$source" = snapshot ] && [ -f "$BOOT_DIR/data-init.done" ]; then
      printf 'SPOTRAIN_DATA_INIT_S=%s\n' "$(cat "$BOOT_DIR/data-init.done")"
    fi
  } >"$tmp"
  stage "ready"
  mv -f "$tmp" "$READY"
  rm -f "$BOOT_DIR/failed"
  log "ready: $(tr '\n' ' ' <"$READY")"
  if [ -n "$DETACHED_BUCKET" ]; then
    start_supervisor "$python"
  fi
}

main "$@"
