"""The part of libnghttp2's C API (nghttp2/nghttp2.h) that _nghttp2.pyx uses."""

from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t


cdef extern from "nghttp2/nghttp2.h":
    ctypedef struct nghttp2_session:
        pass
    ctypedef struct nghttp2_session_callbacks:
        pass
    ctypedef struct nghttp2_option:
        pass
    ctypedef struct nghttp2_frame_hd:
        size_t length
        int32_t stream_id
        uint8_t type
        uint8_t flags
    ctypedef struct nghttp2_settings_entry:
        int32_t settings_id
        uint32_t value
    ctypedef struct nghttp2_rst_stream:
        nghttp2_frame_hd hd
        uint32_t error_code
    ctypedef struct nghttp2_settings:
        nghttp2_frame_hd hd
        size_t niv
        nghttp2_settings_entry *iv
    ctypedef struct nghttp2_headers:
        nghttp2_frame_hd hd
        int cat
    ctypedef struct nghttp2_window_update:
        nghttp2_frame_hd hd
        int32_t window_size_increment
    ctypedef struct nghttp2_data:
        nghttp2_frame_hd hd
        size_t padlen
    ctypedef union nghttp2_frame:
        nghttp2_frame_hd hd
        nghttp2_data data
        nghttp2_headers headers
        nghttp2_rst_stream rst_stream
        nghttp2_settings settings
        nghttp2_window_update window_update
    ctypedef union nghttp2_data_source:
        int fd
        void *ptr
    ctypedef ssize_t (*nghttp2_data_source_read_callback)(
        nghttp2_session *, int32_t, uint8_t *, size_t, uint32_t *, nghttp2_data_source *, void *)
    ctypedef struct nghttp2_data_provider:
        nghttp2_data_source source
        nghttp2_data_source_read_callback read_callback
    ctypedef struct nghttp2_nv:
        uint8_t *name
        uint8_t *value
        size_t namelen
        size_t valuelen
        uint8_t flags

    enum:
        NGHTTP2_DATA = 0
        NGHTTP2_HEADERS = 1
        NGHTTP2_RST_STREAM = 3
        NGHTTP2_SETTINGS = 4
        NGHTTP2_PING = 6
        NGHTTP2_GOAWAY = 7
        NGHTTP2_WINDOW_UPDATE = 8
        NGHTTP2_CONTINUATION = 9
        NGHTTP2_FLAG_NONE = 0
        NGHTTP2_FLAG_END_STREAM = 1
        NGHTTP2_FLAG_ACK = 1
        NGHTTP2_HCAT_REQUEST = 0
        NGHTTP2_HCAT_HEADERS = 3
        NGHTTP2_DATA_FLAG_EOF = 1
        NGHTTP2_DATA_FLAG_NO_END_STREAM = 2
        NGHTTP2_DATA_FLAG_NO_COPY = 4
        NGHTTP2_ERR_DEFERRED = -508
        NGHTTP2_ERR_CALLBACK_FAILURE = -902
        NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE = -521
        NGHTTP2_ERR_FLOW_CONTROL = -524
        NGHTTP2_SETTINGS_HEADER_TABLE_SIZE = 1
        NGHTTP2_SETTINGS_ENABLE_PUSH = 2
        NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS = 3
        NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE = 4
        NGHTTP2_SETTINGS_MAX_FRAME_SIZE = 5
        NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE = 6
        NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL = 8
        NGHTTP2_NV_FLAG_NONE = 0

    ctypedef ssize_t (*nghttp2_send_callback)(nghttp2_session *, const uint8_t *, size_t, int, void *)
    ctypedef int (*nghttp2_send_data_callback)(
        nghttp2_session *, nghttp2_frame *, const uint8_t *, size_t, nghttp2_data_source *, void *)
    ctypedef int (*nghttp2_on_frame_recv_callback)(nghttp2_session *, const nghttp2_frame *, void *)
    ctypedef int (*nghttp2_on_begin_frame_callback)(nghttp2_session *, const nghttp2_frame_hd *, void *)
    ctypedef int (*nghttp2_on_begin_headers_callback)(nghttp2_session *, const nghttp2_frame *, void *)
    ctypedef int (*nghttp2_on_header_callback)(
        nghttp2_session *, const nghttp2_frame *, const uint8_t *, size_t, const uint8_t *, size_t,
        uint8_t, void *)
    ctypedef int (*nghttp2_on_data_chunk_recv_callback)(
        nghttp2_session *, uint8_t, int32_t, const uint8_t *, size_t, void *)
    ctypedef int (*nghttp2_on_stream_close_callback)(nghttp2_session *, int32_t, uint32_t, void *)
    ctypedef int (*nghttp2_on_invalid_frame_recv_callback)(
        nghttp2_session *, const nghttp2_frame *, int, void *)
    ctypedef int (*nghttp2_error_callback2)(nghttp2_session *, int, const char *, size_t, void *)

    int nghttp2_session_callbacks_new(nghttp2_session_callbacks **)
    void nghttp2_session_callbacks_del(nghttp2_session_callbacks *)
    void nghttp2_session_callbacks_set_send_callback(nghttp2_session_callbacks *, nghttp2_send_callback)
    void nghttp2_session_callbacks_set_send_data_callback(
        nghttp2_session_callbacks *, nghttp2_send_data_callback)
    void nghttp2_session_callbacks_set_on_frame_recv_callback(
        nghttp2_session_callbacks *, nghttp2_on_frame_recv_callback)
    void nghttp2_session_callbacks_set_on_begin_frame_callback(
        nghttp2_session_callbacks *, nghttp2_on_begin_frame_callback)
    void nghttp2_session_callbacks_set_on_begin_headers_callback(
        nghttp2_session_callbacks *, nghttp2_on_begin_headers_callback)
    void nghttp2_session_callbacks_set_on_header_callback(
        nghttp2_session_callbacks *, nghttp2_on_header_callback)
    void nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        nghttp2_session_callbacks *, nghttp2_on_data_chunk_recv_callback)
    void nghttp2_session_callbacks_set_on_stream_close_callback(
        nghttp2_session_callbacks *, nghttp2_on_stream_close_callback)
    void nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(
        nghttp2_session_callbacks *, nghttp2_on_invalid_frame_recv_callback)
    void nghttp2_session_callbacks_set_error_callback2(
        nghttp2_session_callbacks *, nghttp2_error_callback2)

    int nghttp2_option_new(nghttp2_option **)
    void nghttp2_option_del(nghttp2_option *)
    void nghttp2_option_set_no_auto_window_update(nghttp2_option *, int)
    void nghttp2_option_set_no_http_messaging(nghttp2_option *, int)
    void nghttp2_option_set_max_outbound_ack(nghttp2_option *, size_t)
    void nghttp2_option_set_max_settings(nghttp2_option *, size_t)
    void nghttp2_option_set_stream_reset_rate_limit(nghttp2_option *, uint64_t, uint64_t)
    void nghttp2_option_set_max_continuations(nghttp2_option *, size_t)
    void nghttp2_option_set_max_deflate_dynamic_table_size(nghttp2_option *, size_t)
    void nghttp2_option_set_no_rfc9113_leading_and_trailing_ws_validation(nghttp2_option *, int)

    int nghttp2_session_server_new2(
        nghttp2_session **, const nghttp2_session_callbacks *, void *, const nghttp2_option *)
    void nghttp2_session_del(nghttp2_session *)
    ssize_t nghttp2_session_mem_recv(nghttp2_session *, const uint8_t *, size_t)
    int nghttp2_session_send(nghttp2_session *)
    int nghttp2_session_want_read(nghttp2_session *)
    int nghttp2_submit_settings(nghttp2_session *, uint8_t, const nghttp2_settings_entry *, size_t)
    int nghttp2_submit_response(
        nghttp2_session *, int32_t, const nghttp2_nv *, size_t, const nghttp2_data_provider *)
    int nghttp2_submit_headers(
        nghttp2_session *, uint8_t, int32_t, const void *, const nghttp2_nv *, size_t, void *)
    int nghttp2_submit_trailer(nghttp2_session *, int32_t, const nghttp2_nv *, size_t)
    int nghttp2_submit_rst_stream(nghttp2_session *, uint8_t, int32_t, uint32_t)
    int nghttp2_submit_goaway(
        nghttp2_session *, uint8_t, int32_t, uint32_t, const uint8_t *, size_t)
    int nghttp2_submit_window_update(nghttp2_session *, uint8_t, int32_t, int32_t)
    int nghttp2_session_consume(nghttp2_session *, int32_t, size_t)
    int nghttp2_session_resume_data(nghttp2_session *, int32_t)
    int32_t nghttp2_session_get_stream_remote_window_size(nghttp2_session *, int32_t)
    int32_t nghttp2_session_get_remote_window_size(nghttp2_session *)
    uint32_t nghttp2_session_get_remote_settings(nghttp2_session *, int)
    int32_t nghttp2_session_get_last_proc_stream_id(nghttp2_session *)
    void *nghttp2_session_find_stream(nghttp2_session *, int32_t)
    int nghttp2_session_upgrade2(nghttp2_session *, const uint8_t *, size_t, int, void *)
    const char *nghttp2_strerror(int)
