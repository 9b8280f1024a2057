# cython: language_level=3, boundscheck=False, wraparound=False
"""The nghttp2 HTTP/2 engine: libnghttp2 owns framing, HPACK, stream states and flow control.

`Session` implements `engine.H2Engine` (the subset of h2's H2Connection that Http2Connection
uses) and returns the same h2.events objects, so the connection code is the same on both
engines. The C callbacks collect a whole request head into one list of (name, value) bytes
pairs before one event is built; response bodies are queued as the bytes objects the app sent and written out once,
straight from them, by the send_data callback (NGHTTP2_DATA_FLAG_NO_COPY).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

import h2.events as ev
from h2.exceptions import (
    DenialOfServiceError,
    FlowControlError,
    ProtocolError,
    StreamClosedError,
)


from roadrunner.protocols.http2._nghttp2_api cimport *

from roadrunner.protocols.http2.guards import HeaderBlockTooLarge


include "_nghttp2_callbacks.pxi"

RequestReceived = ev.RequestReceived
TrailersReceived = ev.TrailersReceived
DataReceived = ev.DataReceived
StreamEnded = ev.StreamEnded
StreamReset = ev.StreamReset
WindowUpdated = ev.WindowUpdated
RemoteSettingsChanged = ev.RemoteSettingsChanged
PingReceived = ev.PingReceived
ConnectionTerminated = ev.ConnectionTerminated


cdef class Session:
    """One server-side nghttp2 session: an engine.H2Engine (h2's interface, the subset we use)."""

    cdef nghttp2_session *session
    cdef char *out
    cdef size_t out_len, out_cap
    cdef list events
    cdef dict outbound
    cdef dict length_left       # stream id -> request body bytes content-length still allows
    cdef Py_ssize_t queued      # body bytes queued on all streams, not yet framed
    cdef list head
    cdef size_t head_size, list_cap, block_size, block_limit
    cdef int block_frames, block_max_frames
    cdef int32_t data_stream
    cdef object data_chunks
    cdef object error
    cdef object error_text
    cdef bint flow_error
    cdef bint goaway_received
    cdef int lib_error          # nghttp2's error code for the last invalid frame
    cdef list invalid           # (stream id, frame type) of stream errors nghttp2 found
    cdef object counters, malformed_log
    cdef list settings
    cdef uint8_t hdr[13]        # the frame header being read (and a WINDOW_UPDATE's body)
    cdef size_t hdr_len, pass_left, skip_left, magic_left
    cdef set remote_ended       # streams whose request has ended (half-closed remote)
    cdef dict closed_ids        # recently closed stream ids, oldest first
    cdef bint settings_unpatched    # our SETTINGS frame is still to be patched
    cdef uint32_t max_streams_wire  # the SETTINGS_MAX_CONCURRENT_STREAMS we advertise

    def __cinit__(self):
        self.session = NULL
        self.out = NULL
        self.settings_unpatched = False

    def __init__(self, list settings, size_t header_block_limit, int header_block_frames,
                 size_t header_list_cap, size_t table_cap, object counters, object malformed_log):
        cdef nghttp2_option *option
        self.events = []
        self.outbound = {}
        self.remote_ended = set()
        self.closed_ids = {}
        self.hdr_len = self.pass_left = self.skip_left = 0
        self.magic_left = 24  # the client connection preface (RFC 9113 §3.4)
        self.length_left = {}
        self.settings = settings
        self.block_limit = header_block_limit
        self.block_max_frames = header_block_frames
        self.list_cap = header_list_cap
        self.counters = counters
        self.malformed_log = malformed_log
        # The output buffer is allocated when frames are serialized and freed once they are
        # handed out with no response left in progress: an idle session holds none.
        self.out_cap = 0
        nghttp2_option_new(&option)
        try:
            # The app consumes request bodies: windows open as it reads (nghttp2_session_consume).
            nghttp2_option_set_no_auto_window_update(option, 1)
            # Request fields are checked by rules.build_scope (as on the h2 engine),
            # so a malformed request gets roadrunner's answer, log line and counter.
            nghttp2_option_set_no_http_messaging(option, 1)
            # The flood guards are roadrunner's (RateGuard, the header-block cap): nghttp2's own
            # limits stay above them so the documented ENHANCE_YOUR_CALM answers come first.
            nghttp2_option_set_max_outbound_ack(option, 1 << 30)
            nghttp2_option_set_stream_reset_rate_limit(option, 1 << 62, 1 << 62)
            nghttp2_option_set_max_continuations(option, 1 << 30)
            nghttp2_option_set_max_deflate_dynamic_table_size(option, table_cap)
            nghttp2_option_set_max_settings(option, 1 << 16)
            if nghttp2_session_server_new2(&self.session, CALLBACKS, <void *>self, option):
                raise MemoryError()
        finally:
            nghttp2_option_del(option)

    def __dealloc__(self):
        if self.session != NULL:
            nghttp2_session_del(self.session)
        free(self.out)

    cdef void fail(self, str guard, int code, str text):
        """A connection error found by roadrunner's rules: GOAWAY(code), raised after mem_recv."""
        try:
            if guard == "header_block":
                # header_list is counted by Http2Connection.on_protocol_error, as on h2.
                self.counters[guard] += 1
                exc = HeaderBlockTooLarge(text)
            elif guard == "header_list":
                exc = DenialOfServiceError(text)
            else:
                exc = ProtocolError(text)
            exc.error_code = code
            self.error = exc
            nghttp2_submit_goaway(self.session, 0, nghttp2_session_get_last_proc_stream_id(
                self.session), code, NULL, 0)
        except BaseException:
            pass

    # -- receiving --------------------------------------------------------------------------------

    def receive_data(self, bytes data):
        cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
        cdef const uint8_t *end = p + PyBytes_GET_SIZE(data)
        cdef size_t n, need
        self.error = None
        self.error_text = None
        self.flow_error = False
        self.lib_error = 0
        self.invalid = []
        # Frames go to nghttp2 one at a time, each header first seen by screen(): the rules
        # where roadrunner answers differently from nghttp2 apply with the stream states
        # of all frames before it.
        while p < end and self.error is None:
            if self.magic_left:
                n = min(self.magic_left, <size_t>(end - p))
                if not self.feed(p, n):
                    break
                self.magic_left -= n
                p += n
                continue
            if self.pass_left:
                n = min(self.pass_left, <size_t>(end - p))
                if not self.feed(p, n):
                    break
                self.pass_left -= n
                p += n
                continue
            if self.skip_left:
                n = min(self.skip_left, <size_t>(end - p))
                self.skip_left -= n
                p += n
                continue
            need = 9
            if self.hdr_len >= 9 and self.hdr[3] == NGHTTP2_WINDOW_UPDATE:
                need = 13  # the increment decides (RFC 9113 §6.9)
            n = min(need - self.hdr_len, <size_t>(end - p))
            memcpy(self.hdr + self.hdr_len, p, n)
            self.hdr_len += n
            p += n
            if self.hdr_len == 9 and self.hdr[3] == NGHTTP2_WINDOW_UPDATE and (
                    self.hdr[0] == 0 and self.hdr[1] == 0 and self.hdr[2] == 4):
                continue
            if self.hdr_len < need:
                continue
            self.screen()
        events = self.events
        self.events = []
        if self.error is not None:
            raise self.error
        if self.flow_error:
            raise FlowControlError(self.error_text or "flow control window overflow")
        # nghttp2 queues GOAWAY for a connection error it finds; once it is serialized the
        # session wants no more input.
        self.flush_session()
        if not nghttp2_session_want_read(self.session) and not self.goaway_received:
            raise ProtocolError(self.error_text or nghttp2_strerror(self.lib_error).decode())
        for stream_id, kind in self.invalid:
            event = StreamReset.__new__(StreamReset)
            event.stream_id = stream_id
            event.error_code = 1
            event.remote_reset = False
            events.append(event)
        return events

    cdef bint feed(self, const uint8_t *data, size_t length):
        cdef ssize_t rv = nghttp2_session_mem_recv(self.session, data, length)
        if rv < 0:
            if self.error is None:
                self.error = ProtocolError(nghttp2_strerror(<int>rv).decode())
            return False
        return True

    cdef screen(self):
        """Decide one frame from its header: hand it to nghttp2, or answer it here."""
        cdef uint8_t *h = self.hdr
        cdef size_t length = (h[0] << 16) | (h[1] << 8) | h[2]
        cdef int kind = h[3]
        cdef int32_t stream_id = ((h[5] & 0x7F) << 24) | (h[6] << 16) | (h[7] << 8) | h[8]
        cdef size_t have = self.hdr_len
        self.hdr_len = 0
        if stream_id and kind == NGHTTP2_DATA and stream_id in self.remote_ended:
            # RFC 9113 §5.1: DATA on a half-closed (remote) stream is a stream error of type
            # STREAM_CLOSED (nghttp2 would end the connection). The connection window the
            # frame used is handed back.
            self.skip_left = length
            self.remote_ended.discard(stream_id)
            self.reset_closed(stream_id, length)
            return
        if stream_id and kind == NGHTTP2_WINDOW_UPDATE and length == 4 and not (
                (h[9] & 0x7F) | h[10] | h[11] | h[12]):
            if nghttp2_session_find_stream(self.session, stream_id) != NULL:
                # RFC 9113 §6.9: a zero increment on a stream is a stream error.
                self.malformed(stream_id, "WINDOW_UPDATE of 0")
                return
            if stream_id <= nghttp2_session_get_last_proc_stream_id(self.session):
                return  # §6.9: WINDOW_UPDATE on a closed stream is ignored
        if kind == NGHTTP2_HEADERS and stream_id & 1 and (
                stream_id < nghttp2_session_get_last_proc_stream_id(self.session)) and (
                nghttp2_session_find_stream(self.session, stream_id) == NULL) and (
                stream_id not in self.closed_ids):
            # RFC 9113 §5.1.1: a new stream id must exceed every one the client used before
            # (nghttp2 would ignore the frame).
            self.fail(None, 1, "stream id lower than a previous one")
            return
        if kind == NGHTTP2_PING or kind == NGHTTP2_SETTINGS:
            # nghttp2 sends its ACKs ahead of everything queued: what earlier frames caused
            # (an RST_STREAM) is serialized first, so answers keep the order of the frames
            # that caused them, as on h2 (a PING after a broken rule sees its RST_STREAM first).
            self.flush_session()
        if self.feed(h, have):
            self.pass_left = length - (have - 9)

    cdef reset_closed(self, int32_t stream_id, size_t length):
        nghttp2_submit_rst_stream(self.session, 0, stream_id, 5)  # STREAM_CLOSED
        if length:
            nghttp2_submit_window_update(self.session, 0, 0, length)
        event = StreamReset.__new__(StreamReset)
        event.stream_id = stream_id
        event.error_code = 5
        event.remote_reset = False
        self.events.append(event)

    cdef on_frame(self, const nghttp2_frame *frame):
        cdef int kind = frame.hd.type
        cdef int32_t stream_id = frame.hd.stream_id
        cdef bint ended = frame.hd.flags & NGHTTP2_FLAG_END_STREAM
        cdef size_t i
        events = self.events
        if kind == NGHTTP2_DATA:
            event = DataReceived.__new__(DataReceived)
            event.stream_id = stream_id
            data = self.data_chunks if self.data_stream == stream_id and self.data_chunks is not None else b""
            self.data_chunks = None
            self.data_stream = 0
            event.data = data
            # nghttp2 consumes padding itself (NO_AUTO_WINDOW_UPDATE): only the data counts.
            event.flow_controlled_length = len(data)
            event.stream_ended = None
            if stream_id in self.length_left and self.body_overruns(stream_id, len(data), ended):
                return
            events.append(event)
            if ended:
                event.stream_ended = self.end_event(stream_id)
        elif kind == NGHTTP2_HEADERS:
            headers = self.head
            self.head = None
            if frame.headers.cat == NGHTTP2_HCAT_REQUEST:
                event = RequestReceived.__new__(RequestReceived)
                event.stream_id = stream_id
                event.headers = headers
                event.stream_ended = None
                event.priority_updated = None
                if not ended:
                    self.track_length(stream_id, headers)
                events.append(event)
            else:
                if not ended:
                    # RFC 9113 §8.1: a trailer section must end the stream.
                    self.malformed(stream_id, "trailers without END_STREAM")
                    return
                event = TrailersReceived.__new__(TrailersReceived)
                event.stream_id = stream_id
                event.headers = headers
                event.stream_ended = None
                event.priority_updated = None
                if stream_id in self.length_left and self.body_overruns(stream_id, 0, True):
                    return
                events.append(event)
            if ended:
                event.stream_ended = self.end_event(stream_id)
        elif kind == NGHTTP2_WINDOW_UPDATE:
            event = WindowUpdated.__new__(WindowUpdated)
            event.stream_id = stream_id
            event.delta = frame.window_update.window_size_increment
            events.append(event)
        elif kind == NGHTTP2_RST_STREAM:
            if stream_id in self.closed_ids:
                return  # on a stream already closed: nothing to cancel, as on h2 (no event)
            self.remember_closed(stream_id)
            event = StreamReset.__new__(StreamReset)
            event.stream_id = stream_id
            event.error_code = frame.rst_stream.error_code
            event.remote_reset = True
            events.append(event)
        elif kind == NGHTTP2_SETTINGS:
            if not frame.hd.flags & NGHTTP2_FLAG_ACK:
                event = RemoteSettingsChanged()
                for i in range(frame.settings.niv):
                    event.changed_settings[frame.settings.iv[i].settings_id] = frame.settings.iv[i].value
                events.append(event)
        elif kind == NGHTTP2_PING:
            if not frame.hd.flags & NGHTTP2_FLAG_ACK:
                events.append(PingReceived.__new__(PingReceived))
        elif kind == NGHTTP2_GOAWAY:
            self.goaway_received = True
            events.append(ConnectionTerminated())

    cdef remember_closed(self, int32_t stream_id):
        closed = self.closed_ids
        if stream_id not in closed:
            closed[stream_id] = None
            if len(closed) > CLOSED_MEMORY:
                del closed[next(iter(closed))]

    cdef object end_event(self, int32_t stream_id):
        self.remote_ended.add(stream_id)
        event = StreamEnded.__new__(StreamEnded)
        event.stream_id = stream_id
        self.events.append(event)
        return event

    cdef track_length(self, int32_t stream_id, list headers):
        for name, value in headers:
            if name == b"content-length":
                if value.isdigit():
                    self.length_left[stream_id] = int(value)
                return

    cdef bint body_overruns(self, int32_t stream_id, Py_ssize_t size, bint ended):
        # RFC 9113 §8.1.1: DATA that does not add up to content-length is malformed.
        left = self.length_left[stream_id] - size
        if left < 0 or (ended and left):
            self.length_left.pop(stream_id, None)
            self.malformed(stream_id, "request body does not match content-length")
            if size:
                nghttp2_session_consume(self.session, stream_id, size)
            return True
        self.length_left[stream_id] = left
        return False

    cdef malformed(self, int32_t stream_id, str reason):
        self.counters["malformed"] += 1
        self.malformed_log("Malformed HTTP/2 request on stream %d: %s", stream_id, reason)
        nghttp2_submit_rst_stream(self.session, 0, stream_id, 1)  # PROTOCOL_ERROR
        event = StreamReset.__new__(StreamReset)
        event.stream_id = stream_id
        event.error_code = 1
        event.remote_reset = False
        self.events.append(event)

    # -- set-up ---------------------------------------------------------------------------------------

    cdef submit_settings(self):
        cdef Py_ssize_t n = len(self.settings), i
        cdef nghttp2_settings_entry iv[16]
        for i in range(n):
            iv[i].settings_id = self.settings[i][0]
            iv[i].value = self.settings[i][1]
            if iv[i].settings_id == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS:
                # RFC 9113 §5.1.2: a stream past the limit is refused (REFUSED_STREAM) by
                # Http2Connection, as on h2; nghttp2 would end the connection with PROTOCOL_ERROR
                # once the limit is acknowledged. So nghttp2 is told no limit, and the frame on
                # the wire is patched to advertise ours (data_to_send).
                self.max_streams_wire = iv[i].value
                self.settings_unpatched = True
                iv[i].value = 0xFFFFFFFF
        if nghttp2_submit_settings(self.session, 0, iv, n):
            raise ProtocolError("invalid SETTINGS")

    cdef patch_settings(self):
        # Our SETTINGS frame is the first frame nghttp2 writes (the server preface).
        cdef size_t length, i
        cdef uint8_t *frame = <uint8_t *>self.out
        self.settings_unpatched = False
        if self.out_len < 9 or frame[3] != NGHTTP2_SETTINGS or frame[4] & NGHTTP2_FLAG_ACK:
            return
        length = (frame[0] << 16) | (frame[1] << 8) | frame[2]
        for i in range(9, min(9 + length, self.out_len) - 5, 6):
            if frame[i] == 0 and frame[i + 1] == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS:
                value = self.max_streams_wire
                frame[i + 2] = (value >> 24) & 0xFF
                frame[i + 3] = (value >> 16) & 0xFF
                frame[i + 4] = (value >> 8) & 0xFF
                frame[i + 5] = value & 0xFF

    def initiate_connection(self):
        self.submit_settings()

    def initiate_upgrade(self, bytes settings):
        """RFC 7540 §3.2: apply the decoded HTTP2-Settings payload; stream 1 is the upgrading
        request, half-closed (remote)."""
        self.submit_settings()
        if nghttp2_session_upgrade2(self.session, <const uint8_t *>PyBytes_AS_STRING(settings),
                                    len(settings), 0, NULL):
            raise ProtocolError("invalid HTTP2-Settings")
        # RFC 9113 §5.1: DATA on it is a stream error STREAM_CLOSED, as screen() answers.
        self.remote_ended.add(1)

    def settings_acknowledged(self):
        """Never called: nghttp2 applies our HPACK table size itself and reports no ACK event."""

    def increment_flow_control_window(self, int increment, stream_id=None):
        nghttp2_submit_window_update(self.session, 0, stream_id or 0, increment)

    # -- sending ----------------------------------------------------------------------------------

    def send_headers(self, int32_t stream_id, list headers, end_stream=False):
        cdef size_t count
        cdef nghttp2_nv *nva
        cdef nghttp2_data_provider provider
        cdef Outbound out = self.outbound.get(stream_id)
        cdef int rv
        if nghttp2_session_find_stream(self.session, stream_id) == NULL:
            raise StreamClosedError(stream_id)
        if out is not None:
            # Trailers (RFC 9113 §8.1): sent by read_cb once the body queued before them is out.
            out.trailers = headers
            out.ended = True
            self.resume(stream_id, out)
            return
        nva = make_nva(headers, &count)
        try:
            if headers[0][1][:1] == b"1":
                rv = nghttp2_submit_headers(self.session, 0, stream_id, NULL, nva, count, NULL)
            elif end_stream:
                rv = nghttp2_submit_response(self.session, stream_id, nva, count, NULL)
            else:
                out = Outbound()
                provider.source.ptr = <void *>out
                provider.read_callback = read_cb
                rv = nghttp2_submit_response(self.session, stream_id, nva, count, &provider)
                if not rv:
                    self.outbound[stream_id] = out
        finally:
            free(nva)
        if rv:
            raise ProtocolError(nghttp2_strerror(rv).decode())

    def send_data(self, int32_t stream_id, bytes data, end_stream=False):
        cdef Outbound out = self.outbound.get(stream_id)
        if out is None or out.ended:
            raise StreamClosedError(stream_id)
        if data:
            out.chunks.append(data)
            out.queued += len(data)
            self.queued += len(data)
        if end_stream:
            out.ended = True
        self.resume(stream_id, out)

    def end_stream(self, int32_t stream_id):
        self.send_data(stream_id, b"", True)

    cdef resume(self, int32_t stream_id, Outbound out):
        if out.deferred:
            out.deferred = False
            nghttp2_session_resume_data(self.session, stream_id)

    def reset_stream(self, int32_t stream_id, error_code=0):
        cdef Outbound out
        # What was submitted before goes out first, as with h2 (nghttp2 drops the frames of a
        # stream it is resetting).
        self.flush_session()
        out = self.outbound.get(stream_id)
        if out is not None:
            # Kept until stream_close_cb: nghttp2 may still hold the data provider.
            self.queued -= out.queued
            out.queued = 0
            out.chunks = []
            out.pos = 0
            out.ended = True
        nghttp2_submit_rst_stream(self.session, 0, stream_id, int(error_code))

    def acknowledge_received_data(self, size_t nbytes, int32_t stream_id):
        nghttp2_session_consume(self.session, stream_id, nbytes)

    def local_flow_control_window(self, int32_t stream_id):
        cdef int32_t window = nghttp2_session_get_stream_remote_window_size(self.session, stream_id)
        cdef Outbound out = self.outbound.get(stream_id)
        if window < 0 or out is None:
            raise StreamClosedError(stream_id)
        return min(window - out.queued,
                   nghttp2_session_get_remote_window_size(self.session) - self.queued)

    @property
    def closed(self):
        """The client's GOAWAY has arrived: Http2Connection then ends the connection (as on h2)."""
        return self.goaway_received

    @property
    def highest_inbound_stream_id(self):
        """The highest stream id the client opened that nghttp2 processed (h2's attribute)."""
        return nghttp2_session_get_last_proc_stream_id(self.session)

    @property
    def output_capacity(self):
        """Bytes of output buffer the session holds (none once it is idle)."""
        return self.out_cap

    @property
    def max_outbound_frame_size(self):
        return nghttp2_session_get_remote_settings(self.session, NGHTTP2_SETTINGS_MAX_FRAME_SIZE)

    def close_connection(self, error_code=0, additional_data=None, last_stream_id=None):
        if last_stream_id is None:
            last_stream_id = nghttp2_session_get_last_proc_stream_id(self.session)
        self.flush_session()
        nghttp2_submit_goaway(self.session, 0, last_stream_id, int(error_code), NULL, 0)

    cdef flush_session(self):
        # A failed send is a fatal session error: whatever was serialized still goes out.
        nghttp2_session_send(self.session)
        if self.settings_unpatched:
            self.patch_settings()

    def data_to_send(self):
        cdef bytes data
        self.flush_session()
        if not self.out_len:
            return b""
        data = PyBytes_FromStringAndSize(self.out, self.out_len)
        self.out_len = 0
        if not self.outbound:
            free(self.out)
            self.out = NULL
            self.out_cap = 0
        return data
