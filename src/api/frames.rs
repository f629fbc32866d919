//! The body of a streaming answer: frames from a channel, and a guard that cancels the
//! producer when the body is dropped (the client went away), so the command is killed.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

/// NDJSON frames as a body stream.
pub(super) struct FrameStream {
    rx: mpsc::Receiver<Bytes>,
    _cancel_on_drop: DropGuard,
}

impl FrameStream {
    /// Streams what `rx` yields; `cancel` is cancelled when the stream is dropped.
    pub(super) fn new(rx: mpsc::Receiver<Bytes>, cancel: CancellationToken) -> Self {
        Self { rx, _cancel_on_drop: cancel.drop_guard() }
    }
}

impl futures_core::Stream for FrameStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}
