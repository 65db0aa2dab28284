"""gunicorn settings of the consent manager (read from the current directory by default;
`make run` passes it explicitly). Anything here can be overridden on the command line."""

# The access log without the tokens of access, login and unsubscribe links.
logger_class = "consent.gunicorn_logging.RedactingLogger"

# gunicorn answers oversized request lines and headers itself, in HTML. Its limits sit
# above the app's (CONSENT_MAX_URL_BYTES 4000, CONSENT_MAX_HEADER_BYTES 8000), so the app
# answers first, with problem+json; only requests beyond these reach gunicorn's pages.
limit_request_line = 8190
limit_request_field_size = 16380
