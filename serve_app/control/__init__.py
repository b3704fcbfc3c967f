"""Control-plane services: function definitions and deploy parsing, pipelines and their continuations.
Imports `dispatch`, `write`, `catalog`, `core`; never `http` or the platform."""
