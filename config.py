"""Settings for development, testing and production, read from the environment."""
from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
DEFAULT_SECRET = "dev-insecure-change-me"


def _env_number(name: str, default, kind=int, *, minimum=0, check=None):
    """Read a number setting from the environment; a bad value stops start-up naming it."""
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        number = kind(value)
    except ValueError:
        raise RuntimeError(f"{name}={value!r} is not {'an integer' if kind is int else 'a number'}")
    if number < minimum or (check is not None and not check(number)):
        raise RuntimeError(f"{name}={value!r} is out of range")
    return number


def _env_int(name: str, default: int) -> int:
    """Read a non-negative integer setting from the environment."""
    return _env_number(name, default)


class Config:
    """Settings shared by every environment."""

    SECRET_KEY = os.environ.get("SECRET_KEY", DEFAULT_SECRET)
    # Keyed pseudonyms (user ids, channel addresses) use their own key so that rotating
    # SECRET_KEY (sessions, signed links) does not orphan every stored pseudonym.
    CONSENT_HMAC_KEY = os.environ.get("CONSENT_HMAC_KEY", "")
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "CONSENT_DATABASE_URL", f"sqlite:///{BASE_DIR / 'instance' / 'consent.sqlite3'}"
    )
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    # Bodies of consent requests are small; anything larger is refused with 413.
    MAX_CONTENT_LENGTH = _env_int("CONSENT_MAX_BODY_BYTES", 64 * 1024)
    # SQLite: seconds a writer waits for the write lock before giving up (then 503).
    CONSENT_SQLITE_BUSY_TIMEOUT = _env_int("CONSENT_SQLITE_BUSY_TIMEOUT", 30)
    # SQLite synchronous mode in WAL: NORMAL survives a killed process; FULL also
    # survives power loss at the cost of an fsync per commit.
    CONSENT_SQLITE_SYNCHRONOUS = os.environ.get("CONSENT_SQLITE_SYNCHRONOUS", "NORMAL")
    # SQLite tuning (docs/performance.md). Seconds between background checkpoints:
    # frequent small ones keep the fsyncs short (with 1 s, each flushed ~70 MB of WAL and
    # writers stalled behind the writeback). The WAL starts again from its beginning once
    # it holds WAL_RESTART_BYTES (each restart costs one writer a short pause). New
    # databases get PAGE_SIZE pages (a power of two, 512-65536): a consent write changes
    # ~20 b-tree pages, each written whole to the WAL and copied back by checkpoints, and
    # 2 KiB pages about halve that traffic (+10% writes/s, p99 30 -> 20 ms measured).
    CONSENT_SQLITE_CHECKPOINT_SECONDS = _env_number(
        "CONSENT_SQLITE_CHECKPOINT_SECONDS", 0.25, float, minimum=0.01)
    CONSENT_SQLITE_WAL_RESTART_BYTES = _env_number(
        "CONSENT_SQLITE_WAL_RESTART_BYTES", 32 * 1024 * 1024, minimum=1024 * 1024)
    CONSENT_SQLITE_PAGE_SIZE = _env_number(
        "CONSENT_SQLITE_PAGE_SIZE", 2048, minimum=512,
        check=lambda n: n <= 65536 and n & (n - 1) == 0)
    # Per-process cache of site configuration used by the hot write path.
    CONSENT_SITE_CACHE_SECONDS = _env_int("CONSENT_SITE_CACHE_SECONDS", 5)
    # How long browsers may reuse the widget configuration without asking again.
    CONSENT_CONFIG_MAX_AGE = _env_int("CONSENT_CONFIG_MAX_AGE", 300)
    # Independent hash chains per site; writes to different streams of a site do not
    # wait for each other on PostgreSQL.
    CONSENT_LEDGER_STREAMS = _env_int("CONSENT_LEDGER_STREAMS", 8)
    CONSENT_TRUST_PROXY = os.environ.get("CONSENT_TRUST_PROXY", "") == "1"
    # Region rules (consent.regions, docs/regions.md): headers the CDN or proxy in front
    # sets with the visitor's country (and subdivision), trusted only when named here:
    # presets cloudflare, cloudfront, vercel, fastly, or Country-Header[:Region-Header].
    CONSENT_REGION_HEADERS = os.environ.get("CONSENT_REGION_HEADERS", "")
    # Without a trusted header, the country from the offline IP database (0: off).
    CONSENT_REGION_IP = os.environ.get("CONSENT_REGION_IP", "1") != "0"
    # The signing key of checkpoints, exports and retention checkpoints: its own secret,
    # never derived from SECRET_KEY (consent.ledger.keys). Old public keys stay published.
    CONSENT_SIGNING_KEY = os.environ.get("CONSENT_SIGNING_KEY", "")
    CONSENT_SIGNING_KEY_PREVIOUS = os.environ.get("CONSENT_SIGNING_KEY_PREVIOUS", "")
    CONSENT_SIGNING_KEY_FILE = os.environ.get("CONSENT_SIGNING_KEY_FILE", "")
    # The verifiable log (consent.ledger.log). Origin line of every site's checkpoints,
    # `{site}` replaced by the site key: the log's identity, so set it once, before the
    # first checkpoint (default: the host of CONSENT_PUBLIC_URL, else "consent.local").
    CONSENT_LOG_ORIGIN = os.environ.get("CONSENT_LOG_ORIGIN", "")
    # Seconds between runs of the integrator thread in each web process (one process
    # integrates at a time); 0 leaves integration to `flask consent integrate` (cron).
    CONSENT_LOG_INTEGRATE_SECONDS = _env_number("CONSENT_LOG_INTEGRATE_SECONDS", 10.0, float)
    # How old the oldest event not yet in the log may get before `/healthz` says the log
    # is behind and `flask consent check-log` exits 1 (integration stopped: no elected
    # process, cron not running, a stream refused). Above the integration interval, or
    # the cron period when that is 0.
    CONSENT_LOG_MAX_LAG_SECONDS = _env_number("CONSENT_LOG_MAX_LAG_SECONDS", 600.0, float)
    # Events given log indexes per transaction (bounds how long an integration holds
    # SQLite's write lock).
    CONSENT_LOG_BATCH = _env_number("CONSENT_LOG_BATCH", 2000, minimum=1)
    # Where this machine's signer keeps the latest checkpoint it signed of each log,
    # outside the database (consent.ledger.signer_state); default instance/log-state/.
    # Each signing machine keeps its own; keep it from database administrators.
    CONSENT_LOG_STATE_DIR = os.environ.get("CONSENT_LOG_STATE_DIR", "")
    # How long clients may cache the latest checkpoint.
    CONSENT_CHECKPOINT_MAX_AGE = _env_int("CONSENT_CHECKPOINT_MAX_AGE", 5)
    # Trusted reverse proxies in front of the app (werkzeug ProxyFix): how many hops of
    # X-Forwarded-For / -Proto / -Host / -Port / -Prefix to believe. 0 = ignore the header.
    # CONSENT_TRUST_PROXY=1 alone means one proxy for X-Forwarded-For and -Proto.
    CONSENT_PROXY_FOR = _env_int("CONSENT_PROXY_FOR", 1 if CONSENT_TRUST_PROXY else 0)
    CONSENT_PROXY_PROTO = _env_int("CONSENT_PROXY_PROTO", 1 if CONSENT_TRUST_PROXY else 0)
    CONSENT_PROXY_HOST = _env_int("CONSENT_PROXY_HOST", 0)
    CONSENT_PROXY_PORT = _env_int("CONSENT_PROXY_PORT", 0)
    CONSENT_PROXY_PREFIX = _env_int("CONSENT_PROXY_PREFIX", 0)
    # Where the app is reached (https://consent.example.com[/prefix]). Every link and
    # widget configuration is built from it, never from the request's Host header;
    # requests for another host are refused. Required (https) in production.
    CONSENT_PUBLIC_URL = os.environ.get("CONSENT_PUBLIC_URL", "").strip()
    # Further host names the app answers to (comma-separated), besides the public URL's.
    CONSENT_EXTRA_HOSTS = [h.strip() for h in os.environ.get("CONSENT_EXTRA_HOSTS", "")
                           .split(",") if h.strip()]
    # Encrypts secrets the server must read back (webhook signing secrets, linked-account
    # tokens). Required in production; elsewhere derived from SECRET_KEY.
    CONSENT_DATA_KEY = os.environ.get("CONSENT_DATA_KEY", "")
    # An admin session ends this many hours after sign-in.
    CONSENT_ADMIN_SESSION_HOURS = _env_number("CONSENT_ADMIN_SESSION_HOURS", 12, float,
                                              minimum=0.01)
    # Access links (answers to access requests) work this many days.
    CONSENT_ACCESS_LINK_DAYS = _env_number("CONSENT_ACCESS_LINK_DAYS", 30, minimum=1)
    # Request line and header limits answered with problem+json (below gunicorn's own
    # 4094-byte line / 8190-byte field limits, whose answers are HTML).
    CONSENT_MAX_URL_BYTES = _env_number("CONSENT_MAX_URL_BYTES", 4000, minimum=256)
    CONSENT_MAX_HEADER_BYTES = _env_number("CONSENT_MAX_HEADER_BYTES", 8000, minimum=1024)
    CONSENT_MAX_JSON_DEPTH = _env_number("CONSENT_MAX_JSON_DEPTH", 32, minimum=2)
    # Rate limits (Flask-Limiter syntax, e.g. "600 per minute; 50 per second").
    # Storage: memory:// counts per worker process; redis://host:6379 (or memcached://)
    # shares the counts between processes and machines.
    CONSENT_RATELIMIT_ENABLED = os.environ.get("CONSENT_RATELIMIT_ENABLED", "1") != "0"
    CONSENT_RATELIMIT_STORAGE_URI = os.environ.get("CONSENT_RATELIMIT_STORAGE_URI",
                                                   "memory://")
    # Client addresses never limited (comma-separated IPs/networks), e.g. a load test.
    CONSENT_RATELIMIT_EXEMPT = [a.strip() for a in os.environ.get(
        "CONSENT_RATELIMIT_EXEMPT", "").split(",") if a.strip()]
    CONSENT_RATELIMIT_PUBLIC = os.environ.get(
        "CONSENT_RATELIMIT_PUBLIC", "1200 per minute; 100 per second")
    CONSENT_RATELIMIT_API_KEY = os.environ.get(
        "CONSENT_RATELIMIT_API_KEY", "6000 per minute; 300 per second")
    CONSENT_RATELIMIT_BAD_KEY = os.environ.get(
        "CONSENT_RATELIMIT_BAD_KEY", "30 per minute")
    CONSENT_RATELIMIT_ADMIN = os.environ.get("CONSENT_RATELIMIT_ADMIN", "600 per minute")
    CONSENT_RATELIMIT_SIGN_IN_ACCOUNT = os.environ.get(
        "CONSENT_RATELIMIT_SIGN_IN_ACCOUNT", "10 per 15 minutes")
    CONSENT_RATELIMIT_SIGN_IN_ADDRESS = os.environ.get(
        "CONSENT_RATELIMIT_SIGN_IN_ADDRESS", "30 per 15 minutes")

    API_TITLE = "Consent manager API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"
    API_SPEC_OPTIONS = {
        "info": {"description": "Record and read consent, tell senders who may be "
                                "messaged, notify downstream systems, audit the trail. "
                                "Every error is RFC 9457 application/problem+json with "
                                "per-field `errors`. See README.md and docs/."},
        "components": {
            "securitySchemes": {
                "siteApiKey": {"type": "http", "scheme": "bearer",
                               "description": "The site's API key (ck_...)"},
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "An admin API token with scopes"},
                "smsGatewayBasic": {"type": "http", "scheme": "basic",
                                    "description": "User `sms`, password: the gateway's "
                                                   "inbound token"},
            }
        },
    }
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # Admin password hashing (werkzeug method string: scrypt with N=2^15, r=8, p=1).
    ADMIN_PASSWORD_HASH = "scrypt:32768:8:1"


class DevelopmentConfig(Config):
    """Local development: the embedded SQLite database, debug helpers."""

    ENV_NAME = "development"


class TestingConfig(Config):
    """Test runs: the database URL comes from the test fixtures."""

    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "testing-secret"
    CONSENT_SITE_CACHE_SECONDS = 0
    # A fixed key, so every test app and test server signs alike (never in production).
    CONSENT_SIGNING_KEY = os.environ.get("CONSENT_SIGNING_KEY", "7e57" * 16)
    # Tests integrate explicitly (or through the HTTP endpoints), never behind their back.
    CONSENT_LOG_INTEGRATE_SECONDS = _env_number("CONSENT_LOG_INTEGRATE_SECONDS", 0.0, float)
    # Test clients and the test servers call from loopback, thousands of requests a run;
    # tests/security/ checks the limits on apps in development and production mode.
    CONSENT_RATELIMIT_EXEMPT = ["127.0.0.1", "::1"]
    # Thousands of test sign-ins: a cheap scrypt (~1.5 ms instead of ~0.4 s a hash). What
    # the production cost is, tests/test_admin_auth.py checks on the development settings.
    ADMIN_PASSWORD_HASH = "scrypt:256:8:1"


class ProductionConfig(Config):
    """Production: refuses to start without a real secret."""

    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = True


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_for(name: str | None = None) -> type[Config]:
    """Return the settings class for NAME or for $CONSENT_ENV (default development)."""
    name = name or os.environ.get("CONSENT_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"unknown CONSENT_ENV {name!r}; use one of {sorted(CONFIGS)}")
