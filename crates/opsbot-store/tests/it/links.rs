//! Link codes and links between chat accounts and people.

use crate::{ana, at_ms, file_store};
use opsbot_core::UserId;
use opsbot_store::{AccountLink, SqliteStore, Store};

const CODE_A: &str = "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3";
const CODE_B: &str = "b3a8e0e1f9ab1bfe3a36f231f676f78bb30a519d2b21e6c530c0eee8ebb4a5d0";

async fn link_codes_are_single_use(store: &SqliteStore) {
    let bo = UserId::new("slack", "U02BO");
    assert_eq!(store.take_link_code(CODE_A).await.expect("take"), None);

    store
        .create_link_code(CODE_A, &ana(), at_ms(1_800_000_000_123))
        .await
        .expect("create");
    store.create_link_code(CODE_B, &bo, at_ms(1_000)).await.expect("create");
    assert_eq!(
        store.take_link_code(CODE_A).await.expect("take"),
        Some((ana(), at_ms(1_800_000_000_123)))
    );
    assert_eq!(store.take_link_code(CODE_A).await.expect("take"), None, "single use");
    // Expired codes are still handed out with their expiry; the caller judges.
    assert_eq!(store.take_link_code(CODE_B).await.expect("take"), Some((bo.clone(), at_ms(1_000))));

    // A new code for the same account replaces the old one.
    store.create_link_code(CODE_A, &bo, at_ms(1_800_000_000_000)).await.expect("create");
    store
        .create_link_code(CODE_B, &bo, at_ms(1_900_000_000_000))
        .await
        .expect("replace");
    assert_eq!(store.take_link_code(CODE_A).await.expect("take"), None, "the old code is gone");
    assert_eq!(
        store.take_link_code(CODE_B).await.expect("take"),
        Some((bo, at_ms(1_900_000_000_000)))
    );
    let left: i64 = store
        .conn()
        .expect("a connection")
        .query_row("SELECT COUNT(*) FROM link_codes", [], |r| r.get(0))
        .expect("count");
    assert_eq!(left, 0);
}
on_both!(link_codes_are_single_use);

/// Tasks on two stores take the same code at once: exactly one gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_link_code_takes_have_one_winner() {
    let (dir, one) = file_store().await;
    let two = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("second store");
    for round in 0..20 {
        let code = format!("{round:064x}");
        one.create_link_code(&code, &ana(), at_ms(1_800_000_000_000)).await.expect("create");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let store = if i % 2 == 0 { one.clone() } else { two.clone() };
                let (barrier, code) = (barrier.clone(), code.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.take_link_code(&code).await.expect("take")
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.extend(t.await.expect("task"));
        }
        assert_eq!(got, vec![(ana(), at_ms(1_800_000_000_000))], "round {round}");
    }
}

async fn accounts_link_and_unlink(store: &SqliteStore) {
    let bo_slack = UserId::new("slack", "U02BO");
    let bo_matrix = UserId::new("matrix", "@bo:example.org");
    let admin = UserId::new("web", "admin");
    assert_eq!(store.linked_person(&ana()).await.expect("get"), None);
    assert!(store.account_links(None).await.expect("list").is_empty());

    let link = |account: &UserId, person: &str, by: &UserId, ms: i64| AccountLink {
        account: account.clone(),
        person: person.into(),
        linked_by: by.clone(),
        at: at_ms(ms),
    };
    let ana_link = link(&ana(), "ana", &ana(), 1_700_000_000_001);
    let bo1 = link(&bo_slack, "bö", &bo_slack, 1_700_000_000_002);
    let bo2 = link(&bo_matrix, "bö", &admin, 1_700_000_000_003);
    for l in [&ana_link, &bo1, &bo2] {
        store.link_account(l).await.expect("link");
    }
    assert_eq!(store.linked_person(&ana()).await.expect("get").as_deref(), Some("ana"));
    assert_eq!(store.linked_person(&bo_matrix).await.expect("get").as_deref(), Some("bö"));
    assert_eq!(
        store.account_links(Some("bö")).await.expect("list"),
        vec![bo2.clone(), bo1.clone()],
        "by account"
    );
    assert_eq!(
        store.account_links(None).await.expect("list"),
        vec![ana_link.clone(), bo2.clone(), bo1.clone()],
        "by person"
    );
    assert!(store.account_links(Some("nobody")).await.expect("list").is_empty());

    // Linking again replaces the account's link.
    let moved = link(&bo_matrix, "ana", &admin, 1_700_000_000_004);
    store.link_account(&moved).await.expect("relink");
    assert_eq!(store.linked_person(&bo_matrix).await.expect("get").as_deref(), Some("ana"));
    assert_eq!(
        store.account_links(Some("ana")).await.expect("list"),
        vec![moved.clone(), ana_link.clone()]
    );
    assert_eq!(store.account_links(Some("bö")).await.expect("list"), vec![bo1.clone()]);

    assert!(store.unlink_account(&bo_matrix).await.expect("unlink"));
    assert!(!store.unlink_account(&bo_matrix).await.expect("unlink"), "already unlinked");
    assert_eq!(store.linked_person(&bo_matrix).await.expect("get"), None);
    assert_eq!(store.account_links(None).await.expect("list"), vec![ana_link, bo1]);
}
on_both!(accounts_link_and_unlink);
