"""Private servers for the platform-fault tests: a redis-server, a RabbitMQ node and a
PostgreSQL cluster of the test's own, on free ports, so restarting them disturbs nobody
else."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.processes import free_port, wait_until


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class PrivateRedis:
    """redis-server without persistence: a restart loses every key, like a crash."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: _accepts(self.port), 20, f"redis on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, down_s: float = 2.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def rabbitmq_sbin() -> Path | None:
    """The folder of RabbitMQ's own start scripts, or None when it is not installed.

    Debian's /usr/sbin/rabbitmq-server and rabbitmqctl are a wrapper that, run as root,
    switches to the system ``rabbitmq`` user (its HOME, its Erlang cookie): a private node
    needs the scripts behind it, run as us with a HOME of our own.
    """
    found = sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("rabbitmq-server")
    if on_path is None:
        return None
    real = Path(on_path).resolve()
    return real.parent if real.name == "rabbitmq-server" else None


class PrivateRabbitMQ:
    """A RabbitMQ node of the test's own: own node name, ports, data, logs and cookie.

    Nothing is read from /etc/rabbitmq (the machine's node name and listener live there)
    and no plugin is enabled. The node registers with the machine's epmd under a unique
    name, which disturbs no other node.

    :meth:`crash` SIGKILLs the node's process group — the Erlang VM and the start script —
    rather than ``rabbitmqctl stop``: a crash gives no client a clean close and the node no
    chance to flush, so after the restart RabbitMQ must recover its durable queues and
    persistent messages from disk, which is the harder case to survive.
    """

    def __init__(self, folder: Path):
        sbin = rabbitmq_sbin()
        if sbin is None:
            raise RuntimeError("rabbitmq-server is not installed")
        self.sbin = sbin
        self.folder = folder
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"scep-test-{self.port}@localhost"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        f = self.folder
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(f / "home"),  # the Erlang cookie of this node and its rabbitmqctl
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(f / "mnesia"),
            RABBITMQ_LOG_BASE=str(f / "log"),
            RABBITMQ_PID_FILE=str(f / "node.pid"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(f / "plugins-expand"),
            RABBITMQ_CONF_ENV_FILE=str(f / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(f / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(f / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(f / "enabled_plugins"),
        )
        return env

    def _prepare(self) -> None:
        (self.folder / "home").mkdir(parents=True, exist_ok=True)
        empty = {"rabbitmq-env.conf": "", "rabbitmq.conf": "", "advanced.config": "[].\n",
                 "enabled_plugins": "[].\n"}  # fmt: skip
        for name, text in empty.items():
            (self.folder / name).write_text(text)

    def ctl(self, *argv: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.sbin / "rabbitmqctl"), "-n", self.node, *argv],
            env=self.env(), capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def log(self) -> str:
        path = self.folder / "log" / f"{self.node}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def start(self, timeout: float = 120) -> None:
        self._prepare()
        with (self.folder / "server.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [str(self.sbin / "rabbitmq-server")],
                env=self.env(), cwd=self.folder, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

        def listening() -> bool:
            assert self.proc.poll() is None, f"RabbitMQ node exited:\n{self.log()}"
            return _accepts(self.port)

        wait_until(listening, timeout, f"RabbitMQ {self.node} on port {self.port}", poll=0.2)
        ready = self.ctl("await_startup", "--timeout", str(int(timeout)), timeout=timeout + 30)
        assert ready.returncode == 0, f"{ready.stdout}{ready.stderr}\n{self.log()}"

    def crash(self) -> None:
        """SIGKILL the whole node (start script and Erlang VM) and wait until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        wait_until(lambda: not _accepts(self.port), 10, f"RabbitMQ on port {self.port} gone")

    def restart(self, down_s: float = 2.0) -> None:
        self.crash()
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        self.crash()


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (initdb as user postgres) with trust auth."""

    def __init__(self, folder: Path):
        self.bin = postgres_bin()
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()

    def _as_postgres(self, *argv: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                          "--no-sync")  # fmt: skip
        self.start()

    def _ctl(self, action: str, *extra: str) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=200")  # fmt: skip
        self._as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "60",
                          "-l", str(self.folder / "log"), action, *extra)  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop", "-m", "immediate")

    def createdb(self, name: str) -> None:
        self._as_postgres("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                          name)  # fmt: skip
