"""Control-plane services: function definitions and deploy parsing, pipelines and their continuations.
Imports `dispatch`, `write`, `catalog`, `tasks`, `core`; never `http` or the platform."""
