"""The Panel dashboard: reads through the REST API only. Never imports `serve_app`, `actors` or `cluster`."""
