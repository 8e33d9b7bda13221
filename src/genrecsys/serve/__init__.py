"""Serving: `recommend` (top-K for the CLI), `service` (runs in memory, micro-batching,
reload), `app` (the FastAPI service and web page), `chat` (the conversational
recommender), `load` (the loopback load test)."""
