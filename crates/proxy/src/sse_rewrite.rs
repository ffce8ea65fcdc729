//! Rewrites the legacy SSE `endpoint` event on its way through the proxy, so that the
//! client's follow-up POSTs come back through the proxy instead of going around it.
//!
//! Servers announce the endpoint as a root-relative path (`/message?sessionId=…`), which
//! already resolves against the proxy, or as an absolute URL on their own origin, which
//! would not: absolute URLs on the upstream's origin become root-relative. Every other
//! byte passes unchanged, line by line, as soon as its line is complete.
//!
//! With a [`LegacyStreams`] registry, the stream also registers the endpoint it announced
//! and carries the proxy's own answers to that client, put between events, never inside
//! one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};

use crate::legacy::{LegacyStreams, Registration, resolve};

/// Lines longer than this are passed through untouched (they are not an endpoint event).
const MAX_LINE: usize = 1024 * 1024;

pub(crate) struct EndpointRewrite<B> {
    inner: B,
    /// `http://host:port` of the upstream, as announced URLs would spell it.
    upstream_origin: String,
    /// The incomplete last line of what has been read.
    pending: BytesMut,
    /// Whether the event being read is an `endpoint` event.
    in_endpoint_event: bool,
    /// Whether lines of an unfinished event have been passed on.
    mid_event: bool,
    /// Where to register the announced endpoint: the registry and this stream's path.
    registry: Option<(Arc<LegacyStreams>, String)>,
    /// This stream's registration, once the endpoint was announced.
    registration: Option<Registration>,
}

impl<B> EndpointRewrite<B> {
    pub(crate) fn new(inner: B, upstream_origin: String) -> Self {
        EndpointRewrite {
            inner,
            upstream_origin,
            pending: BytesMut::new(),
            in_endpoint_event: false,
            mid_event: false,
            registry: None,
            registration: None,
        }
    }

    /// Also registers the announced endpoint in `streams` (this stream was requested at
    /// `stream_path`) and carries the events injected for it.
    pub(crate) fn registering(mut self, streams: Arc<LegacyStreams>, stream_path: String) -> Self {
        self.registry = Some((streams, stream_path));
        self
    }

    fn announced(&mut self, endpoint: &[u8]) {
        if let Some((streams, path)) = &self.registry
            && let Ok(endpoint) = std::str::from_utf8(endpoint)
        {
            self.registration = Some(streams.register(resolve(path, endpoint.trim())));
        }
    }

    /// Rewrites the complete lines at the front of `pending`, leaving a partial line.
    fn complete_lines(&mut self) -> Option<Bytes> {
        let last_newline = self.pending.iter().rposition(|b| *b == b'\n')?;
        let lines = self.pending.split_to(last_newline + 1);
        let mut out = BytesMut::with_capacity(lines.len());
        for line in lines.split_inclusive(|b| *b == b'\n') {
            self.rewrite_line(line, &mut out);
        }
        Some(out.freeze())
    }

    fn rewrite_line(&mut self, line: &[u8], out: &mut BytesMut) {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        self.mid_event = !content.is_empty();
        if content.is_empty() {
            self.in_endpoint_event = false; // an event ends at a blank line
        } else if let Some(name) = field(content, b"event") {
            self.in_endpoint_event = name == b"endpoint";
        } else if self.in_endpoint_event
            && let Some(data) = field(content, b"data")
        {
            if let Some(rest) = data.strip_prefix(self.upstream_origin.as_bytes())
                && (rest.is_empty() || rest.starts_with(b"/") || rest.starts_with(b"?"))
            {
                let start = out.len();
                out.extend_from_slice(b"data: ");
                if !rest.starts_with(b"/") {
                    out.extend_from_slice(b"/");
                }
                out.extend_from_slice(rest);
                let endpoint = out[start + 6..].to_vec();
                out.extend_from_slice(&line[content.len()..]); // the original line ending
                self.announced(&endpoint);
                return;
            }
            let endpoint = data.to_vec();
            self.announced(&endpoint);
        }
        out.extend_from_slice(line);
    }
}

/// The value of an SSE field line `name: value` (or `name:value`).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

impl<B> Body for EndpointRewrite<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        // The proxy's own answers go between events, never inside one.
        if !self.mid_event
            && self.pending.is_empty()
            && let Some(registration) = self.registration.as_mut()
            && let Poll::Ready(Some(event)) = registration.events.poll_recv(cx)
        {
            return Poll::Ready(Some(Ok(Frame::data(event))));
        }
        loop {
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    // Whatever is left is an unterminated line: pass it on as it is.
                    if self.pending.is_empty() {
                        return Poll::Ready(None);
                    }
                    let rest = self.pending.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                other => return other,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => return Poll::Ready(Some(Ok(frame))), // trailers
            };
            self.pending.extend_from_slice(&data);
            if self.pending.len() > MAX_LINE && !self.pending.contains(&b'\n') {
                let raw = self.pending.split().freeze();
                return Poll::Ready(Some(Ok(Frame::data(raw))));
            }
            if let Some(out) = self.complete_lines() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
            // Only part of a line so far: read more before forwarding.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    async fn run(chunks: &[&str]) -> Vec<String> {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from(c.to_string()))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let mut rewritten = EndpointRewrite::new(body, "http://127.0.0.1:9000".into());
        let mut out = Vec::new();
        while let Some(frame) = rewritten.frame().await {
            out.push(String::from_utf8(frame.unwrap().into_data().unwrap().to_vec()).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn absolute_upstream_endpoints_become_root_relative() {
        let out =
            run(&["event: endpoint\ndata: http://127.0.0.1:9000/message?sessionId=1\n\n"]).await;
        assert_eq!(
            out.concat(),
            "event: endpoint\ndata: /message?sessionId=1\n\n"
        );
    }

    #[tokio::test]
    async fn crlf_framing_and_split_chunks_are_handled() {
        let out = run(&[
            "event: endp",
            "oint\r\ndata: http://127.0.0.1:9000",
            "/messages/?session_id=ab\r\n\r\n",
        ])
        .await;
        assert_eq!(
            out.concat(),
            "event: endpoint\r\ndata: /messages/?session_id=ab\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn everything_else_passes_unchanged_and_promptly() {
        let stream = [
            "event: endpoint\ndata: /message?sessionId=2\n\n",
            ": keepalive\n\n",
            "event: message\ndata: {\"url\":\"http://127.0.0.1:9000/x\"}\n\n",
            "data: http://127.0.0.1:9000/not-an-endpoint-event\n\n",
            "event: endpoint\ndata: http://elsewhere:1/m\n\n",
        ];
        let out = run(&stream).await;
        assert_eq!(
            out, stream,
            "one output frame per complete input chunk, unchanged"
        );
    }

    #[tokio::test]
    async fn the_announced_endpoint_is_registered_and_injected_events_go_between_events() {
        let streams = Arc::new(LegacyStreams::default());
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
        let body = StreamBody::new(tokio_stream_from(rx));
        let mut rewritten = EndpointRewrite::new(body, "http://127.0.0.1:9000".into())
            .registering(streams.clone(), "/sse".into());
        let send = |s: &'static str| Ok(Frame::data(Bytes::from_static(s.as_bytes())));
        tx.send(send(
            "event: endpoint\ndata: http://127.0.0.1:9000/message?sessionId=7\n\n",
        ))
        .await
        .unwrap();
        let first = rewritten
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(
            &first[..],
            b"event: endpoint\ndata: /message?sessionId=7\n\n"
        );
        assert!(streams.contains("/message?sessionId=7"));
        // Half an event arrives: an injected answer waits for its end.
        tx.send(send("event: message\n")).await.unwrap();
        assert_eq!(
            &rewritten
                .frame()
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap()[..],
            b"event: message\n"
        );
        assert!(streams.inject(
            "/message?sessionId=7",
            Bytes::from_static(b"event: message\ndata: {\"own\":1}\n\n")
        ));
        tx.send(send("data: {}\n\n")).await.unwrap();
        assert_eq!(
            &rewritten
                .frame()
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap()[..],
            b"data: {}\n\n"
        );
        assert_eq!(
            &rewritten
                .frame()
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap()[..],
            b"event: message\ndata: {\"own\":1}\n\n"
        );
        drop(tx);
        assert!(rewritten.frame().await.is_none());
        drop(rewritten);
        assert!(
            !streams.contains("/message?sessionId=7"),
            "deregistered at the end"
        );
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[tokio::test]
    async fn an_unterminated_tail_is_flushed_at_the_end() {
        assert_eq!(run(&["data: partial"]).await.concat(), "data: partial");
    }
}
