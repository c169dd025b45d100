//! HTTP/1.1, by hand on top of httparse: request reading, content codings, routing, answers.
//!
//! httparse parses request lines and headers; everything else (body framing, chunked coding,
//! keep-alive, pipelining, limits, timeouts) is here, because each of those is a bound or a
//! guarantee we want to own and test.

pub mod coding;
pub mod conn;
pub mod deadline;
pub mod error;
pub mod query;
pub mod request;
pub mod response;
pub mod route;
