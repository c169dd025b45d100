//! `GET|HEAD /api/v1/ping`: liveness, no authentication.

use crate::http::response::Response;

/// The ping answer; the body is the same on every call, so it is built once per thread.
pub fn handle() -> Response {
    thread_local! {
        static BODY: Vec<u8> = format!(
            "{{\"version\":\"{}\",\"status\":\"healthy\"}}",
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes();
    }
    BODY.with(|b| Response::new(200, "application/json", b.clone()))
}
