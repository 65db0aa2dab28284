"""Imports every model so the metadata (create_all, Alembic) knows all tables."""
from .sites import Category, Site, SiteApiKey  # noqa: F401
from .policies import PolicyVersion  # noqa: F401
from .subjects import Subject  # noqa: F401
from .ledger import (ConsentEvent, ConsentState, EventDetails, LedgerCheckpoint,  # noqa: F401
                     LedgerHead, LedgerPurgePermit)
