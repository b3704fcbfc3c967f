"""After a result is committed: the Prometheus/lake/detector feed and completion destinations. Imports
`dispatch`, `write`, `analytics`, `core`; never `http` or the platform."""
