"""HTTP API v1: routers, schemas, problem+json rendering, middleware and dependencies."""
