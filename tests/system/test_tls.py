"""TLS to every server, on loopback, with a certificate authority this module makes.

openssl makes a throwaway CA and a certificate for localhost/127.0.0.1;
chaos/servers.py starts a PostgreSQL that accepts `hostssl` connections
only and a Redis with a TLS port and no plaintext one, in a temporary
folder on free ports. A real `celery -A workers worker` applies a check-in
sent through RewardsClient over `sslmode=verify-full` and `rediss://` URLs,
which it reads from files (REWARDS_DATABASE_URL_FILE and friends, as
Docker secrets provide them); then the servers are asked whether those
connections were encrypted. A client trusting another CA, or none, is
refused. Flower reads its password from a file as well.

RabbitMQ over TLS (amqps://) is not started here: the suite shares the
machine's one RabbitMQ node, and a second node is too heavy for it;
docs/security.md ("Secrets and TLS") lists the settings.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import kombu
import pytest
import redis
from celery import Celery
from celery.backends.redis import RedisBackend
from sqlalchemy import exc, text

from chaos import servers
from rewards import contract, db
from tests.support.processes import REPO_ROOT, WorkerProcess, start_process, wait_until

pytestmark = pytest.mark.system

PARTNER_ID = 5_100_000_001
START_TIMEOUT_S = 60
RESULT_TIMEOUT_S = 60
FLOWER_USER, FLOWER_PASSWORD = "operator", "flower-tls-password"


@dataclass(frozen=True)
class Certificates:
    server: servers.Tls
    # A CA that signed nothing these servers present: trusting it must fail.
    other_ca_path: Path


def _openssl(*args: str, cwd: Path) -> None:
    made = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert made.returncode == 0, f"openssl {' '.join(args)} failed:\n{made.stderr}"


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1", "-subj", f"/CN=rewards {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return folder / f"{name}.pem", folder / f"{name}.key"


def make_certificates(folder: Path) -> Certificates:
    """A CA, a server certificate it signs for localhost and 127.0.0.1, and an unrelated CA."""
    if shutil.which("openssl") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "openssl"], check=True, capture_output=True)
    ca_path, ca_key_path = _make_ca(folder, "test-ca")
    other_ca_path, _ = _make_ca(folder, "other-ca")
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=folder)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", ca_path.name, "-CAkey", ca_key_path.name,
             "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "server.ext", cwd=folder)
    return Certificates(servers.Tls(ca_path, folder / "server.pem", folder / "server.key"), other_ca_path)


@dataclass
class TlsServers:
    folder: Path
    certificates: Certificates
    postgres: servers.Postgres
    redis: servers.Redis

    def database_url(self, ca_path: Path | None = None, sslmode: str = "verify-full") -> str:
        return self.postgres.url_with(sslmode=sslmode, sslrootcert=str(ca_path or self.certificates.server.ca_path))

    def redis_url(self, db_number: int, ca_path: Path | None = None) -> str:
        url = self.redis.url(db_number)
        return url.replace(str(self.certificates.server.ca_path), str(ca_path)) if ca_path else url


@pytest.fixture(scope="module")
def tls_servers() -> Iterator[TlsServers]:
    # Not pytest's tmp_path: its parents are private to root, and PostgreSQL runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="rewards-tls-"))
    folder.chmod(0o755)
    certificates = make_certificates(folder)
    postgres = servers.Postgres(folder, tls=certificates.server)
    redis_server = servers.Redis(folder, tls=certificates.server)
    try:
        postgres.init()
        redis_server.start()
        yield TlsServers(folder, certificates, postgres, redis_server)
    finally:
        postgres.cleanup()
        redis_server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def engine_environment(**variables: str) -> dict[str, str]:
    """This process's environment without the suite's server URLs, plus `variables`."""
    inherited = {name: value for name, value in os.environ.items()
                 if not name.startswith(("REWARDS_", "CELERY_", "FLOWER_"))}
    return inherited | variables


def secret_files(folder: Path, **values: str) -> dict[str, str]:
    """Write each value to a file readable by its owner only; returns NAME_FILE variables."""
    variables = {}
    for name, value in values.items():
        path = folder / f"{name.lower()}.secret"
        path.write_text(value + "\n")
        path.chmod(0o600)
        variables[f"{name}_FILE"] = str(path)
    return variables


def run_logged(command: list[str], env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)



@pytest.fixture(scope="module")
def tls_worker(tls_servers: TlsServers) -> Iterator[WorkerProcess]:
    """A migrated database and a worker that reaches both servers over verified TLS, its URLs in files."""
    migrated = run_logged([str(Path(sys.executable).parent / "rewards"), "db", "upgrade"],
                          engine_environment(REWARDS_DATABASE_URL=tls_servers.database_url()))
    assert migrated.returncode == 0, f"rewards db upgrade over verify-full failed:\n{migrated.stderr}"
    env = engine_environment(**secret_files(
        tls_servers.folder, REWARDS_DATABASE_URL=tls_servers.database_url(),
        CELERY_BROKER_URL=tls_servers.redis_url(0), CELERY_RESULT_BACKEND=tls_servers.redis_url(1)))
    command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", ",".join(contract.QUEUES),
               "-c", "1", "-P", "prefork", "-n", "tls@%h", "--loglevel=INFO"]
    worker = start_process("tls-worker", command, env, tls_servers.folder)
    try:
        yield worker
    finally:
        worker.kill(signal.SIGTERM)


def send_checkin(urls: tuple[str, str], worker: WorkerProcess) -> dict:
    """A check-in sent by RewardsClient in a producer process of its own; its result, awaited."""
    script = ("import json, sys\n"
              "from rewards.client import RewardsClient\n"
              "client = RewardsClient()\n"
              f"result = client.checkin({PARTNER_ID}, sys.argv[1]).get(timeout={RESULT_TIMEOUT_S})\n"
              "client.close()\n"
              "json.dump(result, sys.stdout)\n")
    now = datetime.now(timezone.utc).isoformat()
    env = engine_environment(CELERY_BROKER_URL=urls[0], CELERY_RESULT_BACKEND=urls[1])
    producer = subprocess.Popen([sys.executable, "-c", script, now], cwd=REPO_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Fails at once, with the worker's log, if the worker died meanwhile.
        wait_until(lambda: producer.poll() is not None, RESULT_TIMEOUT_S + 30, "the check-in's result",
                   workers=(worker,))
    finally:
        if producer.poll() is None:
            producer.kill()
    out, err = producer.communicate()
    assert producer.returncode == 0, f"the producer failed:\n{err}\n--- worker:\n{worker.log_tail()}"
    return json.loads(out)


def encrypted_backends(tls_servers: TlsServers) -> list[tuple[bool, str]]:
    """(ssl, TLS version) of every connection the engine holds, as PostgreSQL sees it."""
    query = ("select s.ssl, coalesce(s.version, '') from pg_stat_ssl s join pg_stat_activity a using (pid) "
             "where a.application_name = 'rewards'")
    with psycopg.connect(host="localhost", port=tls_servers.postgres.port, user="postgres",
                         dbname="rewards_chaos", sslmode="verify-full",
                         sslrootcert=str(tls_servers.certificates.server.ca_path)) as conn:
        return list(conn.execute(query).fetchall())


def test_a_worker_applies_a_checkin_over_verified_tls_to_postgres_and_redis(tls_servers, tls_worker):
    urls = (tls_servers.redis_url(0), tls_servers.redis_url(1))
    result = send_checkin(urls, tls_worker)
    assert result["status"] == "applied", result

    backends = encrypted_backends(tls_servers)
    assert backends, "the worker holds no connection to PostgreSQL"
    assert all(ssl and version.startswith("TLSv1.") for ssl, version in backends), backends

    server = redis.Redis.from_url(tls_servers.redis_url(0), socket_timeout=5)
    assert server.config_get("port") == {"port": "0"}, "Redis must have no plaintext listener"
    assert server.config_get("tls-port") == {"tls-port": str(tls_servers.redis.port)}
    # The worker's connections came in on the TLS port: there is no other.
    others = [client for client in server.client_list() if client["id"] != str(server.client_id())]
    assert others, "the worker holds no connection to Redis"


def test_a_client_trusting_another_ca_is_refused_by_verify_full(tls_servers):
    engine = db.make_engine(tls_servers.database_url(ca_path=tls_servers.certificates.other_ca_path))
    with pytest.raises(exc.OperationalError, match="certificate verify failed"):
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    engine.dispose()
    other_ca = tls_servers.redis_url(0, ca_path=tls_servers.certificates.other_ca_path)
    # The same URL as the broker (kombu), the result backend (Celery) and the
    # dead-letter list and leaderboards (redis-py) read it: each must verify.
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(other_ca, socket_timeout=5).ping()
    with pytest.raises(kombu.exceptions.OperationalError, match="certificate verify failed"):
        with kombu.Connection(other_ca, connect_timeout=5) as broker:
            broker.ensure_connection(max_retries=1)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        RedisBackend(app=Celery("tls-test"), url=other_ca).client.ping()


def test_a_plaintext_connection_is_refused(tls_servers):
    engine = db.make_engine(tls_servers.database_url(sslmode="disable"))
    with pytest.raises(exc.OperationalError, match="no pg_hba.conf entry .* no encryption"):
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    engine.dispose()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=tls_servers.redis.port, socket_timeout=5).ping()


def _flower_answers(port: int, credentials: str | None) -> int | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/workers")
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def test_flower_reads_its_password_and_broker_from_files(tls_servers):
    port = servers.free_port()
    env = engine_environment(**secret_files(
        tls_servers.folder, FLOWER_BASIC_AUTH=f"{FLOWER_USER}:{FLOWER_PASSWORD}",
        CELERY_BROKER_URL=tls_servers.redis_url(0), CELERY_RESULT_BACKEND=tls_servers.redis_url(1)))
    command = [sys.executable, "-m", "celery", "-A", "workers", "flower", "--address=127.0.0.1",
               f"--port={port}"]
    flower = start_process("flower", command, env, tls_servers.folder)
    try:
        wait_until(lambda: _flower_answers(port, None) is not None, START_TIMEOUT_S, "Flower to listen",
                   workers=(flower,))
        assert _flower_answers(port, None) == 401
        assert _flower_answers(port, f"{FLOWER_USER}:wrong") == 401
        assert _flower_answers(port, f"{FLOWER_USER}:{FLOWER_PASSWORD}") == 200
    finally:
        flower.kill(signal.SIGTERM)
