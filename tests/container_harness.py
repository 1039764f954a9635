"""Build and run `servekit build docker` output with podman, on a machine with no image registry.

Everything this kind of machine needs lives here, never in the user's Dockerfile:
- a base image made from Debian's packages (debootstrap) and imported into podman, passed as
  `BASE_IMAGE`; its python3 is the host's 3.11, with a venv on PATH (Debian's pip refuses to
  install into the system Python: PEP 668). Cached: the podman image, and the rootfs tarball
  under ~/.cache/servekit-test/ (or $SERVEKIT_TEST_CACHE), so only the first run debootstraps;
- a containers.conf named by CONTAINERS_CONF: runc, and ulimits the VM lets runc set;
- pip inside the build: the host CA bundle bind-mounted over the image's, the host's proxies
  and pip index settings (with their local folders mounted read-only) in a mounted /etc/pip.conf.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx
import pytest

RELEASE = "bookworm"  # the host's release: its python3 is 3.11, the version the test models are pickled with
PACKAGES = ("python3", "python3-venv", "ca-certificates")
VENV = "/opt/venv"
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's path, which Debian's pip reads by default
RECIPE_ID = hashlib.sha256(f"{RELEASE} {PACKAGES} {VENV} {PATH} v1".encode()).hexdigest()[:12]
BASE_IMAGE = f"localhost/servekit-test-base:{RELEASE}"
BASE_LABEL = "org.servekit.test-base"
MIRROR = os.environ.get("SERVEKIT_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
TOOLS = ("podman", "runc", "debootstrap", "chroot", "tar")
CONTAINERS_CONF = """\
[containers]
# runc cannot raise the limits above what this VM allows (error setting rlimit type 7)
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"  # no systemd here
events_logger = "file"
"""
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
PIP_SOURCES = ("index-url", "extra-index-url", "find-links")


def cache_dir() -> Path:
    folder = os.environ.get("SERVEKIT_TEST_CACHE")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = Path(folder) if folder else base / "servekit-test"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin")


def _free_space() -> str:
    """Free disk where podman stores layers and where builds unpack: a full disk shows as a closed pipe."""
    places = ("/var/lib/containers/storage", tempfile.gettempdir())
    free = []
    for place in places:
        try:
            free.append(f"{place} {shutil.disk_usage(place).free / 2**30:.1f} GiB")
        except OSError:
            continue
    return "free disk: " + ", ".join(free) if free else "free disk: unknown"


def require_tools() -> None:
    """Skip (fail under CI) unless podman, runc and debootstrap are here and we are root."""
    problems = [f"{tool} is not installed" for tool in TOOLS if _which(tool) is None]
    if os.geteuid() != 0:
        problems.append("not root (debootstrap and this podman setup need root)")
    if problems:
        message = "; ".join(problems) + ": run scripts/ensure-container-tools as root"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@dataclass
class Podman:
    """podman with the test's containers.conf."""

    env: dict[str, str]

    @classmethod
    def configured(cls, folder: Path) -> Podman:
        conf = folder / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        return cls(env={**os.environ, "CONTAINERS_CONF": str(conf)})

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True, log: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [_which("podman") or "podman", *args]
        if log is not None:
            with log.open("w") as out:
                result = subprocess.run(
                    command, env=self.env, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout
                )
            result.stdout = log.read_text(errors="replace")
        else:
            result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            output = (result.stdout or "")[-4000:] + (result.stderr or "")[-4000:]
            raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{output}\n{_free_space()}")
        return result

    def inspect(self, name: str) -> dict[str, Any]:
        return json.loads(self("container", "inspect", name).stdout)[0]


# ---------------------------------------------------------------- the base image


def ensure_base_image(podman: Podman) -> str:
    """The local Debian base image, imported from the cached rootfs tarball (made first if missing)."""
    from filelock import FileLock

    cache = cache_dir()
    with FileLock(str(cache / "base.lock"), timeout=1200):
        found = podman("image", "inspect", "--format", f'{{{{index .Labels "{BASE_LABEL}"}}}}', BASE_IMAGE, check=False)
        if found.returncode == 0 and found.stdout.strip() == RECIPE_ID:
            return BASE_IMAGE
        tarball = cache / f"base-{RELEASE}-{RECIPE_ID}.tar"
        if not tarball.exists():
            _make_rootfs_tarball(tarball)
        changes = [f"ENV PATH={PATH}", f"ENV SSL_CERT_FILE={CA_BUNDLE}", f"LABEL {BASE_LABEL}={RECIPE_ID}"]
        changes.append('CMD ["/bin/bash"]')
        podman("import", *(arg for change in changes for arg in ("--change", change)), str(tarball), BASE_IMAGE)
    return BASE_IMAGE


def _make_rootfs_tarball(tarball: Path) -> None:
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    log = tarball.with_suffix(".log")
    try:
        with log.open("w") as out:
            command = [_which("debootstrap") or "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}"]
            _run([*command, RELEASE, str(rootfs), MIRROR], out, timeout=900)
            _run([_which("chroot") or "chroot", str(rootfs), "/usr/bin/python3", "-m", "venv", VENV], out, timeout=120)
        for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftovers).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=300)
        partial.rename(tarball)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise AssertionError(f"could not make the base rootfs ({exc}):\n{log.read_text()[-4000:]}") from exc
    finally:
        _unmount_below(rootfs)  # debootstrap mounts /proc and /sys inside; an interrupted run may leave them
        shutil.rmtree(rootfs, ignore_errors=True)


def _run(command: list[str], out: Any, *, timeout: float) -> None:
    out.write(f"$ {' '.join(command)}\n")
    out.flush()
    subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=timeout)


def _unmount_below(folder: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{folder}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


# ---------------------------------------------------------------- network settings for pip in the build


def host_ca_bundle() -> Path:
    candidates = [os.environ.get(name) for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
    candidates += [ssl.get_default_verify_paths().cafile, CA_BUNDLE]
    return next(Path(c) for c in candidates if c and Path(c).is_file())


def host_pip_sources() -> dict[str, list[str]]:
    """index-url, extra-index-url and find-links from the host's pip configuration and environment."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    sources: dict[str, list[str]] = {}
    for line in listed.stdout.splitlines():  # `section.key='value'`; the environment's `:env:.` lines come last
        key, _, value = line.partition("=")
        option = key.rpartition(".")[2]
        if option in PIP_SOURCES and value:
            sources[option] = str(ast.literal_eval(value)).split()
    return sources


def _local_folder(source: str, option: str) -> Path | None:
    """The folder to mount for a local index or find-links entry (None for a remote one)."""
    if source.startswith("file:"):
        path = Path(url2pathname(urlparse(source).path))
    elif "://" not in source:
        path = Path(source)
    else:
        return None
    # A local simple index links to files beside it (`../files/...`): mount the folder holding it.
    return path.parent if option != "find-links" and path.name == "simple" else path


def build_options(work: Path) -> list[str]:
    """`podman build` options that let pip reach its index from inside the build, set nowhere else."""
    options = ["-v", f"{host_ca_bundle()}:{CA_BUNDLE}:ro"]
    options += [
        arg for name in PROXY_VARIABLES if os.environ.get(name) for arg in ("--build-arg", f"{name}={os.environ[name]}")
    ]
    lines, mounted = ["[global]", f"cert = {CA_BUNDLE}"], set()
    for option, values in host_pip_sources().items():
        kept = []
        for value in values:
            folder = _local_folder(value, option)
            if folder is None:
                kept.append(value)
            elif folder.exists():
                kept.append(value)
                mounted.add(folder)
        if kept:
            lines.append(f"{option} = {' '.join(kept)}")
    pip_conf = work / "pip.conf"
    pip_conf.write_text("\n".join(lines) + "\n")
    options += ["-v", f"{pip_conf}:/etc/pip.conf:ro"]
    for folder in sorted(mounted):
        options += ["-v", f"{folder}:{folder}:ro"]
    return options


# ---------------------------------------------------------------- build, run, wait


def build_image(podman: Podman, context: Path, tag: str, *, base: str, work: Path) -> None:
    """`podman build` of a rendered context on the local base; no intermediate images are left."""
    podman(
        "build",
        "--format=docker",  # keeps the HEALTHCHECK (OCI images drop it)
        "--layers=false",
        "--pull=never",
        "--build-arg",
        f"BASE_IMAGE={base}",
        *build_options(work),
        "-t",
        tag,
        str(context),
        timeout=900,
        log=work / "build.log",
    )


def run_container(podman: Podman, image: str, name: str, port: int) -> None:
    podman(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"127.0.0.1:{port}:8080",
        "--stop-timeout",
        "40",
        "--health-interval=disable",  # no systemd timer here; `podman healthcheck run` still works
        image,
    )


def wait_ready(podman: Podman, name: str, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = podman.inspect(name)["State"]
        if not state["Running"]:
            raise AssertionError(f"the container exited {state['ExitCode']}:\n{logs(podman, name)}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the container did not become ready:\n{logs(podman, name)}")


def logs(podman: Podman, name: str) -> str:
    result = podman("logs", name, check=False)
    return result.stdout + result.stderr


def remove(podman: Podman, *, container: str, image: str) -> None:
    """Remove what a test made (never the cached base image)."""
    podman("rm", "-f", "-t", "0", container, check=False)
    podman("rmi", "-f", image, check=False)
