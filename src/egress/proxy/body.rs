//! Body plumbing for the proxy: one boxed body type, a body that passes each chunk through a
//! [`ChunkFilter`] (reflection, audit scanning), and adapters between bodies and tokio's
//! `AsyncRead` (for decompression).
//!
//! Nothing here buffers a whole body; memory per body is bounded by what a filter holds back.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http::HeaderMap;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncRead;

/// Errors a proxied body can carry.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type requests and responses take through the proxy.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// A complete body of `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// Boxes any body with a convertible error.
pub(crate) fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// Transforms a body chunk by chunk.
pub(crate) trait ChunkFilter: Send + Sync + 'static {
    /// Takes the next chunk, returns what may go out now (possibly empty).
    fn push(&mut self, chunk: Bytes) -> Bytes;
    /// The body ended: returns whatever was held back.
    fn finish(&mut self) -> Bytes;
    /// True when output always has exactly the input's length, so the framing can stay.
    fn preserves_length(&self) -> bool;
}

/// A body whose data frames go through a [`ChunkFilter`]; trailers pass unchanged, after the
/// filter's last bytes.
pub(crate) struct Filtered<B, F> {
    inner: B,
    filter: F,
    trailers: Option<HeaderMap>,
    done: bool,
}

impl<B, F> Filtered<B, F> {
    pub(crate) fn new(inner: B, filter: F) -> Self {
        Self { inner, filter, trailers: None, done: false }
    }
}

impl<B, F> Body for Filtered<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    F: ChunkFilter + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.filter.push(data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            this.trailers = Some(trailers);
                            this.done = true;
                            let tail = this.filter.finish();
                            if !tail.is_empty() {
                                return Poll::Ready(Some(Ok(Frame::data(tail))));
                            }
                        }
                    }
                },
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    this.done = true;
                    let tail = this.filter.finish();
                    if !tail.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(tail))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.filter.preserves_length() && !self.done {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}

/// The data of a body as a stream of `io::Result<Bytes>` (trailers dropped), for
/// `tokio_util::io::StreamReader`.
pub(crate) struct DataStream<B>(pub(crate) B);

impl<B> Stream for DataStream<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match ready!(Pin::new(&mut this.0).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(io::Error::other(e.into())))),
                None => return Poll::Ready(None),
            }
        }
    }
}

/// A body read from an `AsyncRead`, in chunks of up to 16 KiB.
pub(crate) struct ReaderBody<R> {
    reader: Option<R>,
    buf: BytesMut,
}

const READ_CHUNK: usize = 16 * 1024;

impl<R> ReaderBody<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self { reader: Some(reader), buf: BytesMut::new() }
    }
}

impl<R: AsyncRead + Unpin> Body for ReaderBody<R> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(reader) = this.reader.as_mut() else { return Poll::Ready(None) };
        if this.buf.capacity() < READ_CHUNK {
            this.buf.reserve(READ_CHUNK);
        }
        match ready!(tokio_util::io::poll_read_buf(Pin::new(reader), cx, &mut this.buf)) {
            Ok(0) => {
                this.reader = None;
                Poll::Ready(None)
            }
            Ok(_) => Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze())))),
            Err(e) => {
                this.reader = None;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Upper;

    impl ChunkFilter for Upper {
        fn push(&mut self, chunk: Bytes) -> Bytes {
            Bytes::from(chunk.to_ascii_uppercase())
        }
        fn finish(&mut self) -> Bytes {
            Bytes::from_static(b"!")
        }
        fn preserves_length(&self) -> bool {
            false
        }
    }

    #[tokio::test]
    async fn filtered_passes_chunks_and_appends_the_tail() {
        let body = Filtered::new(http_body_util::Full::new(Bytes::from_static(b"abc")), Upper);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"ABC!");
    }

    #[tokio::test]
    async fn reader_body_reads_all() {
        let body = ReaderBody::new(&b"hello world"[..]);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"hello world");
    }
}
