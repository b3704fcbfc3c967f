"""DuckDB over the lake, detector models, alert rule logic, batch jobs. No `ray`; imports only `core`."""
