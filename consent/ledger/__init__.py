"""The consent ledger: append-only events in per-stream hash chains (`chain`), and a
verifiable log over them (`merkle`, `log`, `notes`, `keys`): every event gets an index
in a per-site RFC 9162 Merkle tree whose signed checkpoints, inclusion and consistency
proofs let an outsider check that nothing they saw was rewritten.

Other modules import from `consent.ledger` only; the submodules are its parts.
"""
from __future__ import annotations

from .chain import (ACTIONS, GENESIS, HASH_VERSION, SOURCES, STATE_COLUMNS,  # noqa: F401
                    AppendedEvent, ConsentEvent, ConsentState, Details, EventDetails,
                    LedgerCheckpoint, LedgerHead, LedgerPurgePermit, VerifyProblem,
                    VerifyReport, append_event, append_only_ddl, apply_event, canonical,
                    carry_forward_states, chain_hash, compute_states, current_states,
                    details_digest, drop_append_only_ddl, event_fields,
                    find_by_idempotency_key, hashed_fields, history, normalise_state,
                    on_append, read_state, rebuild_states, state_from_snapshot,
                    set_region_hook, state_snapshot, stream_for, verify_ledger)
from .log import (LogCheckpoint, LogLeaf, LogNode, LogStream, integrate,  # noqa: F401,E402
                  integrate_site)
