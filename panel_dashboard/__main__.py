"""`python -m panel_dashboard --port N`: serve the dashboard."""

from panel_dashboard.server import main

main()
