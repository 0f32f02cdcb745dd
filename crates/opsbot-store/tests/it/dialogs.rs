//! Open dialogs: one per person per place.

use crate::{ana, at_ms, ops};
use opsbot_core::{Place, UserId};
use opsbot_store::{Dialog, SqliteStore, Store};
use serde_json::json;

fn dialog(place: Place, user: UserId, kind: &str, state: serde_json::Value) -> Dialog {
    Dialog {
        place,
        user,
        kind: kind.into(),
        state,
        expires_at: at_ms(1_800_000_000_123),
    }
}

async fn dialogs_put_get_replace_delete(store: &SqliteStore) {
    assert_eq!(store.dialog(&ops(), &ana()).await.expect("get"), None);

    let first = dialog(
        ops(),
        ana(),
        "missing_param",
        json!({"job": "deploy", "params": {"env": "prod"}, "n": [1, 2.5, null]}),
    );
    store.put_dialog(&first).await.expect("put");
    assert_eq!(store.dialog(&ops(), &ana()).await.expect("get"), Some(first.clone()));

    // Same person in a thread of the same channel, and another person in the channel: separate.
    let thread = Place {
        thread: Some("t1".into()),
        ..ops()
    };
    let in_thread = dialog(thread.clone(), ana(), "confirm", json!("yes?"));
    store.put_dialog(&in_thread).await.expect("put");
    let bob = UserId::new("terminal", "bob");
    let bobs = dialog(ops(), bob.clone(), "confirm", json!({"execution": 3}));
    store.put_dialog(&bobs).await.expect("put");
    assert_eq!(store.dialog(&thread, &ana()).await.expect("get"), Some(in_thread.clone()));
    assert_eq!(store.dialog(&ops(), &bob).await.expect("get"), Some(bobs.clone()));
    assert_eq!(store.dialog(&ops(), &ana()).await.expect("get"), Some(first));

    // Replacing.
    let replaced = Dialog {
        expires_at: at_ms(1_900_000_000_000),
        ..dialog(ops(), ana(), "confirm", json!({"ok": true}))
    };
    store.put_dialog(&replaced).await.expect("replace");
    assert_eq!(store.dialog(&ops(), &ana()).await.expect("get"), Some(replaced));

    // Deleting one leaves the others.
    assert!(
        store.delete_dialog(&ops(), &ana()).await.expect("delete"),
        "the first delete closes it"
    );
    assert_eq!(store.dialog(&ops(), &ana()).await.expect("get"), None);
    assert_eq!(store.dialog(&thread, &ana()).await.expect("get"), Some(in_thread));
    assert_eq!(store.dialog(&ops(), &bob).await.expect("get"), Some(bobs));
    assert!(
        !store.delete_dialog(&ops(), &ana()).await.expect("deleting nothing is fine"),
        "a second delete closes nothing"
    );
}
on_both!(dialogs_put_get_replace_delete);
