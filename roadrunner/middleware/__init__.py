"""Edge middleware: plain ASGI wrappers usable with any ASGI app."""
