"""The chaos run's own servers, in a temporary folder, on ports of their own.

PostgreSQL (initdb + pg_ctl, run as the `postgres` user because PostgreSQL
refuses root) and Redis (appendonly yes) are started here and can be
stopped, frozen and restarted without touching the machine's shared
servers. RabbitMQ is the machine's, with a vhost of the run's own, created
and deleted with rabbitmqctl: a second RabbitMQ node is too heavy for a
2-core machine, and a vhost isolates queues, exchanges and messages.

Given a `Tls` (a certificate for localhost and the CA that signed it), the
PostgreSQL and Redis servers speak TLS only: PostgreSQL accepts `hostssl`
connections alone, Redis listens on a TLS port and on no plaintext one
(tests/system/test_tls.py).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """The processes `pid` started."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in out.split()]


def signal_pids(pids: list[int], sig: int) -> None:
    """Send `sig` to each process that still exists."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait(what: str, ready, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout_s:g} s")


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass(frozen=True)
class Tls:
    """PEM files: a server certificate for localhost and 127.0.0.1, its key, and the CA that signed it."""

    ca_path: Path
    certificate_path: Path
    key_path: Path


# Encrypted connections only: no `host` line, so a plaintext one matches no
# entry and is refused; the Unix socket stays for pg_ctl.
_TLS_ONLY_HBA = """\
local all all trust
hostssl all all 127.0.0.1/32 trust
hostssl all all ::1/128 trust
"""


class Postgres:
    def __init__(self, folder: Path, tls: Tls | None = None):
        self.bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
        self.data = folder / "pgdata"
        self.port = free_port()
        self.tls = tls
        # A certificate names a host: verify-full compares it with the one in the URL.
        host = "localhost" if tls else "127.0.0.1"
        self.url = f"postgresql+psycopg://postgres@{host}:{self.port}/rewards_chaos"
        self.read_url = self.url  # one server: the read side reads from it too
        self.log = folder / "postgres.log"

    def url_with(self, **libpq_options: str) -> str:
        """The URL with libpq options, e.g. sslmode="verify-full", sslrootcert="/ca.pem"."""
        return f"{self.url}?{urlencode(libpq_options)}"

    def _run(self, *args: str) -> None:
        subprocess.run(_as_postgres() + [str(self.bin / args[0]), *args[1:]], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> None:
        self.data.parent.chmod(0o755)
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        if self.tls:
            self._install_tls()
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "rewards_chaos")

    def _install_tls(self) -> None:
        # PostgreSQL refuses a key that others may read; the server user owns both files.
        for source, name in ((self.tls.certificate_path, "server.crt"), (self.tls.key_path, "server.key")):
            target = self.data / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if os.geteuid() == 0:
                shutil.chown(target, "postgres", "postgres")
        (self.data / "pg_hba.conf").write_text(_TLS_ONLY_HBA)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=on"
        if self.tls:
            # Relative paths are read from the data folder.
            options += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def pids(self) -> list[int]:
        """The postmaster and every backend: all of them must stop for the server to freeze."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        return [postmaster, *children(postmaster)]

    def signal_all(self, sig: int) -> None:
        signal_pids(self.pids(), sig)

    def cleanup(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.signal_all(signal.SIGCONT)
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass


class Redis:
    def __init__(self, folder: Path, tls: Tls | None = None):
        self.folder = folder
        self.port = free_port()
        self.tls = tls
        self.process: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        if self.tls:
            # The query parameters kombu (broker), Celery (result backend) and
            # redis-py (from_url) all read; the host must match the certificate.
            return (f"rediss://localhost:{self.port}/{db}?ssl_cert_reqs=required"
                    f"&ssl_ca_certs={self.tls.ca_path}")
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _listen_options(self) -> list[str]:
        if not self.tls:
            return ["--port", str(self.port)]
        # --port 0: no plaintext listener at all. Clients need no certificate
        # of their own (tls-auth-clients no); they verify the server's.
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.certificate_path),
                "--tls-key-file", str(self.tls.key_path), "--tls-ca-cert-file", str(self.tls.ca_path),
                "--tls-auth-clients", "no"]

    def start(self) -> None:
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", *self._listen_options(), "--bind", "127.0.0.1", "--dir", str(self.folder),
                 "--appendonly", "yes", "--save", ""], stdout=log, stderr=subprocess.STDOUT)
        _wait("Redis", self._ping)

    def _ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url(0), socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """A clean shutdown: the append-only file is written, queued jobs survive the restart."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)

    def cleanup(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class RabbitVhost:
    def __init__(self, name: str):
        self.name = name
        self.url = f"amqp://guest:guest@127.0.0.1:5672/{name}"

    def create(self) -> None:
        subprocess.run(["rabbitmqctl", "add_vhost", self.name], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"],
                       check=True, capture_output=True)

    def close_connections(self, reason: str) -> None:
        """The node closes every client connection of this vhost, as it does when it shuts down."""
        subprocess.run(["rabbitmqctl", "-q", "close_all_connections", "--vhost", self.name, reason],
                       check=True, capture_output=True)

    def queued_messages(self, queues: tuple[str, ...]) -> int:
        """Ready plus unacknowledged messages in these queues of the vhost."""
        out = subprocess.run(["rabbitmqctl", "list_queues", "-q", "-p", self.name, "name", "messages"],
                             check=True, capture_output=True, text=True).stdout
        total = 0
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] in queues:
                total += int(parts[1])
        return total

    def cleanup(self) -> None:
        subprocess.run(["rabbitmqctl", "delete_vhost", self.name], capture_output=True)
