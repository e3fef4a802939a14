"""``searchtuner token``: create, list and revoke the service's access tokens.

An operator's command: it works on the service's store directly (``--data-dir`` or
``--store``, default ``SEARCHTUNER_STORE`` or ``./searchtuner-data``), so it needs no running
service and no token of its own. ``create`` prints the new token alone on standard output, once:
the store keeps only its SHA-256.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from searchtuner.service.owners import store_uri_or_default
from searchtuner.service.tokens import TokenStore
from searchtuner.store import open_store


def _store_uri(args: argparse.Namespace) -> str:
    if args.store:
        return str(args.store)
    if args.data_dir:
        folder = Path(args.data_dir).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return folder.as_uri()
    return store_uri_or_default()


def _tokens(args: argparse.Namespace) -> TokenStore:
    return TokenStore(open_store(_store_uri(args)), cache_seconds=0)


def _create(args: argparse.Namespace) -> int:
    issued = _tokens(args).create(args.owner, args.name or "")
    print(issued.token)
    print(
        f"token {issued.info.token_id} for owner {issued.info.owner!r} created; it is shown "
        "only now — keep it secret (revoke: searchtuner token revoke "
        f"{issued.info.token_id})",
        file=sys.stderr,
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    infos = list(_tokens(args).list(args.owner))
    if args.json:
        print(json.dumps([info.__dict__ for info in infos], indent=2))
        return 0
    if not infos:
        print("no tokens (create one: searchtuner token create --owner NAME)", file=sys.stderr)
    for info in infos:
        print(f"{info.token_id}  {info.owner:<20} {info.created_at}  {info.name}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    info = _tokens(args).revoke(args.token_id)
    print(f"revoked token {info.token_id} of owner {info.owner!r}", file=sys.stderr)
    return 0


def add_token_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``token create|list|revoke`` to the CLI."""
    store = argparse.ArgumentParser(add_help=False)
    where = store.add_mutually_exclusive_group()
    where.add_argument("--data-dir", help="the service's local store folder")
    where.add_argument("--store", help="the service's store URI, e.g. s3://bucket/prefix")
    token = commands.add_parser(
        "token",
        help="create, list and revoke access tokens (on the service's store)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="a new token for an owner", parents=[store])
    create.add_argument("--owner", required=True, help="whose data the token reaches")
    create.add_argument("--name", help="a label for people, e.g. 'ci' or 'alice laptop'")
    create.set_defaults(func=_create)
    listing = actions.add_parser(
        "list", help="tokens (ids and owners, never secrets)", parents=[store]
    )
    listing.add_argument("--owner", help="only this owner's")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_list)
    revoke = actions.add_parser("revoke", help="revoke a token by its id", parents=[store])
    revoke.add_argument("token_id", help="the id from `token list` (or the whole token)")
    revoke.set_defaults(func=_revoke)
