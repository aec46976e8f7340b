"""`padhash serve RUN`: the victim run as an HTTP retrieval service (padhash.service)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from padhash.errors import PadhashError

TOKEN_ENV = {"ingest": "PADHASH_INGEST_TOKEN", "admin": "PADHASH_ADMIN_TOKEN", "search": "PADHASH_SEARCH_TOKEN"}


def register(commands) -> None:
    from padhash.service.app import Settings

    d = Settings()
    p = commands.top.add_parser(
        "serve", help="serve a `padhash train` run as an HTTP image-search service (search, items, ingestion, "
                      "retraining; OpenAPI docs at /docs)",
        description="Serve RUN over HTTP. Tokens come from the flags, else from PADHASH_INGEST_TOKEN / "
                    "PADHASH_ADMIN_TOKEN / PADHASH_SEARCH_TOKEN; an unset ingest or admin token is generated and "
                    "printed once at start-up; search is open unless a search token is set.")
    p.add_argument("run", type=Path, help="run folder written by `padhash train`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--state", type=Path, help="service state folder: database, models, jobs (default RUN/service)")
    p.add_argument("--topk", type=int, default=d.topk, help=f"results per search by default (default {d.topk})")
    p.add_argument("--max-topk", type=int, default=d.max_topk, help=f"most results per search (default {d.max_topk})")
    for name in TOKEN_ENV:
        p.add_argument(f"--{name}-token", help=f"bearer token for {name} (default ${TOKEN_ENV[name]})")
    p.add_argument("--max-upload-bytes", type=int, default=d.max_upload_bytes, help="largest upload accepted")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="largest width×height accepted")
    p.add_argument("--search-rate", type=float, default=d.search_rate, help="searches/s per client host")
    p.add_argument("--search-burst", type=int, default=d.search_burst, help="searches a client may burst")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and numba threads (default 1: a search is one small forward pass and one query's "
                        "Hamming search, requests run in parallel threads; more made searches slower on 2 cores)")
    p.add_argument("--ties", choices=("random", "oldest"), default=d.ties,
                   help="order of items at the same Hamming distance: random (default; a fixed pseudo-random key per "
                        "item, as an arbitrary real index) or oldest (by id: uploads lose every tie)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from padhash.service.app import Settings, create_app

    if args.max_upload_bytes < 1 or args.max_pixels < 1 or args.search_rate <= 0 or args.search_burst < 1:
        raise PadhashError("--max-upload-bytes, --max-pixels, --search-rate and --search-burst must be positive")
    if args.threads < 1:
        raise PadhashError(f"--threads must be ≥ 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    tokens = {name: getattr(args, f"{name}_token") or os.environ.get(env) or None for name, env in TOKEN_ENV.items()}
    settings = Settings(topk=args.topk, max_topk=args.max_topk, ingest_token=tokens["ingest"],
                        admin_token=tokens["admin"], search_token=tokens["search"],
                        max_upload_bytes=args.max_upload_bytes, max_pixels=args.max_pixels,
                        search_rate=args.search_rate, search_burst=args.search_burst, state_dir=args.state,
                        device=args.device, threads=args.threads, ties=args.ties)
    app = create_app(args.run, settings)
    for name in ("ingest", "admin"):
        if tokens[name] is None:  # generated: shown once, here, and nowhere else
            print(f"{name} token (generated): {app.state.tokens[name]}", flush=True)
    engine = app.state.engine
    print(f"serving {args.run} ({len(engine.store)} items, generation {engine.snapshot.generation}) on "
          f"http://{args.host}:{args.port}  (docs: /docs)", flush=True)
    sys.stdout.flush()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
