"""The ``scep`` command line: run experiments from YAML, operate agents and workers.

Exit codes are part of the contract for CI pipelines: 0 ok / hypothesis held,
1 hypothesis failed (or not proven), 2 error — with one readable line on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class CliError(Exception):
    """An error reported as one line with exit code 2."""


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scep.settings")
    import django

    django.setup()


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _read_spec(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{path}: no such file")
    return p.read_text()


def cmd_validate(args: argparse.Namespace) -> int:
    from experiments.spec import SpecError, load_spec_text, validate_spec

    text = _read_spec(args.spec)
    try:
        data = load_spec_text(text)
        target_config = target_labels = None
        from experiments.models import Target

        target = Target.objects.filter(name=data.get("target")).first()
        if target is not None:
            target_config, target_labels = target.config, target.labels
        spec = validate_spec(data, target_config=target_config, target_labels=target_labels)
    except SpecError as exc:
        raise CliError(f"{args.spec}: invalid spec: {exc}") from None
    note = "" if target_config is not None else " (target not registered here: not checked)"
    print(f"{args.spec}: valid: {spec.name} — {spec.fault.type} on {spec.target}{note}")
    return EXIT_OK


def _upsert_experiment(text: str):
    from experiments.models import Experiment
    from experiments.services.catalog import create_experiment, update_experiment
    from experiments.spec import SpecError, load_spec_text

    try:
        data = load_spec_text(text)
        existing = Experiment.objects.filter(name=data.get("name")).first()
        if existing is None:
            return create_experiment(data, actor=actor(), source="cli")
        return update_experiment(existing, data, actor=actor(), source="cli")
    except SpecError as exc:
        raise CliError(f"invalid spec: {exc}") from None


def _run_remote(args: argparse.Namespace, server: str) -> int:
    from experiments.spec import SpecError, load_spec_text
    from scep.cli.remote import RemoteError, run_remote

    token = args.token or os.environ.get("SCEP_TOKEN", "")
    if not token:
        raise CliError("no API token for the remote server: pass --token or set SCEP_TOKEN")
    try:
        data = load_spec_text(_read_spec(args.spec))
    except SpecError as exc:
        raise CliError(f"{args.spec}: invalid spec: {exc}") from None
    try:
        return run_remote(
            data,
            server=server,
            token=token,
            wait=args.wait,
            junit=args.junit,
            timeout=args.timeout,
            quiet=args.quiet,
            dry_run=args.dry_run,
        )
    except RemoteError as exc:
        raise CliError(str(exc)) from None


def _write_junit(run, path: str) -> None:
    from analysis.exports import export_run

    try:
        Path(path).write_text(export_run(run, "junit").content)
    except OSError as exc:
        raise CliError(f"--junit {path}: {exc.strerror or exc}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from experiments.services.runs import KillSwitchEngaged, start_run
    from scep.cli.progress import exit_code_for, follow_run

    server = args.server or os.environ.get("SCEP_SERVER", "")
    if server:  # a remote SCEP, through its REST API (scep/cli/remote.py)
        return _run_remote(args, server)
    experiment = _upsert_experiment(_read_spec(args.spec))
    try:
        run = start_run(experiment, actor=actor(), source="cli", dry_run=args.dry_run)
    except KillSwitchEngaged as exc:
        raise CliError(str(exc)) from None
    print(f"run {run.pk} of {experiment.name} v{experiment.version} queued", file=sys.stderr)
    if not args.wait:
        print(run.pk)
        return EXIT_OK
    run = follow_run(run.pk, timeout=args.timeout, quiet=args.quiet)
    if args.junit:
        _write_junit(run, args.junit)
    return exit_code_for(run)


def cmd_abort(args: argparse.Namespace) -> int:
    from experiments.models import Run
    from experiments.services.runs import RunNotAbortable, abort_run

    run = Run.objects.filter(pk=args.run).first()
    if run is None:
        raise CliError(f"run {args.run} does not exist")
    try:
        abort_run(run, actor=actor(), source="cli", reason=args.reason)
    except RunNotAbortable as exc:
        raise CliError(str(exc)) from None
    print(f"run {run.pk}: abort requested")
    return EXIT_OK


def cmd_kill_switch(args: argparse.Namespace) -> int:
    from experiments.services.runs import engage_kill_switch, release_kill_switch

    if args.state == "on":
        counts = engage_kill_switch(actor=actor(), source="cli", reason=args.reason)
        print(
            f"kill switch engaged: {counts['aborted_runs']} run(s) aborted, "
            f"{counts['reverted_faults']} fault(s) reverted; new runs refused"
        )
    else:
        release_kill_switch(actor=actor(), source="cli")
        print("kill switch released")
    return EXIT_OK


def cmd_agent(args: argparse.Namespace) -> int:
    from injectors.agent import run_agent

    print(f"agent {args.name}: consuming queue agent.{args.name}", file=sys.stderr)
    run_agent(args.name, concurrency=args.concurrency, loglevel=args.loglevel)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from django.conf import settings

    from scep.celery import app
    from scep.memory import limit_native_threads, settle_heap

    # A worker lives for thousands of runs: one BLAS thread per run thread, and a
    # frozen start-up heap so the per-run garbage collection stays cheap (scep.memory).
    limit_native_threads()
    settle_heap()
    worker = app.Worker(
        hostname=f"orchestrator-{os.getpid()}@{settings.SCEP_HOSTNAME}",
        queues=[q.strip() for q in args.queues.split(",") if q.strip()],
        pool="threads",
        concurrency=args.concurrency,
        loglevel=args.loglevel,
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=True,
        beat=args.beat,
        schedule_filename=settings.CELERY_BEAT_SCHEDULE_FILENAME,
    )
    worker.start()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from scep.cli.demo import run_demo

    windows = [float(x) for x in args.windows.split(",")] if args.windows else None
    if windows is not None and len(windows) != 3:
        raise CliError("--windows takes BASELINE,DURATION,RECOVERY seconds")
    return run_demo(json_output=args.json, windows=windows)


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.services import build_report
    from experiments.models import Run

    run = Run.objects.filter(pk=args.run).first()
    if run is None:
        raise CliError(f"run {args.run} does not exist")
    report = build_report(run)
    if args.format == "html":
        from analysis.report import render_html

        print(render_html(report))
    else:
        from analysis.report import render_json

        print(render_json(report))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the demo experiment end to end")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument("--windows", default="", help=argparse.SUPPRESS)  # B,D,R s (tests)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("validate", help="validate a spec file (YAML or JSON; - for stdin)")
    p.add_argument("spec")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="create/update the experiment from SPEC and start a run")
    p.add_argument("spec")
    p.add_argument("--wait", action="store_true", help="follow the run; exit by its verdict")
    p.add_argument("--dry-run", action="store_true", help="preflight and describe only")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    p.add_argument("--quiet", action="store_true", help="no live progress display")
    p.add_argument(
        "--server", default="", help="URL of a remote SCEP (or SCEP_SERVER); else run here"
    )
    p.add_argument("--token", default="", help="API token for --server (or SCEP_TOKEN)")
    p.add_argument("--junit", default="", metavar="FILE", help="with --wait: write JUnit XML")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("abort", help="abort a run (its fault is reverted)")
    p.add_argument("run", type=int)
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_abort)

    p = sub.add_parser("kill-switch", help="engage (on) or release (off) the kill switch")
    p.add_argument("state", choices=["on", "off"])
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_kill_switch)

    p = sub.add_parser("agent", help="run a host agent consuming queue agent.NAME")
    p.add_argument("--name", default="local")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--loglevel", default="WARNING")
    p.set_defaults(func=cmd_agent)

    p = sub.add_parser(
        "worker", help="run a worker (queues 'orchestrator' and 'analysis' by default)"
    )
    p.add_argument("--concurrency", type=int, default=8, help="concurrent runs")
    p.add_argument(
        "--beat", action="store_true", help="also run beat: the reaper and campaign schedules"
    )
    p.add_argument(
        "--queues",
        default="orchestrator,analysis",
        help="comma-separated queues to consume: 'orchestrator' drives runs, 'analysis' "
        "analyses and ends them (default both)",
    )
    p.add_argument("--loglevel", default="WARNING")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("report", help="print a run's report")
    p.add_argument("run", type=int)
    p.add_argument("--format", choices=["json", "html"], default="json")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _setup_django()
        return args.func(args)
    except CliError as exc:
        print(f"scep: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("scep: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # one readable line, never a traceback wall
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"scep: error: {type(exc).__name__}: {first}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
