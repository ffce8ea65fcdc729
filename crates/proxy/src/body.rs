//! The proxy's response bodies: a streamed answer from the server and hale's own small
//! answers travel as one boxed type.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// Any error a body may fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body of the proxy.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// A complete body.
pub(crate) fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}
