//! Long-lived notification streams: a legacy session's GET stream and a modern client's
//! `subscriptions/listen` stream. Messages as they come, a keep-alive comment when quiet,
//! and at shutdown an optional last message (the listen request's final result) before
//! the end.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame};
use tokio::sync::mpsc;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::body::Body as ResponseBody;
use crate::message;

/// A comment line every this often keeps intermediaries from closing a quiet stream.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) struct NotificationStream {
    first: Option<Bytes>,
    messages: mpsc::Receiver<Bytes>,
    keep_alive: tokio::time::Interval,
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
    last: Option<Bytes>,
    done: bool,
    /// Kept while the stream lives (a registration that ends with it).
    _guard: Box<dyn Send>,
}

impl NotificationStream {
    /// A stream of `messages` (complete JSON-RPC messages), `first` sent first, ended when
    /// `closing` fires (after `last`, if given).
    pub(crate) fn response(
        first: Option<Bytes>,
        messages: mpsc::Receiver<Bytes>,
        closing: tokio_util::sync::CancellationToken,
        last: Option<Bytes>,
        guard: Box<dyn Send>,
    ) -> Response<ResponseBody> {
        let mut keep_alive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let body = NotificationStream {
            first: first.map(|m| message::sse_event(&m)),
            messages,
            keep_alive,
            closing: Box::pin(closing.cancelled_owned()),
            last,
            done: false,
            _guard: guard,
        };
        super::call::event_stream(ResponseBody::new(body))
    }
}

impl Body for NotificationStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.closing.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(
                self.last
                    .take()
                    .map(|m| Ok(Frame::data(message::sse_event(&m)))),
            );
        }
        match self.messages.poll_recv(cx) {
            Poll::Ready(Some(m)) => {
                return Poll::Ready(Some(Ok(Frame::data(message::sse_event(&m)))));
            }
            Poll::Ready(None) => {
                // Replaced by a newer stream, or its owner is gone.
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if self.keep_alive.poll_tick(cx).is_ready() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b":\n\n")))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio_util::sync::CancellationToken;

    #[tokio::test(start_paused = true)]
    async fn messages_then_keep_alives_then_the_last_message_at_close() {
        let (tx, rx) = mpsc::channel(4);
        let closing = CancellationToken::new();
        let r = NotificationStream::response(
            Some(Bytes::from_static(b"{\"ack\":1}")),
            rx,
            closing.clone(),
            Some(Bytes::from_static(b"{\"final\":1}")),
            Box::new(()),
        );
        let mut body = r.into_body();
        let next = async |body: &mut ResponseBody| {
            String::from_utf8(
                body.frame()
                    .await
                    .unwrap()
                    .unwrap()
                    .into_data()
                    .unwrap()
                    .to_vec(),
            )
            .unwrap()
        };
        assert_eq!(
            next(&mut body).await,
            "event: message\ndata: {\"ack\":1}\n\n"
        );
        tx.send(Bytes::from_static(b"{\"n\":1}")).await.unwrap();
        assert_eq!(next(&mut body).await, "event: message\ndata: {\"n\":1}\n\n");
        assert_eq!(
            next(&mut body).await,
            ":\n\n",
            "a keep-alive after 15 s of quiet"
        );
        closing.cancel();
        assert_eq!(
            next(&mut body).await,
            "event: message\ndata: {\"final\":1}\n\n"
        );
        assert!(body.frame().await.is_none());
    }
}
