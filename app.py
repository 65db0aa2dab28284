"""Entry point for `flask` and gunicorn: `gunicorn app:app`."""
from consent import create_app

app = create_app()
