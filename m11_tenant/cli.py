"""``python -m m11_tenant …``: a thin command line over the library."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

DEMO_DATABASE = ".m11/demo.db"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m m11_tenant",
        description="Tenant-specific configuration of RAG pipelines.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="seed the example tenants and print a short tour")
    demo.add_argument("--database-url", help=f"default: a fresh sqlite:///{DEMO_DATABASE}")

    seed = sub.add_parser("seed", help="store the example tenants from data/tenants.json")
    seed.add_argument("--database-url", help="default: DATABASE_URL or sqlite:///m11_tenant.db")
    seed.add_argument("--overwrite", action="store_true", help="replace tenants already stored")

    serve = sub.add_parser("serve", help="run the management API under uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument("--database-url", help="default: DATABASE_URL or sqlite:///m11_tenant.db")
    serve.add_argument("--redis-url", help="default: REDIS_URL (unset: in-process fakeredis)")
    serve.add_argument("--no-access-log", action="store_true", help="quieter, faster")
    serve.add_argument("--region", help="serve as this region (default: M11_REGION; unset: "
                       "a single-region server); needs --regions and a shared REDIS_URL")
    serve.add_argument("--regions", help="every region, comma-separated: us,eu,ap "
                       "(default: M11_REGIONS)")
    serve.add_argument("--strategy", choices=("field-merge", "lww"),
                       help="conflict resolution between regions (default: "
                       "M11_REGION_STRATEGY, else field-merge)")
    serve.add_argument("--admin-key-file", metavar="PATH",
                       help="when M11_ADMIN_KEY is not set: the admin key kept in this file "
                       "(created with a strong random key on first use; `make serve` uses "
                       ".m11/admin_key)")

    export = sub.add_parser("export", help="write every tenant's config to a JSON/YAML file")
    export.add_argument("--database-url", help="default: DATABASE_URL or sqlite:///m11_tenant.db")
    export.add_argument("--output", "-o", help="file to write (default: stdout)")
    export.add_argument("--format", choices=("json", "yaml"),
                        help="default: from the file name, else json")

    imp = sub.add_parser("import", help="validate a config file, then apply it all-or-nothing")
    imp.add_argument("file", help="a file written by export (.json, .yaml or .yml)")
    imp.add_argument("--database-url", help="default: DATABASE_URL or sqlite:///m11_tenant.db")
    imp.add_argument("--dry-run", action="store_true", help="print the diff per tenant only")
    imp.add_argument("--reason", help="recorded in the audit log (one line, at most 500 "
                     "characters)")

    check = sub.add_parser("check", help="run every stored tenant's config on sample eval "
                           "questions and report the ones that break (exit 1 if any)")
    check.add_argument("--database-url", help="default: DATABASE_URL or sqlite:///m11_tenant.db")
    check.add_argument("--live", action="store_true",
                       help="call the real model API when keyed (default: offline, free)")

    args = parser.parse_args(argv)
    from m11_tenant import TenantConfigError, open_repository

    try:
        if args.command == "demo":
            from m11_tenant.demo import run_tour

            url = args.database_url
            if url is None:
                for suffix in ("", "-wal", "-shm"):
                    Path(DEMO_DATABASE + suffix).unlink(missing_ok=True)
                url = f"sqlite:///{DEMO_DATABASE}"
            run_tour(open_repository(url))
        elif args.command == "seed":
            from m11_tenant.seed import seed_tenants

            repo = open_repository(args.database_url)
            written = seed_tenants(repo, overwrite=args.overwrite)
            print(f"seeded {len(written)} tenant(s) into {repo.url}: {', '.join(written)}")
        elif args.command == "serve":
            return _serve(args)
        elif args.command == "export":
            from m11_tenant.config_as_code import dump_document, export_document, format_of

            fmt = args.format or (format_of(args.output) if args.output else "json")
            repo = open_repository(args.database_url)
            doc = export_document(repo)
            text = dump_document(doc, fmt)
            if args.output:
                Path(args.output).write_text(text, encoding="utf-8")
                print(f"exported {len(doc['tenants'])} tenant(s) from {repo.url} to "
                      f"{args.output}", file=sys.stderr)
            else:
                sys.stdout.write(text)
        elif args.command == "import":
            return _import(args, open_repository(args.database_url))
        elif args.command == "check":
            from m11_tenant.rag import RagPipeline, check_all_tenants

            pipeline = RagPipeline(generation="auto" if args.live else "offline")
            if args.live and not pipeline.live:
                print("note: --live, but no model provider is configured (OPENAI_API_KEY, "
                      "ANTHROPIC_API_KEY, OPENAI_COMPATIBLE_BASE_URL …): checking offline",
                      file=sys.stderr)
            report = check_all_tenants(open_repository(args.database_url), pipeline=pipeline)
            print(report.text())
            return 0 if report.ok else 1
    except TenantConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _import(args: argparse.Namespace, repo: object) -> int:
    from m11_tenant.config_as_code import (
        apply_import,
        describe_plan,
        format_of,
        load_document,
        plan_import,
    )
    from m11_tenant.text import check_reason

    check_reason(args.reason)  # before the plan is printed: a bad reason writes nothing
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    plan = plan_import(repo, load_document(text, format_of(args.file)))  # type: ignore[arg-type]
    for line in describe_plan(plan):
        print(line)
    changing = sum(change.changes for change in plan)
    if args.dry_run:
        print(f"dry run: {changing} of {len(plan)} tenant(s) would change; nothing written")
        return 0
    written = apply_import(repo, plan, reason=args.reason)  # type: ignore[arg-type]
    print(f"imported: {len(written)} tenant(s) written, {len(plan) - len(written)} unchanged")
    return 0


def _region_requested(args: argparse.Namespace) -> bool:
    """True when this server is one region of several (``--region`` or ``M11_REGION``);
    its settings are checked here so a mistake is one clear line, not a worker's traceback.

    Raises:
        ConfigValidationError: the region settings are incomplete or inconsistent.
    """
    from m11_tenant.regions.service import check_region_settings
    from m11_tenant.settings import load_settings

    for option, variable in (("region", "M11_REGION"), ("regions", "M11_REGIONS"),
                             ("strategy", "M11_REGION_STRATEGY")):
        if getattr(args, option):
            os.environ[variable] = getattr(args, option)
    settings = load_settings()
    if not settings.m11_region:
        return False
    check_region_settings(settings)
    return True


def _serve(args: argparse.Namespace) -> int:
    """Start uvicorn on the app factory; settings travel to the workers through the env."""
    import uvicorn

    from m11_tenant.errors import WeakAdminKeyError
    from m11_tenant.settings import load_settings
    from m11_tenant.web.auth import check_admin_key, new_admin_key
    from m11_tenant.web.server import protocol

    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    if args.redis_url is not None:
        os.environ["REDIS_URL"] = args.redis_url
    app = "m11_tenant.app:create_app"
    if _region_requested(args):
        if args.workers > 1:
            print("error: a region is one process (its apply loop and its database's only "
                  "writer); run --workers 1 per region", file=sys.stderr)
            return 1
        app = "m11_tenant.region_app:create_region_app"
    elif args.workers > 1 and load_settings().redis_url is None:  # the environment or .env
        # A private fakeredis per worker would keep serving a config another worker has
        # changed; without a shared Redis, run with no cache at all.
        os.environ["REDIS_URL"] = ""
        print("note: several workers and no REDIS_URL: the config cache is off and rate "
              "limits count per worker; set REDIS_URL to share them", file=sys.stderr)
    try:
        configured = load_settings().m11_admin_key  # the environment, or .env
        if configured:
            check_admin_key(configured)
        elif args.admin_key_file:
            os.environ["M11_ADMIN_KEY"] = _kept_admin_key(Path(args.admin_key_file))
        else:
            os.environ["M11_ADMIN_KEY"] = generated = new_admin_key()
            print(f"M11_ADMIN_KEY is not set; this server's admin key is: {generated}",
                  file=sys.stderr, flush=True)
    except WeakAdminKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, factory=True, host=args.host, port=args.port,
                workers=args.workers, access_log=not args.no_access_log,
                http=protocol(load_settings().m11_header_timeout))
    return 0


def _kept_admin_key(path: Path) -> str:
    """The admin key kept in ``path``, made (strong, random, readable only by its owner)
    on first use, so the embedded setup keeps one key across restarts.

    Raises:
        WeakAdminKeyError: the file holds a key too weak to use.
    """
    from m11_tenant.web.auth import check_admin_key, new_admin_key

    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        print(f"admin key: the one kept in {path} (sign in with it: cat {path})",
              file=sys.stderr, flush=True)
        return check_admin_key(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_admin_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as sink:
        sink.write(key + "\n")
    print(f"admin key: a new one, kept in {path} (readable only by you; sign in with it: "
          f"cat {path})", file=sys.stderr, flush=True)
    return key
