"""The cookie and tracker scanner: visits a site's pages in headless Chromium, records
what is stored and contacted before any choice, after "Reject all" and after "Accept
all", matches it against the Open Cookie Database, and turns it into services of the
site's categories ("Apply").

- crawler.py: the browser passes (no database), guard.py: the address guard it runs behind
- ocd.py: the Open Cookie Database snapshot (data/) and its matching
- models.py, service.py: scans, findings, schedules, the worker's claims, Apply
- report.py: findings judged against the site's configuration; JSON and CSV
- commands.py: `flask consent scan`, `scan-worker`, `ocd-refresh`
"""
from . import commands, models  # noqa: F401  (tables and `flask consent` commands)
