"""What browser (WebRTC) agents need from Asterisk beyond pjsip.conf: the certificates made at
setup (DTLS for the calls' media, TLS for wss://) and the ICE host-candidate mapping that lets
a browser on the same machine reach Asterisk over 127.0.0.1 (ADR 0030)."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from ioc_core.config import ConfigError

# Under the state folder's etc/, which AsteriskProcess binds over the chroot's /etc/asterisk
# (and chowns to the asterisk user, so the 0600 keys stay readable by Asterisk alone).
KEYS_DIR = Path("etc") / "keys"
IN_ASTERISK = "/etc/asterisk/keys"
DTLS, WSS = "dtls", "wss"  # <name>.crt + <name>.key

_SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address


def host_ipv4_addresses() -> list[str]:
    """The machine's non-loopback IPv4 interface addresses (the chroot shares the host's
    network, so these are the host candidates Asterisk's ICE gathers)."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, request)
            except OSError:  # down, or no IPv4 address
                continue
            address = socket.inet_ntoa(answer[20:24])
            if not ipaddress.ip_address(address).is_loopback and address not in found:
                found.append(address)
    return found


def ice_host_candidates(addresses: Iterable[str]) -> str:
    """rtp.conf's `[ice_host_candidates]` mapping each host address to 127.0.0.1: Asterisk
    never offers a loopback candidate by itself, and Chromium (with
    --allow-loopback-in-peer-connection) then finds a clean 127.0.0.1 pair. Empty when there
    is nothing to map."""
    lines = [f"{a} => 127.0.0.1" for a in addresses if not ipaddress.ip_address(a).is_loopback]
    return "[ice_host_candidates]\n" + "\n".join(lines) + "\n" if lines else ""


def ensure_certificates(state_dir: Path, *, names: Sequence[str] = ()) -> Path:
    """The setup step that makes the self-signed certificates Asterisk needs for browser agents,
    once: `dtls.crt/.key` (DTLS-SRTP; browsers check the fingerprint in the SDP, not a CA) and
    `wss.crt/.key` (the wss:// port; `names` are its subject alternative names besides
    localhost and 127.0.0.1). Replace wss.crt/wss.key with a certificate the agents' browsers
    trust and they are kept (only missing ones are made). Returns the folder."""
    keys = state_dir / KEYS_DIR
    keys.mkdir(parents=True, exist_ok=True)
    alt = ["DNS:localhost", "IP:127.0.0.1"]
    for name in names:
        entry = _alt_name(name)
        if entry and entry not in alt:
            alt.append(entry)
    for kind, subject, days, extra in (
        (DTLS, "/CN=IOC Hub DTLS", 3650, []),
        (WSS, "/CN=IOC Hub Asterisk", 825, ["-addext", "subjectAltName=" + ",".join(alt)]),
    ):
        if not ((keys / f"{kind}.crt").exists() and (keys / f"{kind}.key").exists()):
            _self_signed(keys, kind, subject, days, extra)
    return keys


def _alt_name(name: str) -> str:
    name = name.strip()
    if not name or ipaddress.ip_address(name if _is_ip(name) else "127.0.0.1").is_unspecified:
        return ""
    try:
        return f"IP:{ipaddress.ip_address(name)}"
    except ValueError:
        return f"DNS:{name}"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _self_signed(keys: Path, kind: str, subject: str, days: int, extra: list[str]) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ConfigError(
            "openssl is needed to make the browser agents' certificates (apt-get install openssl)"
        )
    # Made in a private folder and moved into place: the key is never readable by others,
    # and a failed run leaves no half pair behind.
    with tempfile.TemporaryDirectory(dir=keys) as tmp:
        crt, key = Path(tmp) / f"{kind}.crt", Path(tmp) / f"{kind}.key"
        done = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-days", str(days), "-subj", subject, *extra,
             "-keyout", str(key), "-out", str(crt)],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise ConfigError(f"openssl could not make the {kind} certificate: {done.stderr}")
        key.chmod(0o600)
        crt.chmod(0o644)
        os.replace(key, keys / key.name)
        os.replace(crt, keys / crt.name)


def copy_certificates(state_dir: Path, target: Path) -> None:
    """The certificates beside a configuration rendered elsewhere (`ioc asterisk render DIR`:
    the production container mounts DIR at /etc/asterisk, so they land in /etc/asterisk/keys)."""
    source = state_dir / KEYS_DIR
    (target / "keys").mkdir(parents=True, exist_ok=True)
    for kind in (DTLS, WSS):
        for suffix in (".crt", ".key"):
            src, dst = source / f"{kind}{suffix}", target / "keys" / f"{kind}{suffix}"
            with contextlib.suppress(FileNotFoundError):
                dst.unlink()
            shutil.copy2(src, dst)
