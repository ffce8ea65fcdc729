//! The answer to one request, decided as late as possible.
//!
//! Most calls produce nothing but their answer: those get a plain `application/json`
//! body, one write, no stream. When something must reach the client before the answer
//! (a backend's progress or log message, a sampling request it relays), and the client
//! accepts event streams, the answer becomes an SSE stream at that moment: the headers
//! are not sent until the first message is ready, so the choice is free. The work runs
//! inside the response (no task per request); a client that goes away drops it, which
//! cancels the backend call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::body::{Body as ResponseBody, full};
use crate::message;

/// The work of one request: resolves to the answer message.
pub(crate) type Work = Pin<Box<dyn Future<Output = Bytes> + Send>>;

/// Answers with `work`'s message; `interim` carries what comes before it. `hold` is kept
/// until the answer has been sent in full (the drain waits for it).
pub(crate) async fn respond<H: Send + Unpin + 'static>(
    mut work: Work,
    mut interim: mpsc::UnboundedReceiver<Bytes>,
    streams_ok: bool,
    hold: H,
) -> Response<ResponseBody> {
    let first = tokio::select! {
        biased;
        answer = &mut work => {
            // Messages that came just before the answer (a backend's last progress in
            // the same read as its result) still go first, on a stream.
            match interim.try_recv() {
                Ok(first) if streams_ok => {
                    let answered: Work = Box::pin(std::future::ready(answer));
                    let body = CallStream::new(first, interim, answered, hold);
                    return event_stream(ResponseBody::new(body));
                }
                _ => return json(StatusCode::OK, answer),
            }
        }
        first = interim.recv(), if streams_ok => first,
    };
    let Some(first) = first else {
        // Nothing will come before the answer after all.
        return json(StatusCode::OK, work.await);
    };
    event_stream(ResponseBody::new(CallStream::new(
        first, interim, work, hold,
    )))
}

/// A `text/event-stream` answer with `body`, unbuffered by proxies on the way.
pub(crate) fn event_stream(body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A JSON body.
pub(crate) fn json(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An SSE answer: the interim messages as they come, then the answer, then the end.
struct CallStream<H> {
    first: Option<Bytes>,
    interim: mpsc::UnboundedReceiver<Bytes>,
    work: Option<Work>,
    /// The answer, ready, waiting for what came before it to go out first.
    answer: Option<Bytes>,
    /// Whether the last frame out was an interim message.
    after_interim: bool,
    /// The pause between a last interim message and the answer.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    _hold: H,
}

/// How long the answer waits after a message sent just before it, so the two reach the
/// client in reads of their own. Clients such as the TypeScript SDK's handle a
/// notification a tick after a response read with it, and drop a call's last progress
/// when the call's answer came in the same read (which a backend that writes them apart
/// never causes).
const PAUSE_BEFORE_ANSWER: std::time::Duration = std::time::Duration::from_millis(2);

impl<H> CallStream<H> {
    fn new(first: Bytes, interim: mpsc::UnboundedReceiver<Bytes>, work: Work, hold: H) -> Self {
        CallStream {
            first: Some(message::sse_event(&first)),
            interim,
            work: Some(work),
            answer: None,
            after_interim: true,
            pause: None,
            _hold: hold,
        }
    }
}

impl<H: Unpin> Body for CallStream<H> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        // Whatever came before the answer goes first, in order, an event a frame.
        if let Poll::Ready(Some(m)) = self.interim.poll_recv(cx) {
            self.after_interim = true;
            return Poll::Ready(Some(Ok(Frame::data(message::sse_event(&m)))));
        }
        if self.answer.is_none() {
            let Some(work) = self.work.as_mut() else {
                return Poll::Ready(None);
            };
            match work.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(answer) => {
                    self.work = None;
                    self.answer = Some(answer);
                }
            }
            // Messages sent just before the answer are still queued: they go first.
            if let Ok(m) = self.interim.try_recv() {
                self.after_interim = true;
                return Poll::Ready(Some(Ok(Frame::data(message::sse_event(&m)))));
            }
        }
        if let Ok(m) = self.interim.try_recv() {
            self.after_interim = true;
            return Poll::Ready(Some(Ok(Frame::data(message::sse_event(&m)))));
        }
        if std::mem::take(&mut self.after_interim) {
            self.pause = Some(Box::pin(tokio::time::sleep(PAUSE_BEFORE_ANSWER)));
        }
        if let Some(pause) = self.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        match self.answer.take() {
            Some(answer) => Poll::Ready(Some(Ok(Frame::data(message::sse_event(&answer))))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.work.is_none() && self.answer.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn an_answer_with_nothing_before_it_is_plain_json() {
        let (_tx, rx) = mpsc::unbounded_channel();
        let work: Work = Box::pin(async { Bytes::from_static(b"{\"id\":1}") });
        let r = respond(work, rx, true, ()).await;
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"id\":1}");
    }

    #[tokio::test]
    async fn messages_sent_in_the_same_instant_as_the_answer_still_go_first() {
        let (tx, rx) = mpsc::unbounded_channel();
        // The backend's last progress and its result arrive in one read: both are queued
        // before the work is first polled.
        let work: Work = Box::pin(async move {
            for p in 1..=3 {
                tx.send(Bytes::from(format!("{{\"p\":{p}}}"))).unwrap();
            }
            Bytes::from_static(b"{\"id\":1}")
        });
        let r = respond(work, rx, true, ()).await;
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
        let mut body = r.into_body();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        // The answer is a frame of its own, written after a pause: a client reads it
        // apart from the last progress before it.
        let last = String::from_utf8(frames.last().unwrap().to_vec()).unwrap();
        assert!(
            last.contains("\"id\":1") && !last.contains("\"p\""),
            "{last}"
        );
        let text: String = frames
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect();
        let order: Vec<&str> = text.lines().filter(|l| l.starts_with("data: ")).collect();
        assert_eq!(
            order,
            [
                "data: {\"p\":1}",
                "data: {\"p\":2}",
                "data: {\"p\":3}",
                "data: {\"id\":1}"
            ],
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_message_before_the_answer_turns_it_into_a_stream_in_order() {
        let (tx, rx) = mpsc::unbounded_channel();
        let work: Work = Box::pin(async move {
            tx.send(Bytes::from_static(b"{\"p\":1}")).unwrap();
            tokio::task::yield_now().await;
            tx.send(Bytes::from_static(b"{\"p\":2}")).unwrap();
            Bytes::from_static(b"{\"id\":1}")
        });
        let r = respond(work, rx, true, ()).await;
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            "event: message\ndata: {\"p\":1}\n\nevent: message\ndata: {\"p\":2}\n\nevent: message\ndata: {\"id\":1}\n\n"
        );
    }

    #[tokio::test]
    async fn a_client_that_takes_no_streams_gets_json_whatever_comes_before() {
        let (tx, rx) = mpsc::unbounded_channel();
        let work: Work = Box::pin(async move {
            let _ = tx.send(Bytes::from_static(b"{\"p\":1}"));
            Bytes::from_static(b"{\"id\":1}")
        });
        let r = respond(work, rx, false, ()).await;
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
