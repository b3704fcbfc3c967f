"""The console (Panel): logs in with an API key, then reads and acts through the REST API only.
Never imports `serve_app`, `actors` or `cluster`."""
