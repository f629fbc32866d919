//! The HTTP/1.1 forward proxy (absolute-form requests and `CONNECT`).
