"""The ASGI side: scope building, message validation and the Stream classes."""
