//! Response bodies: whole ones, and SSE streams fed from a channel.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::mpsc;

pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    http_body_util::Full::new(bytes.into()).boxed_unsync()
}

pub(crate) fn empty() -> ResponseBody {
    http_body_util::Empty::new().boxed_unsync()
}

/// An SSE body that yields each frame as soon as it is sent, and ends when every sender
/// is gone.
pub(crate) fn stream(rx: mpsc::UnboundedReceiver<Bytes>) -> ResponseBody {
    ChannelBody { rx }.boxed_unsync()
}

/// One SSE event carrying a JSON-RPC message.
pub(crate) fn sse_message(message: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

struct ChannelBody {
    rx: mpsc::UnboundedReceiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|frame| frame.map(|b| Ok(Frame::data(b))))
    }
}
