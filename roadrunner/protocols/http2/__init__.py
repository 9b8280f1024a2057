"""HTTP/2 (RFC 9113): one engine-agnostic connection over two engines.

connection.py  Http2Connection: events in, HTTPStreams out; guards, flushing
lifetime.py    ConnectionLifetime (its mixin): preface and idle timers, graceful shutdown
stream.py      H2StreamTransport: the per-stream StreamTransport
rules.py       request / trailer field checks and the scope, hop-by-hop fields, our SETTINGS
guards.py      RateGuard, guard_counters, the header-block cap's error
engine.py      the H2Engine interface and the choice of engine (--http2-engine)
h2_engine.py   the pure-Python engine: h2 with our caps
_nghttp2.pyx   the compiled engine on libnghttp2 (+ _nghttp2_callbacks.pxi, _nghttp2_api.pxd)
upgrade.py     h2c Upgrade from HTTP/1.1
"""
