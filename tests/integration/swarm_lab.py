"""A three-node Docker Swarm on this one machine, for integration tests.

Each node is a dockerd in its own network namespace (with its own containerd, data root and
cgroup parent); a bridge in a "switch" namespace wires them together, and one more veth gives
the host (this test process) an address on the same private /24, so it reaches the nodes'
host-mode published ports. Everything the lab makes carries its random suffix, so teardown
removes exactly that and two labs never collide.

    lab = SwarmLab().start()              # or: with SwarmLab() as lab: ...
    lab.load_images(["mljobs-serve:latest"])
    lab.deploy(Path("deploy/swarm/stack.yaml"), "mljobs", env={...})
    lab.wait_tasks("mljobs_serve", 3)
    requests.get(lab.url(8000, "/ping"))  # a host-mode published port on node 1
    lab.docker(2, "ps")                   # the docker CLI against node 2
    lab.teardown()                        # always; raises if anything of the lab is left

In a test module: `swarm = swarm_lab_fixture(images=("mljobs-serve:latest",), needs=("built_images",))`.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pytest

PREFIX = "swarmlab"  # every namespace, cgroup and folder of a lab starts with PREFIX-<suffix>
HOST_LINK_PREFIX = "swl"  # the host-side veth: interface names are limited to 15 characters
SUBNET_BASE = "10.123"  # each lab takes one free 10.123.X.0/24
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class Node:
    """One swarm node: its namespace, address and the files of its dockerd."""

    index: int  # 1-based; node 1 is the manager
    netns: str
    address: str
    root: Path

    @property
    def hostname(self) -> str:
        return f"node{self.index}"  # what `docker node ls` and `{{.Node}}` show

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "docker.pid"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def cgroup_parent(self) -> str:
        return self.netns  # already unique per lab and node


class SwarmLabError(RuntimeError):
    """The lab could not be set up, or teardown left something behind."""


def run(*args: str, check: bool = True, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A command, its output captured as text; a failure raises with the command's stderr."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)
    if check and result.returncode != 0:
        raise SwarmLabError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def pid_alive(pid: int) -> bool:
    """Some thread of it still runs: a zombie is dead (an orphan's is reaped by pid 1, if at all),
    but a leader thread that is a zombie while its other threads still exit is not."""
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return True
        except OSError:  # that thread just went
            pass
    return False


@contextmanager
def labs_lock() -> Iterator[None]:
    """Held while a lab picks its subnet and creates its network, or while abandoned labs are reclaimed."""
    with open(Path(tempfile.gettempdir()) / f"{PREFIX}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class SwarmLab:
    """A private network of namespaces, one dockerd per node, and a swarm over them."""

    def __init__(self, nodes: int = 3, suffix: str | None = None):
        self.suffix = suffix or secrets.token_hex(3)
        self.name = f"{PREFIX}-{self.suffix}"
        self.root = Path(tempfile.gettempdir()) / self.name
        self.switch_netns = f"{self.name}-sw"
        self.host_link = f"{HOST_LINK_PREFIX}{self.suffix}"
        self.node_count = nodes
        self.subnet: str | None = None  # "10.123.X", chosen in start()
        self.nodes: list[Node] = []
        self.timings: dict[str, float] = {}
        self._daemons: list[subprocess.Popen[bytes]] = []

    # ---- set-up -------------------------------------------------------------------------

    def start(self) -> SwarmLab:
        """Network, daemons and swarm; whatever was made is torn down again if any step fails."""
        began = time.monotonic()
        try:
            # Under the lock, two labs starting at once never pick the same /24 nor reclaim each other.
            with labs_lock():
                self._reclaim_abandoned()
                self.root.mkdir(mode=0o700)
                (self.root / "owner").write_text(str(os.getpid()))
                self._create_network()
            self._start_daemons()
            self._form_swarm()
        except BaseException:
            self.teardown(check=False)
            raise
        self.timings["lab up"] = time.monotonic() - began
        return self

    def __enter__(self) -> SwarmLab:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.teardown()

    def _create_network(self) -> None:
        self.subnet = self._free_subnet()
        self.nodes = [Node(i, f"{self.name}-n{i}", f"{self.subnet}.{10 + i}", self.root / f"n{i}")
                      for i in range(1, self.node_count + 1)]
        sw = self.switch_netns
        # The bridge lives in its own namespace so the host's iptables (FORWARD DROP) never see it.
        run("ip", "netns", "add", sw)
        run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", sw, "link", "set", "br0", "up")
        for node in self.nodes:
            run("ip", "netns", "add", node.netns)
            run("ip", "-n", sw, "link", "add", f"n{node.index}", "type", "veth",
                "peer", "name", "eth0", "netns", node.netns)
            run("ip", "-n", sw, "link", "set", f"n{node.index}", "master", "br0", "up")
            run("ip", "-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "eth0")
            run("ip", "-n", node.netns, "link", "set", "eth0", "up")
            run("ip", "-n", node.netns, "link", "set", "lo", "up")
        # No default route in the nodes: a worker that tries a registry then fails fast.
        run("ip", "link", "add", self.host_link, "type", "veth", "peer", "name", "host", "netns", sw)
        run("ip", "-n", sw, "link", "set", "host", "master", "br0", "up")
        run("ip", "addr", "add", f"{self.subnet}.254/24", "dev", self.host_link)
        run("ip", "link", "set", self.host_link, "up")

    @staticmethod
    def _free_subnet() -> str:
        """A 10.123.X that no address or route on the host uses yet."""
        in_use = run("ip", "-o", "addr").stdout + run("ip", "route").stdout
        taken = {int(x) for x in re.findall(rf"\b{re.escape(SUBNET_BASE)}\.(\d+)\.", in_use)}
        free = [x for x in range(256) if x not in taken]
        if not free:
            raise SwarmLabError(f"no free {SUBNET_BASE}.X.0/24 on this host")
        return f"{SUBNET_BASE}.{random.choice(free)}"

    def _start_daemons(self) -> None:
        for node in self.nodes:
            node.root.mkdir()
            (node.root / "daemon.json").write_text("{}")  # never the host's /etc/docker/daemon.json
            log = node.log.open("wb")
            # Default process group on purpose: a runner that kills its group kills the daemons too.
            self._daemons.append(subprocess.Popen(
                ["nsenter", f"--net={NETNS_DIR / node.netns}",
                 "unshare", "--mount", "--uts", "--propagation", "slave", "sh", "-c", self._daemon_script(node)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
            log.close()
        for node, daemon in zip(self.nodes, self._daemons):
            self._wait_daemon(node, daemon)

    @staticmethod
    def _daemon_script(node: Node) -> str:
        stash = node.root / "cgroup-stash"
        dockerd = [
            "dockerd", "--config-file", str(node.root / "daemon.json"),
            "--data-root", str(node.root / "data"), "--exec-root", str(node.root / "exec"),
            "--pidfile", str(node.pidfile), "-H", f"unix://{node.socket}",
            "--cgroup-parent", f"/{node.cgroup_parent}", "--shutdown-timeout", "5",
        ]
        return "\n".join([
            "set -e",
            f"hostname {node.hostname}",
            # A fresh sysfs shows this namespace's network devices; the cgroup mounts are kept
            # (`ip netns exec` would leave /sys/fs/cgroup empty and dockerd fails).
            f"mkdir {stash}",
            f"mount --rbind /sys/fs/cgroup {stash}",
            "mount -t sysfs sysfs /sys",
            f"mount --rbind {stash} /sys/fs/cgroup",
            f"umount --recursive --lazy {stash}",  # so no cgroup tree is ever under the lab's folder
            # Hides the host's shim sockets and any system containerd: each node starts its own.
            "mkdir -p /run/containerd",
            "mount -t tmpfs tmpfs /run/containerd",
            # containerd dumps its stacks there when dockerd restarts it under load.
            f"mkdir {node.root / 'tmp'}",
            f"export TMPDIR={node.root / 'tmp'}",
            "exec " + " ".join(dockerd),
        ])

    def _wait_daemon(self, node: Node, daemon: subprocess.Popen[bytes], deadline_s: float = 60) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if daemon.poll() is not None:
                raise SwarmLabError(f"dockerd of {node.hostname} exited {daemon.returncode}:\n{self._log_tail(node)}")
            if self.docker(node.index, "version", check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.2)
        raise SwarmLabError(f"dockerd of {node.hostname} not answering after {deadline_s} s:\n{self._log_tail(node)}")

    @staticmethod
    def _log_tail(node: Node) -> str:
        try:
            return node.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def _form_swarm(self) -> None:
        manager = self.nodes[0]
        self.docker(1, "swarm", "init", "--advertise-addr", manager.address,
                    "--listen-addr", f"{manager.address}:2377")
        token = self.docker(1, "swarm", "join-token", "-q", "worker").stdout.strip()
        self._parallel([partial(self._join, node, token, manager.address) for node in self.nodes[1:]])
        # Every node, the manager included, accepts tasks (Swarm's default): three nodes, three replicas.
        self._wait_for(lambda: self.docker(1, "node", "ls", "--format", "{{.Status}} {{.Availability}}")
                       .stdout.split("\n").count("Ready Active") == len(self.nodes),
                       30, "nodes Ready")

    def _join(self, node: Node, token: str, manager_address: str) -> None:
        self.docker(node.index, "swarm", "join", "--token", token, "--advertise-addr", node.address,
                    "--listen-addr", f"{node.address}:2377", f"{manager_address}:2377")

    # ---- using the lab ------------------------------------------------------------------

    def node(self, node: int) -> Node:
        return self.nodes[node - 1]

    def docker(self, node: int, *args: str, check: bool = True, timeout: float = 120,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The docker CLI against one node (1-based); a failure raises unless check=False."""
        return run("docker", "-H", self.docker_host(node), *args,
                   check=check, timeout=timeout, env=self._cli_env(env))

    @staticmethod
    def _cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
        # -H names the node; a DOCKER_HOST or DOCKER_CONTEXT from the shell must not compete with it.
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
        return {**env, **(extra or {})}

    def load_images(self, tags: Sequence[str]) -> None:
        """`docker save` from the host's engine, streamed into every node's `docker load` at once."""
        began = time.monotonic()
        save = subprocess.Popen(["docker", "save", *tags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        loads = [subprocess.Popen(["docker", "-H", self.docker_host(node.index), "load", "-q"], env=self._cli_env(),
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for node in self.nodes]
        assert save.stdout is not None
        alive = list(loads)
        while chunk := save.stdout.read(1 << 20):
            for load in list(alive):
                try:
                    load.stdin.write(chunk)  # type: ignore[union-attr]
                except BrokenPipeError:  # that load failed; its stderr says why below
                    alive.remove(load)
        _, save_err = save.communicate()  # also closes its stdout
        failures = [f"docker save: {save_err.decode(errors='replace')[-1000:]}"] if save.returncode else []
        for node, load in zip(self.nodes, loads):
            _, err = load.communicate()
            if load.returncode:
                failures.append(f"docker load on {node.hostname}: {err.decode(errors='replace')[-1000:]}")
        if failures:
            raise SwarmLabError("; ".join(failures))
        self.timings["image load"] = self.timings.get("image load", 0) + time.monotonic() - began

    def deploy(self, stack_file: Path, name: str, env: Mapping[str, str] | None = None) -> None:
        """`docker stack deploy` on the manager; `env` fills the file's ${VARIABLES}."""
        # Without --resolve-image never the manager asks a registry, which these machines lack.
        self.docker(1, "stack", "deploy", "--resolve-image", "never", "-c", str(stack_file), name, env=env)

    def tasks(self, service: str, state: str = "Running") -> list[str]:
        """The node of each task of `service` now in `state` (Running, Complete, Failed, ...)."""
        lines = self.docker(1, "service", "ps", "--format", "{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}",
                            service).stdout.splitlines()
        tasks = [line.split("\t") for line in lines]
        # A task being replaced still shows Running for a moment, but no longer wants to.
        return [node for node, desired, current in tasks
                if current.startswith(state) and (state != "Running" or desired == "Running")]

    def wait_tasks(self, service: str, count: int, state: str = "Running", timeout: float = 90) -> list[str]:
        """Wait until `count` tasks of `service` are in `state` (Running means healthy, if it has a
        health check; Complete, for a replicated job, means exit 0); the node of each."""
        self._wait_for(lambda: len(self.tasks(service, state)) == count, timeout,
                       f"{count} tasks {state} of {service}", lambda: self.docker(
                           1, "service", "ps", "--no-trunc", service, check=False).stdout)
        return self.tasks(service, state)

    def docker_host(self, node: int = 1) -> str:
        """DOCKER_HOST for one node (node 1 is the manager), for a client other than `docker()`."""
        return f"unix://{self.node(node).socket}"

    def url(self, port: int, path: str = "", node: int = 1) -> str:
        """A host-mode published port of one node, as the host reaches it."""
        return f"http://{self.node(node).address}:{port}{path}"

    @staticmethod
    def _wait_for(ready: Callable[[], bool], timeout: float, what: str,
                  explain: Callable[[], str] = lambda: "") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ready():
                return
            time.sleep(0.5)
        raise SwarmLabError(f"no {what} after {timeout} s\n{explain()}")

    @staticmethod
    def _parallel(calls: Sequence[Callable[[], object]]) -> None:
        errors: list[BaseException] = []

        def call(fn: Callable[[], object]) -> None:
            try:
                fn()
            except BaseException as error:  # re-raised in the caller's thread below
                errors.append(error)

        threads = [threading.Thread(target=call, args=(fn,)) for fn in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    # ---- teardown -----------------------------------------------------------------------

    def teardown(self, check: bool = True) -> None:
        """Stop every process of the lab, delete its namespaces, links, cgroups and folders.

        Each step runs even if an earlier one failed; with check, raises if anything is left."""
        began = time.monotonic()
        self._stop_daemons()
        for netns in self._netns_names():
            self._kill_pids(self._netns_pids(netns))
        self._kill_pids(self._cgroup_pids())  # containers live in their own netns, but in our cgroups
        run("ip", "link", "del", self.host_link, check=False)
        for netns in self._netns_names():
            run("ip", "netns", "del", netns, check=False)
        self._remove_cgroups()
        shutil.rmtree(self.root, ignore_errors=True)
        self.timings["teardown"] = time.monotonic() - began
        left = self.leftovers()
        if left and check:
            raise SwarmLabError(f"{self.name} left behind: {left}")

    def _stop_daemons(self) -> None:
        pids = set()
        for node in self.nodes:
            try:
                pids.add(int(node.pidfile.read_text()))
            except (OSError, ValueError):  # never started, or died before writing it
                pass
        # A pid file outlives a killed dockerd, and its pid may belong to another process by now.
        pids &= set(self._lab_processes())
        pids |= {daemon.pid for daemon in self._daemons if daemon.poll() is None}
        # Kill the containers first: dockerd would otherwise wait for each one's stop timeout.
        self._kill_pids(self._cgroup_pids(), wait_s=2)
        for pid in pids:
            self._signal(pid, signal.SIGTERM)
        end = time.monotonic() + 15
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < end:
            self._reap()
            time.sleep(0.2)
        self._kill_pids(pids)
        for daemon in self._daemons:
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:  # left for leftovers() to report
                pass

    def _reap(self) -> None:
        for daemon in self._daemons:
            daemon.poll()  # collects our own children, which would otherwise stay zombies (alive)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _kill_pids(self, pids: set[int], wait_s: float = 10) -> None:
        for pid in pids:
            self._signal(pid, signal.SIGKILL)
        end = time.monotonic() + wait_s
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < end:
            self._reap()
            time.sleep(0.1)

    def _netns_names(self) -> list[str]:
        listed = run("ip", "netns", "list", check=False).stdout.split("\n")
        return [line.split()[0] for line in listed if line.startswith(f"{self.name}-")]

    @staticmethod
    def _netns_pids(netns: str) -> set[int]:
        return {int(pid) for pid in run("ip", "netns", "pids", netns, check=False).stdout.split()}

    def _cgroup_dirs(self) -> list[Path]:
        """The lab's cgroup folders in every hierarchy, deepest first."""
        found = [path for hierarchy in CGROUP_ROOT.iterdir() if hierarchy.is_dir()
                 for top in hierarchy.glob(f"{self.name}-*") if top.is_dir()
                 for path in (top, *(p for p in top.rglob("*") if p.is_dir()))]
        return sorted(found, key=lambda path: len(path.parts), reverse=True)

    def _cgroup_pids(self) -> set[int]:
        pids: set[int] = set()
        for path in self._cgroup_dirs():
            try:
                pids |= {int(pid) for pid in (path / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return pids

    def _remove_cgroups(self) -> None:
        end = time.monotonic() + 10
        while (dirs := self._cgroup_dirs()) and time.monotonic() < end:
            for path in dirs:
                try:
                    path.rmdir()
                except OSError:  # busy for a moment after its last process died
                    pass
            time.sleep(0.1)

    def leftovers(self) -> list[str]:
        """What of this lab still exists: namespaces, the host link, processes, cgroups, folders."""
        left = [f"netns {name}" for name in self._netns_names()]
        if run("ip", "link", "show", self.host_link, check=False).returncode == 0:
            left.append(f"link {self.host_link}")
        left += [f"process {pid}" for pid in self._lab_processes()]
        left += [f"cgroup {path}" for path in self._cgroup_dirs()]
        if self.root.exists():
            left.append(f"folder {self.root}")
        return left

    def _lab_processes(self) -> list[int]:
        """Processes whose command line names this lab's folder (dockerd, containerd, shims)."""
        needle = str(self.root).encode()
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and proc.name != str(os.getpid()):
                try:
                    if needle in (proc / "cmdline").read_bytes():
                        found.append(int(proc.name))
                except OSError:
                    pass
        return found

    @classmethod
    def reclaim_abandoned(cls) -> list[str]:
        """Tear down labs whose creating process is gone (a test run killed with SIGKILL); their names."""
        with labs_lock():
            return cls._reclaim_abandoned()

    @classmethod
    def _reclaim_abandoned(cls) -> list[str]:
        tmp_root = Path(tempfile.gettempdir())
        suffixes = {match.group(1) for line in run("ip", "netns", "list", check=False).stdout.split("\n")
                    if (match := re.match(rf"{PREFIX}-([0-9a-f]+)-", line))}
        suffixes |= {path.name.split("-", 1)[1] for path in tmp_root.glob(f"{PREFIX}-*") if path.is_dir()}
        reclaimed = []
        for suffix in sorted(suffixes):
            lab = cls(suffix=suffix)
            try:
                owner = int((lab.root / "owner").read_text())
            except (OSError, ValueError):
                owner = 0  # no owner file: a lab that never got going, or half removed
            if owner and pid_alive(owner):
                continue
            lab.nodes = [Node(i, f"{lab.name}-n{i}", "", lab.root / f"n{i}") for i in range(1, 10)
                         if (lab.root / f"n{i}").exists()]
            lab.teardown(check=False)
            reclaimed.append(lab.name)
        return reclaimed

    def timing_line(self) -> str:
        return f"{self.name}: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.timings.items())


def swarm_lab_fixture(images: Sequence[str] = (), scope: Literal["session", "module"] = "module", nodes: int = 3,
                      needs: Sequence[str] = ()) -> Any:
    """A pytest fixture: a started lab with `images` loaded, torn down after its scope.

    `needs` names fixtures to run first (e.g. "built_images"). The phase timings are written
    to the terminal at teardown."""

    @pytest.fixture(scope=scope)
    def swarm_lab(request: pytest.FixtureRequest) -> Iterator[SwarmLab]:
        for name in needs:
            request.getfixturevalue(name)
        lab = SwarmLab(nodes=nodes)
        try:
            lab.start()
            if images:
                lab.load_images(images)
            yield lab
        finally:
            try:
                lab.teardown()
            finally:
                show(request.config, lab.timing_line())

    return swarm_lab


def show(config: pytest.Config, line: str) -> None:
    """One line on the terminal now, even while pytest captures the test's output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{line}")
