"""HTTP: the FastAPI app, its dependency providers, routers, the pure-ASGI fast paths and the one error
mapping. Imports the platform and the packages below it; never `cli` or `deployment`."""
