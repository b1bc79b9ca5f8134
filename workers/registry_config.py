"""Render the distribution 2.8 registry config that wires its push notifications to Tollgate."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ENDPOINT_NAME = "tollgate"
# distribution 2.8 installs the notification filter only when some media type is listed, so the
# ``ignore.actions: [pull]`` filter needs this dummy type to take effect (PROTOCOLS.md §1).
DUMMY_IGNORED_MEDIA_TYPE = "application/x-none"


def render_registry_config(
    *,
    addr: str,
    root: Path | str,
    notify_url: str | None,
    notify_token: str | None,
    htpasswd: Path | str | None = None,
    debug_addr: str | None = None,
) -> str:
    """The registry's YAML config: filesystem storage under ``root``, deletes on, optional auth and webhook.

    ``notify_token`` becomes ``Authorization: Bearer <token>`` on every notification POST; the caller
    owns the written file, which therefore holds a secret when a token is given.
    """
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": addr, "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    if debug_addr:
        config["http"]["debug"] = {"addr": debug_addr}
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "basic-realm", "path": str(htpasswd)}}
    if notify_url:
        endpoint: dict[str, Any] = {
            "name": ENDPOINT_NAME,
            "disabled": False,
            "url": notify_url,
            "timeout": "2s",
            "threshold": 3,
            "backoff": "1s",
            # Blob uploads arrive as application/octet-stream; only manifest pushes matter to Tollgate.
            "ignoredmediatypes": ["application/octet-stream"],
            # Tollgate's own workers pull constantly; their pull events would flood the webhook.
            "ignore": {"mediatypes": [DUMMY_IGNORED_MEDIA_TYPE], "actions": ["pull"]},
        }
        if notify_token:
            endpoint["headers"] = {"Authorization": [f"Bearer {notify_token}"]}
        config["notifications"] = {"events": {"includereferences": True}, "endpoints": [endpoint]}
    return yaml.safe_dump(config, sort_keys=False)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workers.registry_config --addr … --root …``: print (or write) a config for ``make run``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", required=True, help="listen address, e.g. 127.0.0.1:5000")
    parser.add_argument("--root", required=True, type=Path, help="filesystem storage directory")
    parser.add_argument("--notify-url", default=None, help="Tollgate webhook URL")
    parser.add_argument("--notify-token-file", type=Path, default=None, help="file holding the webhook token")
    parser.add_argument("--htpasswd", type=Path, default=None)
    parser.add_argument("--debug-addr", default=None)
    parser.add_argument("--output", type=Path, default=None, help="write here (mode 0600) instead of stdout")
    args = parser.parse_args(argv)
    token = args.notify_token_file.read_text().strip() if args.notify_token_file else None
    text = render_registry_config(
        addr=args.addr,
        root=args.root,
        notify_url=args.notify_url,
        notify_token=token,
        htpasswd=args.htpasswd,
        debug_addr=args.debug_addr,
    )
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.touch(mode=0o600)
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
