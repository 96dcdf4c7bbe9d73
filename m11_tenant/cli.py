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
    except TenantConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
