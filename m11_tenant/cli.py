"""``python -m m11_tenant …``: a thin command line over the library."""

from __future__ import annotations

import argparse
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
            print(f"seeded {len(written)} tenant(s) into {repo.store.url}: {', '.join(written)}")
        elif args.command == "check":
            from m11_tenant.rag import check_all_tenants

            report = check_all_tenants(open_repository(args.database_url), live=args.live)
            print(report.text())
            return 0 if report.ok else 1
    except TenantConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
