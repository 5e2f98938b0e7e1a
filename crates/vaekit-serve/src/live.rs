//! `GET /api/live`: a WebSocket for decoding while a slider moves. The client sends
//! `{"z": [[...]], "class": C}` as text as often as it likes; the server decodes one request at
//! a time and, when one finishes, takes only the newest that arrived meanwhile (older ones are
//! dropped), so dragging never builds a queue. Each answer is a binary PNG, or a text
//! `{"error": "..."}` line.

use std::future::Future;
use std::pin::Pin;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::AppState;
use crate::api::decode_codes;
use crate::error::{ApiError, json_error};
use crate::worker::Png;

/// Largest message a client may send (a code of 65,536 numbers fits).
pub const MAX_MESSAGE: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    z: Vec<Vec<f32>>,
    #[serde(default)]
    class: Option<i64>,
}

type Decoding = Pin<Box<dyn Future<Output = Result<Png, ApiError>> + Send>>;

/// Upgrades to a WebSocket when fewer than the limit are open, else 503.
pub async fn live(State(s): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = s.sockets.clone().try_acquire_owned() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live connections are open",
        );
    };
    ws.max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            run(socket, s).await;
            drop(permit);
        })
}

fn error_text(e: &ApiError) -> Message {
    Message::Text(
        serde_json::json!({ "error": e.to_string() })
            .to_string()
            .into(),
    )
}

async fn run(mut socket: WebSocket, s: AppState) {
    let mut newest: Option<Request> = None;
    let mut busy: Option<Decoding> = None;
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<Request>(&t) {
                    Ok(r) => newest = Some(r),
                    Err(e) => {
                        let e = ApiError::BadRequest(format!("bad JSON message: {e}"));
                        if socket.send(error_text(&e)).await.is_err() {
                            break;
                        }
                    }
                },
                Some(Ok(Message::Binary(_))) => {
                    let e = ApiError::BadRequest("send codes as JSON text".into());
                    if socket.send(error_text(&e)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            done = async { busy.as_mut().expect("guarded").await }, if busy.is_some() => {
                busy = None;
                let msg = match done {
                    Ok(png) => Message::Binary(png.into()),
                    Err(e) => error_text(&e),
                };
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
        }
        if busy.is_none()
            && let Some(r) = newest.take()
        {
            let s = s.clone();
            busy = Some(Box::pin(
                async move { decode_codes(&s, r.z, r.class).await },
            ));
        }
    }
}
