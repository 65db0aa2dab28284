"""Imports every model so the metadata (create_all, Alembic) knows all tables.

Domain modules listed in OPTIONAL_MODULES are imported when present: importing them
registers their tables, their ledger listeners and their `flask consent` commands.
"""
import importlib
import importlib.util

from .sites import Category, Site, SiteApiKey  # noqa: F401
from .policies import PolicyVersion  # noqa: F401
from .subjects import Subject  # noqa: F401
from .ledger import (ConsentEvent, ConsentState, EventDetails, LedgerCheckpoint,  # noqa: F401
                     LedgerHead, LedgerPurgePermit, LogCheckpoint, LogLeaf, LogNode,
                     LogStream)

OPTIONAL_MODULES = (
    "consent.channels",     # message channels, opt-outs, one-click unsubscribe
    "consent.sms_gateways", # SMS gateways' inbound credentials and signing secrets
    "consent.identity",     # linking visitors to a site's known users
    "consent.refusals",     # decisions the server refused, counted for the dashboard
    "consent.admin_auth",   # admin users and scoped API tokens
    "consent.audit",        # export, offline verification
    "consent.requests",     # access and erasure requests with deadlines
    "consent.retention",    # purge with signed checkpoints
    "consent.outbox",       # downstream webhooks
    "consent.profiles",     # ready-made site profiles from the seed policies
    "consent.transparency", # the verifiable log's commands: integrate, witness, receipts
    "consent.guardians",    # guardian requests: a minor's grants wait for a signed link
    "consent.site_history", # who changed a site's configuration, and what
    "consent.scanner",      # cookie and tracker scans, the Open Cookie Database
    "consent.notices",      # what the person was shown when deciding
)

for _name in OPTIONAL_MODULES:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name)
