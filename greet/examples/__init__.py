"""Runnable examples of greet's public APIs: `python -m greet.examples.<name> --help`.

rate_limit  a server interceptor of your own: a per-method rate limit (RESOURCE_EXHAUSTED)
"""
