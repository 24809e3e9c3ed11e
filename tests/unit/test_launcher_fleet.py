"""`mljobs serve up|scale|down|status` against a fake Docker client: replicas, the load balancer's
published port, and what the user is told."""

from __future__ import annotations

import json

import pytest

from mljobs.launcher import cli

from .fake_docker import FakeDockerClient


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeDockerClient:
    fake = FakeDockerClient()
    monkeypatch.setattr(cli, "connect", lambda *a, **k: fake)
    for name in ("COMPOSE_PROJECT_NAME", "MLJOBS_TAG", "MLJOBS_LB_PORT", "MLJOBS_MODEL", "MLJOBS_SIGNING_KEY",
                 "MLJOBS_SIGNING_KEY_FILE", "MLJOBS_SERVE_MEMORY", "MLJOBS_SERVE_CPUS", "MLJOBS_PIDS"):
        monkeypatch.delenv(name, raising=False)
    return fake


def lb_port(engine: FakeDockerClient) -> int:
    [lb] = engine.running("lb")
    return lb.published["8080/tcp"]


def replica_numbers(engine: FakeDockerClient) -> list[str]:
    return sorted(c.labels["org.mljobs.replica"] for c in engine.running("serve"))


def test_up_starts_locked_down_replicas_behind_the_balancer(engine, capsys):
    assert cli.main(["serve", "up", "--replicas", "2", "--model", "churn", "--port", "8123", "--workers", "3"]) == 0
    replicas = engine.running("serve")
    assert len(replicas) == 2 and lb_port(engine) == 8123
    for replica in replicas:
        settings = replica.kwargs
        assert replica.image == "mljobs-serve:latest"
        assert settings["read_only"] is True and settings["cap_drop"] == ["ALL"]
        assert settings["security_opt"] == ["no-new-privileges:true"] and settings["pids_limit"] == 512
        assert settings["mem_limit"] == "2g" and settings["nano_cpus"] == 2_000_000_000
        assert replica.environment == {"MLJOBS_MODEL": "churn", "MLJOBS_WORKERS": "3", "MLJOBS_MAX_MODELS": "8"}
        assert replica.mounts()["/models"] == ("mljobs_models", True)
        assert replica.networks == [("mljobs_fleet", ["serve"])]
        assert "ports" not in settings  # only the balancer is published
    [lb] = engine.running("lb")
    assert lb.kwargs["ports"] == {"8080/tcp": ("127.0.0.1", 8123)} and lb.kwargs["read_only"] is True
    assert "serving churn on http://127.0.0.1:8123 (2 replicas)" in capsys.readouterr().err


def test_scale_starts_replicas_like_the_running_ones(engine):
    assert cli.main(["serve", "up", "--replicas", "1", "--model", "churn", "--workers", "3", "--port", "8123"]) == 0
    assert cli.main(["serve", "scale", "3"]) == 0
    assert [r.environment for r in engine.running("serve")] == [{"MLJOBS_MODEL": "churn", "MLJOBS_WORKERS": "3", "MLJOBS_MAX_MODELS": "8"}] * 3


def test_scale_adds_and_removes_the_newest_replicas(engine):
    assert cli.main(["serve", "up", "--replicas", "2", "--port", "8123"]) == 0
    assert cli.main(["serve", "scale", "4"]) == 0
    assert replica_numbers(engine) == ["1", "2", "3", "4"]
    assert cli.main(["serve", "scale", "1"]) == 0
    assert replica_numbers(engine) == ["1"]
    assert lb_port(engine) == 8123


def test_down_removes_every_container_and_the_network(engine, capsys):
    assert cli.main(["serve", "up", "--replicas", "3", "--port", "8123"]) == 0
    assert cli.main(["serve", "down"]) == 0
    assert engine.live == {} and engine.networks.by_name == {}
    assert "removed 4 container(s)" in capsys.readouterr().err


def test_up_on_a_new_port_moves_the_running_balancer(engine, capsys):
    assert cli.main(["serve", "up", "--replicas", "2", "--port", "8123"]) == 0
    capsys.readouterr()
    assert cli.main(["serve", "up", "--replicas", "2", "--port", "8124"]) == 0
    assert lb_port(engine) == 8124  # one balancer, on the port asked for
    assert "http://127.0.0.1:8124" in capsys.readouterr().err
    assert [c.name for c in engine.running("lb")] == ["mljobs-lb"]


def test_up_without_a_port_keeps_the_running_balancers(engine, capsys):
    assert cli.main(["serve", "up", "--replicas", "1", "--port", "8123"]) == 0
    [before] = engine.running("lb")
    capsys.readouterr()
    assert cli.main(["serve", "up", "--replicas", "2"]) == 0
    assert engine.running("lb") == [before] and lb_port(engine) == 8123
    assert "http://127.0.0.1:8123 (2 replicas)" in capsys.readouterr().err


def test_the_port_reported_is_the_one_docker_published(engine, capsys):
    assert cli.main(["serve", "up", "--replicas", "1", "--port", "0"]) == 0  # the engine picks one
    port = lb_port(engine)
    assert port > 0 and f"http://127.0.0.1:{port} " in capsys.readouterr().err


def test_a_taken_port_is_a_usage_error_and_leaves_no_balancer(engine, capsys):
    engine.ports_taken_elsewhere.add(8123)
    assert cli.main(["serve", "up", "--replicas", "1", "--port", "8123"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "port 8123" in err and "--port" in err
    assert [c for c in engine.live.values() if c.labels.get("org.mljobs.role") == "lb"] == []
    assert cli.main(["serve", "up", "--replicas", "1", "--port", "8124"]) == 0  # a retry elsewhere works
    assert lb_port(engine) == 8124


def test_moving_to_a_taken_port_keeps_the_fleet_where_it_was(engine, capsys):
    assert cli.main(["serve", "up", "--replicas", "1", "--port", "8123"]) == 0
    engine.ports_taken_elsewhere.add(8124)
    capsys.readouterr()
    assert cli.main(["serve", "up", "--replicas", "1", "--port", "8124"]) == 2
    assert "port 8124" in capsys.readouterr().err
    [lb] = engine.running("lb")
    assert lb.name == "mljobs-lb" and lb_port(engine) == 8123
    assert len([c for c in engine.live.values() if c.labels.get("org.mljobs.role") == "lb"]) == 1


def test_status_lists_the_fleet_with_its_published_port(engine, capsys):
    assert cli.main(["serve", "up", "--replicas", "2", "--port", "8123"]) == 0
    capsys.readouterr()
    assert cli.main(["serve", "status", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["role"] for r in rows) == ["lb", "serve", "serve"]
    assert [r["published"] for r in rows if r["role"] == "lb"] == ["127.0.0.1:8123"]
    assert all(r["health"] == "healthy" for r in rows if r["role"] == "serve")


def test_a_missing_image_offers_build(engine, capsys):
    engine.images.names.discard("mljobs-lb:latest")
    assert cli.main(["serve", "up", "--port", "8123"]) == 1
    assert "image mljobs-lb:latest is missing: run `mljobs build` first" in capsys.readouterr().err
