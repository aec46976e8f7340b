"""The victim as an HTTP retrieval service (search, items, ingestion, retraining) and the attacker's client.

`create_app(run_dir, Settings(...))` builds the FastAPI app over a `padhash train` run (`padhash serve RUN`);
`ServiceClient(url, ...)` speaks to it. No attack code lives here: experiments wire the client to the attacks.
"""
from padhash.service.app import Settings, create_app
from padhash.service.client import ServiceClient

__all__ = ["ServiceClient", "Settings", "create_app"]
