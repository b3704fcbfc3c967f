"""The shared domain: settings, models, errors, database, bundle storage. Imports no other project package."""
