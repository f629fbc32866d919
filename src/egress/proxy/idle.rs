//! A bound on upstream silence: an answer head that never comes, or a body that stops
//! arriving, ends the request instead of holding the client (and a connection slot) forever.
//!
//! The bound is on silence, not on total time: a slow but moving download (one byte a
//! second) is passed through, since cutting it would break large fetches. Not here: the
//! connect bound (`upstream`) and the client-side head bound (hyper's header read timeout).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::body::BoxError;

/// The upstream sent nothing for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {after:?}")]
pub(crate) struct UpstreamStalled {
    pub(crate) after: Duration,
}

/// A body that fails with [`UpstreamStalled`] when no frame arrives for `after`.
pub(crate) struct IdleBody<B> {
    inner: B,
    after: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<B> IdleBody<B> {
    pub(crate) fn new(inner: B, after: Duration) -> Self {
        Self { inner, after, deadline: Box::pin(tokio::time::sleep(after)) }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.deadline.as_mut().reset(Instant::now() + this.after);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(UpstreamStalled { after: this.after })))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_and_a_moving_one_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream = Rx(rx);
        let mut body = IdleBody::new(StreamBody::new(stream), Duration::from_secs(5));
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.unwrap();
            assert!(body.frame().await.unwrap().is_ok(), "a byte every 4 s keeps it alive");
        }
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("sent nothing for 5s"), "{err}");
        drop(tx);
    }

    /// The receiver's items as a stream.
    struct Rx<T>(tokio::sync::mpsc::Receiver<T>);

    impl<T> futures_core::Stream for Rx<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}
