//! Helpers around sockyard's own Rust clients: the next event or CTProto update within
//! [`WAIT`], publications, and the errors the test router answers with.

use serde_json::{json, Value};
use sockyard::client::ctproto::{Update, Updates};
use sockyard::client::{Client, ClientError, ClientEvent, Events};

use crate::wait::WAIT;

/// The client's next event (fails the test after [`WAIT`] or when the client stops).
pub async fn next_event(events: &mut Events) -> ClientEvent {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("event in time")
        .expect("client still running")
}

/// The next publication on any channel, skipping other events: its channel and data.
pub async fn next_publication(events: &mut Events) -> (String, Option<Value>) {
    loop {
        if let ClientEvent::Publication { channel, data } = next_event(events).await {
            return (channel, data);
        }
    }
}

/// The data of the next publication on `channel`, skipping other events (`null` without data).
pub async fn publication(events: &mut Events, channel: &str) -> Value {
    let wait = async {
        loop {
            match events.next().await {
                Some(ClientEvent::Publication { channel: c, data }) if c == channel => {
                    return data.unwrap_or(Value::Null);
                }
                Some(_) => {}
                None => panic!("connection closed while waiting on {channel}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no publication on {channel}"))
}

/// A CTProto client's next update (fails the test after [`WAIT`] or when the client stops).
pub async fn next_update(updates: &mut Updates) -> Update {
    tokio::time::timeout(WAIT, updates.next())
        .await
        .expect("update in time")
        .expect("client still running")
}

/// Asserts the test router's errors through `client`: `fail` answers its `CustomError` with
/// the extra field, and an unknown procedure `NotFound`.
pub async fn assert_remote_errors(client: &Client) {
    let err = client.invoke("fail", ()).await.unwrap_err();
    let ClientError::Remote(err) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (err.name.as_ref(), err.message.as_str(), &err.extra["extra"]),
        ("CustomError", "bad thing", &json!(42))
    );
    let err = client.invoke("missing", ()).await.unwrap_err();
    assert!(matches!(err, ClientError::Remote(e) if e.name == "NotFound"));
}
