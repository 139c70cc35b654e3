"""infra/bootstrap.sh's GPU check and torch venv, in a temporary root (see test_bootstrap.py).

torch is a fake module on PYTHONPATH that answers what a real one would on the instance (from
FAKE_TORCH), and nvidia-smi is a fake that lists GPUs or fails as it does when the driver is not loaded;
the check itself is the script's own Python, run by a real interpreter."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import pytest

from .test_bootstrap import _exe, calls, root, run  # noqa: F401 (root: the fixture gpu_root builds on)

FAKE_TORCH = """import json, os
_s = json.loads(os.environ["FAKE_TORCH"])
__version__ = _s.get("version", "2.6.0+cu124")
class cuda:
    is_available = staticmethod(lambda: _s["available"])
    device_count = staticmethod(lambda: _s["count"])
    get_arch_list = staticmethod(lambda: _s["archs"])
    get_device_capability = staticmethod(lambda i: tuple(_s["cc"]))
    get_device_name = staticmethod(lambda i: _s.get("name", "Tesla V100-SXM2-16GB"))
"""
FAKE_SMI = """#!/usr/bin/env bash
if [ -n "${FAKE_SMI_FAIL:-}" ]; then echo "$FAKE_SMI_FAIL"; exit 9; fi
for i in $(seq 0 $((FAKE_GPUS - 1))); do echo "GPU $i: Tesla V100-SXM2-16GB (UUID: GPU-$i)"; done
"""
# python3.10 -m venv DIR makes DIR/bin/python: pip calls are logged, anything else runs this Python.
FAKE_BASE_PYTHON = f"""#!/usr/bin/env bash
[ "$1 $2" = "-m venv" ] || exit 2
mkdir -p "$3/bin"
cat >"$3/bin/python" <<'PY'
#!/usr/bin/env bash
if [ "$1 $2" = "-m pip" ]; then echo "pip ${{*:3}}" >>"$CALLS"; exit 0; fi
exec {sys.executable} "$@"
PY
chmod +x "$3/bin/python"
echo "venv $3" >>"$CALLS"
"""
CUDA12_ARCHS = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
CUDA13_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


@pytest.fixture
def gpu_root(root: Path) -> Path:  # noqa: F811
    (root / "site" / "torch").mkdir(parents=True)
    (root / "site" / "torch" / "__init__.py").write_text(FAKE_TORCH)
    _exe(root / "bin" / "nvidia-smi", FAKE_SMI)
    _exe(root / "bin" / "python3.10", FAKE_BASE_PYTHON)
    _exe(root / "bin" / "chown", '#!/usr/bin/env bash\necho "chown $*" >>"$CALLS"\n')
    return root


def boot(tmp: Path, torch: dict | None = None, gpus: int = 8, **env: str):
    torch = {"available": True, "count": gpus, "cc": [7, 0], "archs": CUDA12_ARCHS, **(torch or {})}
    full = {
        "SPOTRAIN_PYTHON": sys.executable,
        "PYTHONPATH": str(tmp / "site"),
        "FAKE_TORCH": json.dumps(torch),
        "FAKE_GPUS": str(gpus),
        "SPOTRAIN_GPUS": str(gpus),
        "SPOTRAIN_NVIDIA_SMI": str(tmp / "bin" / "nvidia-smi"),
        "SPOTRAIN_CHOWN": str(tmp / "bin" / "chown"),
        **env,
    }
    return run(tmp, **full)


def failed(tmp: Path) -> str:
    assert not (tmp / "boot" / "ready").exists(), "a failed check must not leave the ready marker"
    return (tmp / "boot" / "failed").read_text()


def test_eight_v100s_and_a_torch_with_sm_70_are_ready(gpu_root: Path) -> None:
    done = boot(gpu_root)
    assert done.returncode == 0, done.stderr + (gpu_root / "boot" / "bootstrap.log").read_text()
    assert (gpu_root / "boot" / "ready").exists()
    assert "sees 8 GPUs, sm_70" in (gpu_root / "boot" / "bootstrap.log").read_text()


def test_a_torch_without_sm_70_on_a_v100_is_a_failure_with_the_reason(gpu_root: Path) -> None:
    done = boot(gpu_root, {"version": "2.11.0+cu130", "archs": CUDA13_ARCHS})
    assert done.returncode == 1
    reason = failed(gpu_root)
    assert "2.11.0+cu130 has no kernels for sm_70" in reason and "sm_75" in reason


def test_the_oss_driver_on_a_v100_fails_at_nvidia_smi(gpu_root: Path) -> None:
    msg = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    done = boot(gpu_root, FAKE_SMI_FAIL=msg)
    assert done.returncode == 1
    reason = failed(gpu_root)
    assert reason.startswith("nvidia-smi failed") and "couldn't communicate" in reason


@pytest.mark.parametrize(
    ("torch", "needle"),
    [
        ({"available": False}, "torch.cuda.is_available() is False"),
        ({"count": 4}, "sees 4 of the 8 GPUs"),
    ],
)
def test_torch_that_does_not_see_every_gpu_fails(gpu_root: Path, torch: dict, needle: str) -> None:
    assert boot(gpu_root, torch).returncode == 1
    assert needle in failed(gpu_root)


def test_an_ada_gpu_runs_the_sm_86_kernels_and_ptx_counts(gpu_root: Path) -> None:
    assert boot(gpu_root, {"cc": [8, 9], "archs": ["sm_80", "sm_86", "sm_90"]}, gpus=1).returncode == 0
    (gpu_root / "boot" / "ready").unlink()
    assert boot(gpu_root, {"cc": [12, 1], "archs": ["sm_90", "compute_120"]}, gpus=1).returncode == 0
    (gpu_root / "boot" / "ready").unlink()
    assert boot(gpu_root, {"cc": [8, 0], "archs": ["sm_86", "sm_90"]}, gpus=1).returncode == 1


def test_no_gpu_check_when_no_gpus_are_expected(gpu_root: Path) -> None:
    assert boot(gpu_root, {"available": False}, gpus=0).returncode == 0


def test_an_image_without_torch_gets_the_pinned_venv_once(gpu_root: Path) -> None:
    pins = "torch==2.6.0 torchvision==0.21.0 numpy"
    env = {"SPOTRAIN_TORCH_PIP": pins, "SPOTRAIN_BASE_PYTHONS": "python3.99 python3.10"}
    env["PATH"] = f"{gpu_root / 'bin'}:/usr/bin:/bin"
    first = boot(gpu_root, **env)
    assert first.returncode == 0, first.stderr + (gpu_root / "boot" / "bootstrap.log").read_text()
    venv = gpu_root / "boot" / "venv"
    assert f"SPOTRAIN_PYTHON={venv}/bin/python\n" in (gpu_root / "boot" / "ready").read_text()
    assert boot(gpu_root, **env).returncode == 0
    assert [c for c in calls(gpu_root) if c.startswith(("venv", "pip"))] == [
        f"venv {venv}",
        f"pip install --quiet --no-cache-dir {pins}",
    ]  # the rerun installed nothing


def test_the_data_directory_belongs_to_the_login_user(gpu_root: Path) -> None:
    me = getpass.getuser()
    assert boot(gpu_root, gpus=0, SPOTRAIN_LOGIN_USER=me).returncode == 0
    assert f"chown -R {me}: {gpu_root}/data" in calls(gpu_root)
    (gpu_root / "dev" / "sdf").touch()  # a read-only snapshot is left alone
    (gpu_root / "calls.log").unlink()
    (gpu_root / "data").rmdir()
    assert boot(gpu_root, gpus=0, SPOTRAIN_LOGIN_USER=me).returncode == 0
    assert not [c for c in calls(gpu_root) if c.startswith("chown")]
