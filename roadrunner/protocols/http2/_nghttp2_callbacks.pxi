# The C callbacks of _nghttp2.Session (included by _nghttp2.pyx): nghttp2 calls them with the
# Session as user_data. Each one catches every Python exception: none may unwind through C.

# -- per-stream outbound queue ---------------------------------------------------------------------


cdef class Outbound:
    """A response body queued for nghttp2: the app's bytes objects, sent without a copy."""

    cdef list chunks
    cdef Py_ssize_t pos      # bytes of chunks[0] already written out
    cdef Py_ssize_t queued   # bytes not yet framed
    cdef bint ended
    cdef bint deferred
    cdef object trailers

    def __cinit__(self):
        self.chunks = []


# Closed stream ids remembered, so late frames on them are told from a stream id reused.
CLOSED_MEMORY = 256


cdef inline Session session_of(void *user_data):
    return <Session>user_data


cdef enum:
    OUT_INITIAL = 16384  # the first allocation of a session's output buffer (then doubled)


cdef int append_out(Session self, const uint8_t *data, size_t length) except -1:
    cdef size_t need = self.out_len + length
    cdef size_t cap
    cdef char *grown
    if need > self.out_cap:
        cap = need * 2 if need > OUT_INITIAL // 2 else OUT_INITIAL
        grown = <char *>realloc(self.out, cap)
        if grown == NULL:
            raise MemoryError()
        self.out = grown
        self.out_cap = cap
    memcpy(self.out + self.out_len, data, length)
    self.out_len = need
    return 0


cdef ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t length, int flags,
                     void *user_data) noexcept:
    try:
        append_out(session_of(user_data), data, length)
    except BaseException:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return <ssize_t>length


cdef int send_data_cb(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                      size_t length, nghttp2_data_source *source, void *user_data) noexcept:
    cdef Session self = session_of(user_data)
    cdef Outbound out = <Outbound>source.ptr
    cdef bytes chunk
    try:
        # nghttp2 frames and writes one DATA frame at a time: the frame read_cb sized starts
        # at chunks[0][pos].
        append_out(self, framehd, 9)
        if length:
            chunk = out.chunks[0]
            append_out(self, <const uint8_t *>PyBytes_AS_STRING(chunk) + out.pos, length)
            out.pos += length
            if out.pos == PyBytes_GET_SIZE(chunk):
                del out.chunks[0]
                out.pos = 0
    except BaseException:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef ssize_t read_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                     uint32_t *data_flags, nghttp2_data_source *source, void *user_data) noexcept:
    cdef Session self = session_of(user_data)
    cdef Outbound out = <Outbound>source.ptr
    cdef Py_ssize_t size
    cdef bytes chunk
    cdef nghttp2_nv *nva
    cdef size_t count
    try:
        if out.queued:
            # One DATA frame never spans two chunks: it is written from one bytes object.
            chunk = out.chunks[0]
            size = min(<Py_ssize_t>length, PyBytes_GET_SIZE(chunk) - out.pos)
            out.queued -= size
            self.queued -= size
            data_flags[0] |= NGHTTP2_DATA_FLAG_NO_COPY
        elif not out.ended:
            out.deferred = True
            return NGHTTP2_ERR_DEFERRED
        else:
            size = 0
        if not out.queued and out.ended:
            data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
            if out.trailers is not None:
                # RFC 9113 §8.1: the trailer section ends the stream instead of this DATA frame.
                data_flags[0] |= NGHTTP2_DATA_FLAG_NO_END_STREAM
                nva = make_nva(out.trailers, &count)
                try:
                    nghttp2_submit_trailer(s, stream_id, nva, count)
                finally:
                    free(nva)
                out.trailers = None
        return size
    except BaseException:
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef nghttp2_nv *make_nva(list headers, size_t *count) except NULL:
    cdef Py_ssize_t n = len(headers), i = 0
    cdef nghttp2_nv *nva = <nghttp2_nv *>malloc((n or 1) * sizeof(nghttp2_nv))
    cdef bytes name, value
    if nva == NULL:
        raise MemoryError()
    try:
        for item in headers:
            name = item[0]
            value = item[1]
            nva[i].name = <uint8_t *>PyBytes_AS_STRING(name)
            nva[i].namelen = PyBytes_GET_SIZE(name)
            nva[i].value = <uint8_t *>PyBytes_AS_STRING(value)
            nva[i].valuelen = PyBytes_GET_SIZE(value)
            nva[i].flags = NGHTTP2_NV_FLAG_NONE
            i += 1
    except BaseException:
        free(nva)
        raise
    count[0] = n
    return nva


# -- receiving ---------------------------------------------------------------------------------------


cdef int begin_frame_cb(nghttp2_session *s, const nghttp2_frame_hd *hd, void *user_data) noexcept:
    # CONTINUATION flood (CVE-2024-27316): roadrunner's cap on the encoded header block and on
    # the frames it spans answers before nghttp2's own, as on the h2 engine.
    cdef Session self = session_of(user_data)
    if hd.type == NGHTTP2_HEADERS:
        self.block_size = hd.length
        self.block_frames = 1
    elif hd.type == NGHTTP2_CONTINUATION:
        self.block_size += hd.length
        self.block_frames += 1
    else:
        return 0
    if self.block_size > self.block_limit or self.block_frames > self.block_max_frames:
        self.fail("header_block", 11, "header block exceeds the limit")  # ENHANCE_YOUR_CALM
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int begin_headers_cb(nghttp2_session *s, const nghttp2_frame *frame, void *user_data) noexcept:
    cdef Session self = session_of(user_data)
    self.head = []
    self.head_size = 0
    return 0


cdef int header_cb(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                   size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                   void *user_data) noexcept:
    cdef Session self = session_of(user_data)
    try:
        # An HPACK bomb (far past SETTINGS_MAX_HEADER_LIST_SIZE) costs the connection.
        self.head_size += namelen + valuelen + 32
        if self.head_size > self.list_cap:
            self.fail("header_list", 11, "header list exceeds the limit")
            return NGHTTP2_ERR_CALLBACK_FAILURE
        self.head.append((PyBytes_FromStringAndSize(<char *>name, namelen),
                          PyBytes_FromStringAndSize(<char *>value, valuelen)))
    except BaseException:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int data_chunk_cb(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                       size_t length, void *user_data) noexcept:
    cdef Session self = session_of(user_data)
    cdef bytes chunk
    try:
        chunk = PyBytes_FromStringAndSize(<char *>data, length)
        if self.data_stream == stream_id and self.data_chunks is not None:
            self.data_chunks += chunk
        else:
            self.data_stream = stream_id
            self.data_chunks = chunk
    except BaseException:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int frame_recv_cb(nghttp2_session *s, const nghttp2_frame *frame, void *user_data) noexcept:
    cdef Session self = session_of(user_data)
    try:
        self.on_frame(frame)
    except BaseException as exc:
        self.error = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int stream_close_cb(nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                         void *user_data) noexcept:
    cdef Session self = session_of(user_data)
    try:
        self.outbound.pop(stream_id, None)
        self.length_left.pop(stream_id, None)
        self.remote_ended.discard(stream_id)
        self.remember_closed(stream_id)
    except BaseException:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int invalid_frame_cb(nghttp2_session *s, const nghttp2_frame *frame, int lib_error,
                          void *user_data) noexcept:
    cdef Session self = session_of(user_data)
    try:
        if lib_error == NGHTTP2_ERR_FLOW_CONTROL and frame.hd.stream_id == 0:
            self.flow_error = True
        self.lib_error = lib_error
        if frame.hd.stream_id:
            # A stream error (nghttp2 resets the stream) unless the session ends too.
            self.invalid.append((frame.hd.stream_id, frame.hd.type))
    except BaseException:
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int error_cb(nghttp2_session *s, int lib_error, const char *msg, size_t length,
                  void *user_data) noexcept:
    cdef Session self = session_of(user_data)
    try:
        if lib_error == NGHTTP2_ERR_FLOW_CONTROL:
            self.flow_error = True
        self.error_text = msg[:length].decode("utf-8", "replace")
    except BaseException:
        pass
    return 0


cdef nghttp2_session_callbacks *CALLBACKS = NULL


cdef void init_callbacks():
    global CALLBACKS
    nghttp2_session_callbacks_new(&CALLBACKS)
    nghttp2_session_callbacks_set_send_callback(CALLBACKS, send_cb)
    nghttp2_session_callbacks_set_send_data_callback(CALLBACKS, send_data_cb)
    nghttp2_session_callbacks_set_on_frame_recv_callback(CALLBACKS, frame_recv_cb)
    nghttp2_session_callbacks_set_on_begin_frame_callback(CALLBACKS, begin_frame_cb)
    nghttp2_session_callbacks_set_on_begin_headers_callback(CALLBACKS, begin_headers_cb)
    nghttp2_session_callbacks_set_on_header_callback(CALLBACKS, header_cb)
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(CALLBACKS, data_chunk_cb)
    nghttp2_session_callbacks_set_on_stream_close_callback(CALLBACKS, stream_close_cb)
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(CALLBACKS, invalid_frame_cb)
    nghttp2_session_callbacks_set_error_callback2(CALLBACKS, error_cb)


init_callbacks()
