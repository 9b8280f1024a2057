"""HTTP/3 (RFC 9114) over QUIC (aioquic): one Http3Connection per QUIC connection.

connection.py       Http3Connection: QUIC/HTTP/3 events in, HTTPStreams out; limits, shutdown
stream.py           H3StreamTransport: the per-request-stream StreamTransport
framing.py          RoadrunnerH3Connection: aioquic's H3 layer with our SETTINGS and stream errors
quic_connection.py  CreditQuicConnection (receive credit follows the app) and the QUIC config

The UDP socket, connection-ID routing and datagram batching live in roadrunner.protocols.quic.
"""
