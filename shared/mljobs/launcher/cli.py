"""`mljobs`: build the images, run train and predict jobs, run the serving fleet, look at the
model store and the run history, all through the Docker SDK."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from docker.errors import APIError, DockerException
from requests.exceptions import RequestException
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..contract import ROLES
from ..errors import MljobsError
from .engine import IMAGES, LauncherError, Project, connect, docker_reason, port_taken
from .jobs import TIMED_OUT, JobSpec, describe, map_paths, run_job
from . import fleet
from .mlflow_import import import_spec

console = Console(stderr=True, soft_wrap=True)  # long reasons stay on one line for scripts and logs
out = Console()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mljobs", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build the images from a checkout of mljobs")
    build.add_argument("--context", type=Path, default=Path("."), help="the checkout (default: the current folder)")
    build.add_argument("--base-image", help="base image for the Python images (default python:3.11-slim-bookworm)")

    for job, text in (("train", "train a model (flags as the train job: --input, --target, --model, ...)"),
                      ("predict", "score rows (flags as the predict job: --model, --input, --output, ...)"),
                      ("sql", 'run a query: mljobs sql --table new=new.parquet --output out "SELECT predict_demo(t) FROM new t"')):
        j = sub.add_parser(job, help=text, add_help=False)
        role = ROLES[job]
        j.add_argument("--cpus", type=float, help=f"CPU limit (default {role.cpus.variable}, else {role.cpus.default})")
        j.add_argument("--memory", help=f"memory limit (default {role.memory.variable}, else {role.memory.default})")
        j.add_argument("--timeout", type=float, help="kill the job after this many seconds")

    serve = sub.add_parser("serve", help="the HTTP serving fleet")
    serve_sub = serve.add_subparsers(dest="action", required=True)
    up = serve_sub.add_parser("up", help="start N replicas behind the load balancer")
    up.add_argument("--replicas", type=int, default=2)
    up.add_argument("--model", help="the model to serve (default: the running fleet's, else MLJOBS_MODEL, else demo)")
    up.add_argument("--port", type=int, help="published on 127.0.0.1 (default: where the fleet runs now, else "
                                             "MLJOBS_LB_PORT or 8000; 0 lets Docker pick)")
    up.add_argument("--workers", type=int, help="gunicorn workers per replica (default: the running fleet's, else MLJOBS_WORKERS, else 2)")
    serve_sub.add_parser("down", help="stop and remove the fleet")
    status = serve_sub.add_parser("status", help="the fleet's containers")
    status.add_argument("--json", action="store_true")
    scale = serve_sub.add_parser("scale", help="change the number of replicas")
    scale.add_argument("replicas", type=int)
    scale.add_argument("--model", help="default: the running fleet's (new replicas copy its model and workers)")

    models = sub.add_parser("models", help="the model store: list, show, promote, rollback")
    models.add_argument("models_args", nargs=argparse.REMAINDER)

    runs = sub.add_parser("runs", help="every job run (train, predict), whoever started it")
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--last", type=int, default=20, help="how many of the newest to show (default 20)")

    logs = sub.add_parser("logs", help="logs of the serving fleet")
    logs.add_argument("role", choices=["serve", "lb"], nargs="?", default="serve")
    logs.add_argument("--tail", type=int, default=100)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure is one line "error: ..." and an exit code: the contract's
    (2 usage or configuration, e.g. a port in use; 3 bad input; 4 model) or 1."""
    args, rest = parser().parse_known_args(argv)
    if rest and args.command not in ("train", "predict", "sql"):
        parser().error(f"unrecognized arguments: {' '.join(rest)}")
    project = Project.from_env()
    client = None
    try:
        client = connect()
        return COMMANDS[args.command](client, project, args, rest)
    except MljobsError as exc:  # LauncherError, and e.g. a signing key that is too short
        return error(str(exc), exc.exit_code)
    except DockerException as exc:
        return error(docker_reason(exc), 2 if isinstance(exc, APIError) and port_taken(exc) else 1)
    except RequestException as exc:  # the connection to the engine broke mid-command
        return error(f"lost the connection to the Docker engine: {exc}", 1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the job's container was stopped and removed[/yellow]")
        return 130
    finally:
        if client is not None:
            client.close()


def error(message: str, exit_code: int) -> int:
    console.print(Text.assemble(("error:", "red"), " ", message.strip().replace("\n", " ")), highlight=False)
    return exit_code


def cmd_build(client: Any, project: Project, args: argparse.Namespace, _: list[str]) -> int:
    context = args.context.resolve()
    if not (context / "images" / "train" / "Dockerfile").is_file():
        raise LauncherError(f"{context} is not an mljobs checkout (no images/train/Dockerfile): pass --context", 2)
    from docker.errors import APIError, BuildError

    for image in IMAGES:
        build_args = {"BASE_IMAGE": args.base_image} if args.base_image and image != "lb" else {}
        with console.status(f"building {project.image(image)}") as status:
            try:
                for event in client.api.build(path=str(context), dockerfile=f"images/{image}/Dockerfile", tag=project.image(image),
                                              buildargs=build_args, decode=True, rm=True):
                    if "error" in event:
                        raise LauncherError(f"building {project.image(image)} failed: {event['error'].strip()}")
                    if event.get("stream", "").startswith("Step "):
                        status.update(f"building {project.image(image)}: {event['stream'].strip()}")
            except (APIError, BuildError) as exc:
                raise LauncherError(f"building {project.image(image)} failed: {exc}") from None
        console.print(f"[green]built[/green] {project.image(image)}")
    return 0


def run_one_shot(client: Any, project: Project, spec: JobSpec) -> int:
    def show(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    with console.status(f"running {spec.job}"):
        result = run_job(client, project, spec, show)
    message = describe(spec.job, result, spec.timeout)
    console.print(("[green]" if result.exit_code == 0 and not result.timed_out else "[red]") + message, highlight=False)
    return TIMED_OUT if result.timed_out else result.exit_code


def cmd_job(client: Any, project: Project, args: argparse.Namespace, rest: list[str]) -> int:
    job_args, mounts, user = map_paths(rest, args.command)
    # Jobs that write host files run as their owner (you); the others as the image's user.
    spec = JobSpec(args.command, job_args, mounts, user=user if ROLES[args.command].runs_as_host_user else None,
                   cpus=args.cpus, memory=args.memory, timeout=args.timeout)
    return run_one_shot(client, project, spec)


def query(client: Any, project: Project, args: list[str]) -> str:
    """Run a store command (python -m mljobs.jobs.models) and return its standard output."""
    spec = JobSpec("models", args)
    result = run_job(client, project, spec, lambda line: None)
    if result.exit_code != 0:
        raise LauncherError(result.reason or f"exit {result.exit_code}", result.exit_code)
    return "\n".join(line for line in result.output.splitlines() if line.strip())


def cmd_models(client: Any, project: Project, args: argparse.Namespace, _: list[str]) -> int:
    words = args.models_args
    if not words:
        raise LauncherError("say what to do: mljobs models list|show|promote|rollback ...", 2)
    if words[0] == "report":  # a job of its own: it writes a host folder (see launcher/reports.py)
        from .reports import report

        out.print(str(report(client, project, words[1:], lambda line: None)), markup=False, highlight=False, soft_wrap=True)
        return 0
    if words[0] == "import":  # a host folder to mount: a one-shot job of its own
        return run_one_shot(client, project, import_spec(words))
    if words[0] == "list" and "--json" not in words:  # a table of the JSON listing
        models = json.loads(query(client, project, ["--models-dir", "/models", "list", "--json"]))
        table = Table("model", "versions", "aliases")
        for m in models:
            table.add_row(m["name"], ", ".join(m["versions"]), "  ".join(f"{a} → {v}" for a, v in m["aliases"].items()))
        out.print(table if models else "no models yet: mljobs train")
        return 0
    out.print(query(client, project, ["--models-dir", "/models", *words]), markup=False, highlight=False)
    return 0


def mark_lost(client: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A record still 'running' whose container is gone or stopped was killed before it could
    say so (SIGKILL, OOM, a lost machine): show it as lost. Jobs in containers record their
    container's id as host (Docker's default hostname: 12 hex digits); others are left alone."""
    from docker.errors import NotFound

    for record in records:
        host = str(record.get("host", ""))
        if record.get("status") != "running" or not re.fullmatch(r"[0-9a-f]{12}", host):
            continue
        try:
            alive = client.containers.get(host).status in ("running", "created", "restarting")
        except (NotFound, APIError):
            alive = False
        if not alive:
            record["status"], record["reason"] = "lost", "its container ended without finishing the run (killed?)"
    return records


def cmd_runs(client: Any, project: Project, args: argparse.Namespace, _: list[str]) -> int:
    records = mark_lost(client, json.loads(query(client, project, ["runs"]))[-args.last:])
    if args.json:
        out.print_json(data=records)
        return 0
    table = Table("started", "job", "status", "model", "rows in/out/rejected", "by", "reason / output")
    for r in records:
        rows = r.get("rows") or {}
        model = r.get("model") or {}
        status = r.get("status_detail") or r.get("status", "?")
        colour = {"succeeded": "green", "failed": "red", "lost": "red", "running": "yellow"}.get(str(r.get("status")), "white")
        table.add_row(r.get("started", "?"), r.get("job", "?"), f"[{colour}]{status}[/{colour}]",
                      f"{model.get('name', '')}:{model.get('version', '')}" if model else "",
                      "/".join(str(rows.get(k, "-")) for k in ("in", "out", "rejected")) if rows else "",
                      r.get("started_by", ""), r.get("reason") or r.get("output") or "")
    out.print(table)
    return 0


def cmd_serve(client: Any, project: Project, args: argparse.Namespace, _: list[str]) -> int:
    if args.action == "up":
        with console.status(f"starting {args.replicas} replica(s) behind the load balancer"):
            port = fleet.up(client, project, args.replicas, args.model, args.port, args.workers)
            fleet.wait_healthy(client, project)
        model = fleet.fleet_settings(fleet.replicas(client, project), None, None)[0]
        console.print(f"[green]serving[/green] {model} on http://127.0.0.1:{port} ({args.replicas} replicas)")
    elif args.action == "down":
        console.print(f"removed {fleet.down(client, project)} container(s)")
    elif args.action == "scale":
        fleet.scale(client, project, args.replicas, args.model)
        fleet.wait_healthy(client, project)
        console.print(f"{args.replicas} replica(s)")
    else:
        rows = fleet.status(client, project)
        if args.json:
            out.print_json(data=rows)
        else:
            table = Table("name", "role", "state", "health", "published")
            for row in rows:
                table.add_row(*row.values())
            out.print(table if rows else "no fleet running: mljobs serve up")
    return 0


def cmd_logs(client: Any, project: Project, args: argparse.Namespace, _: list[str]) -> int:
    containers = fleet.replicas(client, project) if args.role == "serve" else fleet.balancers(client, project)
    if not containers:
        raise LauncherError("no fleet running: mljobs serve up")
    for container in containers:
        out.rule(container.name)
        out.print(container.logs(tail=args.tail).decode("utf-8", "replace"), markup=False, highlight=False)
    return 0


COMMANDS = {"build": cmd_build, "train": cmd_job, "predict": cmd_job, "sql": cmd_job, "serve": cmd_serve,
            "models": cmd_models, "runs": cmd_runs, "logs": cmd_logs}


if __name__ == "__main__":
    sys.exit(main())
