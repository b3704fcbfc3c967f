"""The Ray Serve deployment, the FastAPI app and the CLI. Never imports `panel_dashboard`."""
