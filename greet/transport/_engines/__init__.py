"""The two HTTP/2 engines behind greet.transport._engine's `Http2Engine` seam: `nghttp2`
(libnghttp2 through ngh2) and `h2` (pure-Python h2, with h2's helpers beside it)."""
