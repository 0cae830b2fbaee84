"""The Debian 12 base of every local image, made with debootstrap from a
Debian mirror (no registry): minbase, no recommends, services never started
by package scripts, imported with `docker import`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .images import BASE_IMAGE, ImageError

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
APT_CONF = 'APT::Install-Recommends "0";\nAPT::Install-Suggests "0";\n'
# Package scripts must not start daemons while an image is being built.
POLICY_RC_D = "#!/bin/sh\nexit 101\n"
IMPORT_CHANGES = (
    'CMD ["/bin/bash"]',
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
)


def host_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this host's apt uses for bookworm, else deb.debian.org."""
    deb822 = sorted((apt_dir / "sources.list.d").glob("*.sources"))
    for path in deb822:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, flags=re.M))
            if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.is_file():
            for line in path.read_text().splitlines():
                words = [w for w in line.split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                    return words[1]
    return DEFAULT_MIRROR


def build_base(mirror: str, report=print) -> None:
    if os.geteuid() != 0:
        raise ImageError("debootstrap needs root: run `prefectstack images build` as root")
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="prefectstack-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        report(f"debootstrap {SUITE} from {mirror}")
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log = (result.stdout + result.stderr).strip().splitlines()[-20:]
            raise ImageError("debootstrap failed:\n" + "\n".join(log))
        (rootfs / "etc/apt/apt.conf.d/90prefectstack").write_text(APT_CONF)
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text(POLICY_RC_D)
        policy.chmod(0o755)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        changes = [arg for change in IMPORT_CHANGES for arg in ("-c", change)]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", *changes, "-", BASE_IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise ImageError(f"docker import failed: {imported.stderr.strip()}")
