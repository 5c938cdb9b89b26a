"""The failover runs' servers: PostgreSQL under Patroni on three "machines" of one host, and Redis under Sentinel.

Each machine is an etcd member and a Patroni that runs a PostgreSQL of its
own, in a folder of its own, on ports of its own. Losing a machine is losing
all three processes at once (SIGKILL), hanging one is stopping all three
(SIGSTOP), so the etcd quorum, the leader key and the replication stream are
lost together, as they are when a host dies.

Patroni with etcd rather than pg_auto_failover: pg_auto_failover decides
failovers in one monitor node, which is itself a single machine (a lost
monitor leaves the cluster without failover until it is rebuilt); Patroni
keeps its leader key in etcd, whose three members survive the loss of any
one, so no machine is special. etcd is Debian's; Patroni is PyPI's (the
Makefile's PATRONI_VERSION): Debian's 3.0.2 lets a primary that hung past
the leader key's TTL write the key back when it resumes, and the standby
promoted meanwhile is rewound with the commits it acknowledged.

Replication is synchronous and strict (`synchronous_mode_strict`): the
primary acknowledges a commit only once a standby has it, and Patroni
promotes only that standby. A worker acknowledges its job after the commit,
so an acknowledged reward is on two machines. With `synchronous=False` the
same cluster replicates asynchronously, to show what that loses.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

from chaos.servers import children, free_port, signal_pids

# Patroni from the Makefile's venv (see PATRONI_VERSION there for why not Debian's).
PATRONI = Path(__file__).resolve().parents[1] / ".venv" / "patroni" / "bin" / "patroni"
SCOPE = "rewards-ha"
DATABASE = "rewards_chaos"


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class Machine:
    """One host of the cluster: an etcd member and a Patroni with its PostgreSQL."""

    name: str
    folder: Path
    etcd_client_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)
    etcd: subprocess.Popen | None = None
    patroni: subprocess.Popen | None = None

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_peer_port}"

    @property
    def pg_data(self) -> Path:
        return self.folder / "pgdata"

    def start_etcd(self, initial_cluster: str) -> None:
        # The member's data folder decides: a machine that comes back rejoins the cluster it left.
        state = "existing" if (self.folder / "etcd").exists() else "new"
        with (self.folder / "etcd.log").open("ab") as log:
            self.etcd = subprocess.Popen(
                ["etcd", "--name", self.name, "--data-dir", str(self.folder / "etcd"),
                 "--listen-client-urls", f"http://127.0.0.1:{self.etcd_client_port}",
                 "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_client_port}",
                 "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                 "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
                 "--initial-cluster-token", SCOPE, "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT)

    def start_patroni(self, config: dict) -> None:
        path = self.folder / "patroni.json"
        path.write_text(json.dumps(config, indent=2))  # YAML is a superset of JSON
        with (self.folder / "patroni.log").open("ab") as log:
            self.patroni = subprocess.Popen(_as_postgres() + [str(PATRONI), str(path)],
                                            stdout=log, stderr=subprocess.STDOUT)

    def pids(self) -> list[int]:
        """Every process of the machine: etcd, Patroni, and the postmaster and its backends (Patroni
        starts PostgreSQL in a session of its own, so it outlives Patroni unless killed too)."""
        pids = [p.pid for p in (self.etcd, self.patroni) if p and p.poll() is None]
        pids += [child for pid in pids for child in children(pid)]  # runuser's patroni
        postmaster = self._postmaster()
        if postmaster:
            pids += [postmaster, *children(postmaster)]
        return pids

    def wal_senders(self) -> list[int]:
        """The primary's WAL sender processes, one per standby streaming from it."""
        postmaster = self._postmaster()
        if not postmaster:
            return []
        out = subprocess.run(["pgrep", "-P", str(postmaster), "-f", "walsender"], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def _postmaster(self) -> int | None:
        pid_file = self.pg_data / "postmaster.pid"
        return int(pid_file.read_text().split()[0]) if pid_file.exists() else None

    def signal_all(self, sig: int) -> None:
        signal_pids(self.pids(), sig)

    def state(self) -> dict:
        """Patroni's view of this member (role, state, lag), or {} when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/patroni", timeout=2) as answer:
                return json.load(answer)
        except (OSError, ValueError):
            return {}


class PatroniCluster:
    def __init__(self, folder: Path, synchronous: bool = True, size: int = 3):
        self.folder = folder
        self.synchronous = synchronous
        self.machines = [Machine(f"pg{n}", folder / f"pg{n}") for n in range(1, size + 1)]
        # The engine's URLs: writes go to whichever host is the primary, reads prefer a standby.
        self.url = self._url(self.machines, "read-write")
        self.read_url = self._url(self.machines, "prefer-standby")

    @staticmethod
    def _url(machines: list[Machine], session_attrs: str) -> str:
        hosts = "&".join(f"host=127.0.0.1:{m.pg_port}" for m in machines)
        return f"postgresql+psycopg://postgres@/{DATABASE}?{hosts}&target_session_attrs={session_attrs}"

    def read_url_from(self, first: Machine) -> str:
        """The read URL with `first` tried first: libpq opens a read connection there while it is a standby."""
        return self._url([first, *(m for m in self.machines if m is not first)], "prefer-standby")

    def sync_standby(self) -> Machine | None:
        """The standby a failover would promote now (None with asynchronous replication)."""
        members = self.members()
        return next((m for m in self.machines if members.get(m.name, {}).get("role") == "sync_standby"), None)

    # ---- setting up ------------------------------------------------------------
    def _config(self, machine: Machine) -> dict:
        postgres = {"username": "postgres"}
        return {
            "scope": SCOPE, "name": machine.name,
            "restapi": {"listen": f"127.0.0.1:{machine.api_port}", "connect_address": f"127.0.0.1:{machine.api_port}"},
            "etcd3": {"hosts": [f"127.0.0.1:{m.etcd_client_port}" for m in self.machines]},
            "log": {"level": "WARNING"},
            "bootstrap": {
                # A lost primary's leader key expires after ttl (Patroni's least, 20 s); the loop
                # runs every second.
                "dcs": {"ttl": 20, "loop_wait": 1, "retry_timeout": 5, "maximum_lag_on_failover": 1048576,
                        "synchronous_mode": self.synchronous, "synchronous_mode_strict": self.synchronous,
                        "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                       "parameters": {"wal_log_hints": "on", "max_connections": 200}}},
                "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{machine.pg_port}", "connect_address": f"127.0.0.1:{machine.pg_port}",
                "data_dir": str(machine.pg_data), "bin_dir": str(_bin_dir()),
                "pgpass": str(machine.folder / "pgpass"),
                "authentication": {"superuser": postgres, "replication": postgres, "rewind": postgres},
                "parameters": {"unix_socket_directories": str(machine.folder)},
                "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 trust",
                           "host replication all 127.0.0.1/32 trust"],
            },
        }

    def init(self) -> None:
        """Start every machine, wait for a primary with its standbys, create the run's database."""
        if not PATRONI.exists():
            raise RuntimeError(f"{PATRONI} is missing: `make .venv/patroni/bin/patroni` installs it")
        self.folder.chmod(0o755)
        initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.machines)
        for machine in self.machines:
            machine.folder.mkdir()
            machine.start_etcd(initial_cluster)
        for machine in self.machines:
            self._own_by_postgres(machine)
            machine.start_patroni(self._config(machine))
        self.wait_until_healthy(timeout_s=120)
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.primary().pg_port), "-U", "postgres",
                        "-qc", f"CREATE DATABASE {DATABASE}"], check=True, capture_output=True)

    def _own_by_postgres(self, machine: Machine) -> None:
        if os.geteuid() == 0:
            shutil.chown(machine.folder, "postgres", "postgres")

    def restart(self, machine: Machine) -> None:
        """The machine comes back: etcd rejoins, Patroni rewinds the old primary and follows the new one."""
        machine.start_etcd(",".join(f"{m.name}={m.peer_url}" for m in self.machines))
        machine.start_patroni(self._config(machine))

    def cleanup(self) -> None:
        for machine in self.machines:
            machine.signal_all(signal.SIGCONT)
            machine.signal_all(signal.SIGKILL)
        for machine in self.machines:
            for process in (machine.etcd, machine.patroni):
                if process:
                    process.wait(10)

    # ---- observing -------------------------------------------------------------
    def primary(self) -> Machine | None:
        for machine in self.machines:
            state = machine.state()
            if state.get("role") == "primary" and state.get("state") == "running":
                return machine
        return None

    def members(self, via: Machine | None = None) -> dict[str, dict]:
        """The cluster as its DCS says (Patroni's /cluster): name -> role, state, lag; {} when none answers.

        Roles are "leader", "sync_standby" (the standbys a failover may
        promote) and "replica". `via` is asked first: a machine that has
        just resumed answers from the view it had when it stopped.
        """
        for machine in ([via] if via else []) + [m for m in self.machines if m is not via]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{machine.api_port}/cluster", timeout=2) as answer:
                    return {member["name"]: member for member in json.load(answer)["members"]}
            except (OSError, ValueError, KeyError):
                continue
        return {}

    def layout(self, via: Machine | None = None) -> str:
        """Who is what: "pg1 leader running, pg2 sync_standby streaming, pg3 replica streaming"."""
        members = self.members(via)
        return ", ".join(f"{m.name} " + (f"{members[m.name]['role']} {members[m.name]['state']}"
                                         if m.name in members else "absent") for m in self.machines)

    def leader(self, via: Machine | None = None) -> str | None:
        """The machine holding the leader key, as the DCS says."""
        return next((name for name, member in self.members(via).items() if member["role"] == "leader"), None)

    def healthy(self, via: Machine | None = None) -> bool:
        """A running leader, every other machine streaming from it, and (synchronous) one of them
        recorded as the synchronous standby: the one a failover would promote."""
        members = self.members(via)
        if len(members) != len(self.machines):
            return False
        roles = [(member["role"], member["state"]) for member in members.values()]
        standbys = [role for role, state in roles if role != "leader" and state == "streaming"]
        return (roles.count(("leader", "running")) == 1 and len(standbys) == len(self.machines) - 1
                and ("sync_standby" in standbys or not self.synchronous))

    def wait_until_healthy(self, timeout_s: float, via: Machine | None = None) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.healthy(via):
                return time.monotonic() - started
            time.sleep(0.5)
        raise RuntimeError(f"the Patroni cluster was not healthy within {timeout_s:g} s: "
                           + "; ".join(f"{m.name} {m.state() or 'silent'}" for m in self.machines))

    def wait_for_primary_other_than(self, old: Machine, timeout_s: float) -> Machine:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            primary = self.primary()
            if primary is not None and primary is not old:
                return primary
            time.sleep(0.2)
        raise RuntimeError(f"no machine took over from {old.name} within {timeout_s:g} s")

    def logs(self, lines: int = 15) -> str:
        out = []
        for machine in self.machines:
            for name in ("patroni.log", "etcd.log"):
                path = machine.folder / name
                if path.exists():
                    tail = path.read_text(errors="replace").splitlines()[-lines:]
                    out.append(f"--- {machine.name} {name} (last lines):\n" + "\n".join(tail))
        return "\n".join(out)


def _bin_dir() -> Path:
    return Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])


class SentinelRedis:
    """A Redis master, two replicas and three Sentinels (quorum 2) on free ports; the master's name is `rewards`.

    Each server keeps an append-only file in a folder of its own; Sentinel
    marks the master down after 1 s without an answer and promotes a replica.
    """

    MASTER_NAME = "rewards"

    def __init__(self, folder: Path):
        self.folder = folder
        self.ports = [free_port() for _ in range(3)]  # the first starts as the master
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[int, subprocess.Popen] = {}

    def url(self, db: int) -> str:
        return ";".join(f"sentinel://127.0.0.1:{port}/{db}" for port in self.sentinel_ports)

    def start(self) -> None:
        for port in self.ports:
            replica_of = [] if port == self.ports[0] else ["--replicaof", "127.0.0.1", str(self.ports[0])]
            self._run(port, ["--port", str(port), "--appendonly", "yes", "--save", "", *replica_of])
        for port in self.sentinel_ports:
            config = self.folder / f"sentinel-{port}.conf"
            config.write_text(f"port {port}\nbind 127.0.0.1\n"
                              f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {self.ports[0]} 2\n"
                              f"sentinel down-after-milliseconds {self.MASTER_NAME} 1000\n"
                              f"sentinel failover-timeout {self.MASTER_NAME} 10000\n")
            self._run(port, [str(config), "--sentinel"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (self.master_port() == self.ports[0] and self._replicas_known() == len(self.ports) - 1
                    and self._replicas_online(self.ports[0]) == len(self.ports) - 1):
                return
            time.sleep(0.2)
        raise RuntimeError("the Sentinels did not see the master and its synced replicas within 30 s")

    @staticmethod
    def _replicas_online(master_port: int) -> int:
        try:
            info = redis.Redis(port=master_port, socket_timeout=1).info("replication")
        except redis.RedisError:
            return 0
        return sum(1 for key, value in info.items() if key.startswith("slave") and value.get("state") == "online")

    def restart(self, port: int) -> None:
        """A lost server comes back, from its append-only file; Sentinel makes it a replica of the master."""
        self._run(port, ["--port", str(port), "--appendonly", "yes", "--save", ""])

    def wait_until_replicated(self, master_port: int, timeout_s: float) -> None:
        """Until every other server streams from `master_port` again."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._replicas_online(master_port) == len(self.ports) - 1:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the Redis servers did not all replicate from :{master_port} within {timeout_s:g} s")

    def _run(self, port: int, args: list[str]) -> None:
        folder = self.folder / f"redis-{port}"
        folder.mkdir(exist_ok=True)
        with (folder / "redis.log").open("ab") as log:
            self.processes[port] = subprocess.Popen(["redis-server", *args, "--bind", "127.0.0.1",
                                                     "--dir", str(folder)], stdout=log, stderr=subprocess.STDOUT)

    def _sentinel(self, command: str, *args: str):
        for port in self.sentinel_ports:
            try:
                return redis.Redis(port=port, socket_timeout=1, decode_responses=True).execute_command(
                    command, *args)
            except redis.RedisError:
                continue
        return None

    def master_port(self) -> int | None:
        """The master's port as the Sentinels say."""
        address = self._sentinel("SENTINEL", "get-master-addr-by-name", self.MASTER_NAME)
        return int(address[1]) if address else None

    def _replicas_known(self) -> int:
        replicas = self._sentinel("SENTINEL", "replicas", self.MASTER_NAME) or []
        return sum(not replica.get("is_sdown") for replica in replicas)  # redis-py parses each into a dict

    def kill(self, port: int) -> None:
        self.processes[port].kill()
        self.processes[port].wait(10)

    def signal(self, port: int, sig: int) -> None:
        self.processes[port].send_signal(sig)

    def wait_for_master_other_than(self, port: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            master = self.master_port()
            if master is not None and master != port:
                return master
            time.sleep(0.2)
        raise RuntimeError(f"Sentinel promoted no replica of {port} within {timeout_s:g} s")

    def cleanup(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait(10)


@dataclass
class RabbitNode:
    """One RabbitMQ node of the cluster, on ports of its own, with its data in a folder of its own."""

    name: str  # Erlang node name, e.g. rewards-chaos-0-1234@localhost
    folder: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {"HOME": "/var/lib/rabbitmq",  # where the Erlang cookie the nodes and rabbitmqctl share lives
                "RABBITMQ_NODENAME": self.name, "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.folder / "log"), "RABBITMQ_PID_FILE": str(self.folder / "pid"),
                "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.folder / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins")}


class RabbitCluster:
    """Three RabbitMQ nodes clustered on one host, with a vhost for the run; clients get a failover URL.

    Debian's RabbitMQ, run as its `rabbitmq` user (whose Erlang cookie lets
    the nodes and rabbitmqctl talk), each node in a process group of its
    own: losing a node is SIGKILLing its group. The job queues are quorum
    queues (rewards.contract): a publish is confirmed once a majority of the
    nodes has it, and a queue whose leader is lost elects another.
    """

    def __init__(self, folder: Path, name: str):
        self.name = name  # the vhost
        self.folder = folder / "rabbitmq"
        self.nodes = [RabbitNode(f"rewards-chaos-{i}-{os.getpid()}@localhost", self.folder / f"node-{i}")
                      for i in range(3)]

    @property
    def url(self) -> str:
        """kombu's failover URL: a client whose node is lost connects to the next one."""
        return ";".join(f"amqp://guest:guest@127.0.0.1:{node.port}/{self.name}" for node in self.nodes)

    def create(self) -> None:
        self.folder.mkdir(parents=True)
        self.folder.chmod(0o755)
        self.folder.parent.chmod(0o755)  # the rabbitmq user walks through the run's folder
        for node in self.nodes:
            node.folder.mkdir()
            (node.folder / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{node.port}\n")
            (node.folder / "enabled_plugins").write_text("[].\n")
            # A quorum queue's counts (list_queues) are refreshed every tick, 5 s by
            # default; the run waits on them, so they are kept within 100 ms.
            (node.folder / "advanced.config").write_text("[{rabbit, [{quorum_tick_interval, 100}]}].\n")
            if os.geteuid() == 0:
                for path in (node.folder, *node.folder.iterdir()):
                    shutil.chown(path, "rabbitmq", "rabbitmq")
            self.start(node)
        for node in self.nodes:
            self._await_startup(node, timeout_s=120)
        for node in self.nodes[1:]:
            for command in (("stop_app",), ("join_cluster", self.nodes[0].name), ("start_app",)):
                self._ctl(node, *command)
        self._ctl(self.nodes[0], "add_vhost", self.name)
        self._ctl(self.nodes[0], "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def start(self, node: RabbitNode) -> None:
        """Start (or restart) a node; a restarted node rejoins the cluster it was in."""
        as_rabbitmq = ["runuser", "-u", "rabbitmq", "--"] if os.geteuid() == 0 else []
        with (node.folder / "server.log").open("ab") as log:
            node.process = subprocess.Popen([*as_rabbitmq, "env", *[f"{k}={v}" for k, v in node.env().items()],
                                             "/usr/lib/rabbitmq/bin/rabbitmq-server"], cwd="/var/lib/rabbitmq",
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _await_startup(self, node: RabbitNode, timeout_s: float) -> None:
        """Until the node runs RabbitMQ (rabbitmqctl fails at once while the node is not yet registered)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._ctl(node, "await_startup", timeout_s=timeout_s)
                return
            except RuntimeError:
                if node.process.poll() is not None or time.monotonic() > deadline:
                    log = (node.folder / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"RabbitMQ node {node.name} did not start:\n{log}") from None
                time.sleep(0.5)

    def _ctl(self, node: RabbitNode, *args: str, timeout_s: float = 60) -> str:
        done = subprocess.run(["rabbitmqctl", "-q", "-n", node.name, *args], capture_output=True, text=True,
                              timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)}: {done.stderr.strip() or done.stdout}")
        return done.stdout

    def running(self) -> list[RabbitNode]:
        return [node for node in self.nodes if node.process and node.process.poll() is None]

    def running_nodes(self, via: RabbitNode) -> set[str]:
        """The nodes `via` sees running in the cluster."""
        status = json.loads(self._ctl(via, "cluster_status", "--formatter", "json"))
        return set(status["running_nodes"])

    def queue_leaders(self) -> dict[str, str]:
        """Each queue of the vhost and the node that leads it, as a running node says."""
        out = self._ctl(self.running()[0], "list_queues", "-p", self.name, "name", "leader", "--formatter", "json")
        return {row["name"]: row["leader"] for row in json.loads(out)}

    def queued_messages(self, queues: tuple[str, ...]) -> int:
        """Ready plus unacknowledged messages in these queues of the vhost."""
        out = self._ctl(self.running()[0], "list_queues", "-p", self.name, "name", "messages", "--formatter", "json")
        return sum(row["messages"] for row in json.loads(out) if row["name"] in queues)

    def node(self, name: str) -> RabbitNode:
        return next(node for node in self.nodes if node.name == name)

    def kill(self, node: RabbitNode) -> None:
        os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait(30)

    def wait_for_leader_other_than(self, queue: str, lost: RabbitNode, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                leader = self.queue_leaders().get(queue)
            except (RuntimeError, subprocess.TimeoutExpired):
                leader = None
            if leader and leader != lost.name:
                return leader
            time.sleep(0.2)
        raise RuntimeError(f"no node took the lead of {queue} from {lost.name} within {timeout_s:g} s")

    def wait_until_running(self, node: RabbitNode, timeout_s: float) -> None:
        """Until `node` is up and every node sees the whole cluster running again."""
        self._await_startup(node, timeout_s)
        names = {n.name for n in self.nodes}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.running_nodes(n) == names for n in self.nodes):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{node.name} did not rejoin the cluster within {timeout_s:g} s")

    def cleanup(self) -> None:
        for node in self.running():
            os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(30)
