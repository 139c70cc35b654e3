#!/usr/bin/env bash
# spotrain's user data for a PyTorch Deep Learning AMI: pick the PyTorch environment, prepare the
# data directory, then write the ready marker the controller waits for (over SSH: `test -f READY`).
#
# The controller prepends `export NAME=value` lines for the run; everything has a default, and every
# path and outside command can be overridden so a test can run this in a temporary root:
#   SPOTRAIN_BOOT_DIR     state, log and markers              /opt/spotrain
#   SPOTRAIN_DATA_DIR     where the trainer reads its data    /opt/dlami/nvme/data, else /data
#   SPOTRAIN_DATA_S3      s3://... to copy into the data dir  (none)
#   SPOTRAIN_DATA_DEVICE  the snapshot volume's device        /dev/sdf (or its NVMe name)
#   SPOTRAIN_DEV_DIR      where devices are looked up         /dev
#   SPOTRAIN_PYTHON       the Python to train with            /opt/pytorch/bin/python, else conda's
#   SPOTRAIN_AWS, SPOTRAIN_MOUNT, SPOTRAIN_MOUNTPOINT, SPOTRAIN_NVME   the commands used
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
READY="$BOOT_DIR/ready"

log() { printf '%s bootstrap: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$BOOT_DIR/bootstrap.log"; }
fail() { log "FAILED: $*"; printf '%s\n' "$*" >"$BOOT_DIR/failed"; exit 1; }

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
    return 0
  fi
  dev="$(find_device)" || return 1
  mkdir -p "$data_dir"
  "$MOUNT" -o ro,noatime "$dev" "$data_dir" || fail "cannot mount $dev at $data_dir"
  log "mounted $dev read-only at $data_dir"
}

download() {
  local data_dir="$1" done_marker="$BOOT_DIR/data-s3.done"
  if [ -f "$done_marker" ] && [ "$(cat "$done_marker")" = "$DATA_S3" ]; then
    log "data from $DATA_S3 already in $data_dir"
    return 0
  fi
  mkdir -p "$data_dir"
  "$AWS" s3 sync --only-show-errors "$DATA_S3" "$data_dir" || fail "cannot copy $DATA_S3 to $data_dir"
  printf '%s\n' "$DATA_S3" >"$done_marker"
  log "copied $DATA_S3 to $data_dir"
}

main() {
  mkdir -p "$BOOT_DIR"
  log "start"
  local python data_dir source tmp
  python="$(pick_python)" || fail "no PyTorch environment (/opt/pytorch/bin/python or conda's pytorch env)"
  data_dir="${SPOTRAIN_DATA_DIR:-$(default_data_dir)}"
  if [ -n "$DATA_S3" ]; then
    download "$data_dir"
    source="$DATA_S3"
  elif mount_snapshot "$data_dir"; then
    source="snapshot"
  else
    mkdir -p "$data_dir"
    source="none"
    log "no data source: the recipe downloads its own data into $data_dir"
  fi
  tmp="$READY.tmp"
  {
    printf 'SPOTRAIN_PYTHON=%s\n' "$python"
    printf 'SPOTRAIN_DATA=%s\n' "$data_dir"
    printf 'SPOTRAIN_DATA_SOURCE=%s\n' "$source"
  } >"$tmp"
  mv -f "$tmp" "$READY"
  rm -f "$BOOT_DIR/failed"
  log "ready: $(tr '\n' ' ' <"$READY")"
}

main "$@"
