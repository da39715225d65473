//! Each test runs on both backends: SQLite in memory and a fresh PostgreSQL database.

use super::*;

#[path = "../../tests/support/postgres.rs"]
pub(crate) mod postgres;

/// A store of each backend, named.
pub(crate) async fn stores() -> Vec<Store> {
    vec![
        Store::in_memory().await.unwrap(),
        Store::connect(&postgres::database().await, 4)
            .await
            .unwrap(),
    ]
}

#[tokio::test]
async fn what_is_kept_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roundtable.db");
    let key = {
        let store = Store::open(&path).await.unwrap();
        store
            .register("default/gala", "ada@example.org", "Ada", "vip", 1)
            .await
            .unwrap();
        let key = store.setting_or("k", || vec![1, 2, 3]).await.unwrap();
        store.close().await;
        key
    };
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.setting_or("k", || vec![9]).await.unwrap(), key);
    assert_eq!(
        store.tickets_of("ada@example.org").await.unwrap(),
        vec![Ticket {
            event: "default/gala".into(),
            ticket_type: "vip".into()
        }]
    );
}

#[tokio::test]
async fn a_database_from_before_versioned_migrations_is_adopted_with_its_data() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let options = migrate::sqlite_file(&path).create_if_missing(true);
        let mut old = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::raw_sql(include_str!("../../migrations/sqlite/0001_initial.sql"))
            .execute(&mut old)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO registrations VALUES ('default/gala', 'ada@example.org', 'Ada', 'vip', 1)",
        )
        .execute(&mut old)
        .await
        .unwrap();
        old.close().await.unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        migrate::latest_version(false)
    );
    assert_eq!(store.tickets_of("ada@example.org").await.unwrap().len(), 1);
    store.close().await;
    let again = Store::open(&path).await.unwrap();
    assert_eq!(
        again.schema_version().await.unwrap(),
        migrate::latest_version(false),
        "nothing applied twice"
    );
}

#[tokio::test]
async fn replicas_starting_at_once_migrate_once_and_share_one_session_key() {
    let url = postgres::database().await;
    // Concurrent on one task: each start has its own connections, so the database sees them
    // race.
    let starts = (0..4).map(|_| async {
        let store = Store::connect(&url, 2).await.unwrap();
        let key = store
            .setting_or("session_key", || rand::random::<[u8; 32]>().to_vec())
            .await
            .unwrap();
        (store.schema_version().await.unwrap(), key)
    });
    let started: Vec<(i64, Vec<u8>)> = futures::future::join_all(starts).await;
    assert!(
        started
            .iter()
            .all(|(v, _)| *v == migrate::latest_version(true))
    );
    assert!(
        started.iter().all(|(_, k)| *k == started[0].1),
        "every replica signs cookies with the same key"
    );
}

#[tokio::test]
async fn codes_are_single_use_and_expire() {
    for store in stores().await {
        let b = store.backend();
        store
            .add_sign_in("h", "ada@example.org", "Ada", "/", 100)
            .await
            .unwrap();
        assert_eq!(
            store.use_sign_in("h", None, 100).await.unwrap(),
            None,
            "{b}: expired at 100"
        );
        store
            .add_sign_in("h2", "ada@example.org", "Ada", "/", 100)
            .await
            .unwrap();
        assert!(store.use_sign_in("h2", None, 99).await.unwrap().is_some());
        assert_eq!(
            store.use_sign_in("h2", None, 99).await.unwrap(),
            None,
            "{b}: used once"
        );

        store
            .add_access_link("a", "room", "bo@corp.example", 50)
            .await
            .unwrap();
        assert_eq!(store.access_link("a", "other", 10).await.unwrap(), None);
        assert_eq!(
            store.access_link("a", "room", 10).await.unwrap().as_deref(),
            Some("bo@corp.example")
        );
        assert!(store.use_access_link("a", "room", 10).await.unwrap());
        assert!(!store.use_access_link("a", "room", 11).await.unwrap());
        assert_eq!(store.access_link("a", "room", 11).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_used_code_answers_again_only_the_browser_that_used_it_and_only_for_a_while() {
    for store in stores().await {
        let b = store.backend();
        store
            .add_sign_in("h", "ada@example.org", "Ada", "/next", 1000)
            .await
            .unwrap();
        let by = |browser, again_since| {
            Some(Claimant {
                browser,
                again_since,
            })
        };
        let first = store.use_sign_in("h", by("x", 0), 100).await.unwrap();
        assert_eq!(first.as_ref().map(|u| u.next.as_str()), Some("/next"));
        assert_eq!(
            store.use_sign_in("h", by("x", 50), 110).await.unwrap(),
            first,
            "{b}: the same browser, again"
        );
        assert_eq!(
            store.use_sign_in("h", by("y", 50), 110).await.unwrap(),
            None,
            "{b}: another browser"
        );
        assert_eq!(
            store.use_sign_in("h", None, 110).await.unwrap(),
            None,
            "{b}: a client without a claim cookie"
        );
        assert_eq!(
            store.use_sign_in("h", by("x", 100), 220).await.unwrap(),
            None,
            "{b}: the same browser, once its time to ask again is over"
        );
        // A code used without a claim cookie answers nobody again.
        store
            .add_sign_in("h2", "ada@example.org", "Ada", "/", 1000)
            .await
            .unwrap();
        assert!(store.use_sign_in("h2", None, 100).await.unwrap().is_some());
        assert_eq!(
            store.use_sign_in("h2", by("x", 0), 101).await.unwrap(),
            None,
            "{b}: first used by a client without one"
        );
    }
}

#[tokio::test]
async fn a_code_raced_by_many_connections_is_used_exactly_once() {
    let url = postgres::database().await;
    let replicas = [
        Store::connect(&url, 8).await.unwrap(),
        Store::connect(&url, 8).await.unwrap(),
    ];
    for round in 0..20 {
        let code = format!("c{round}");
        replicas[0]
            .add_sign_in(&code, "ada@example.org", "Ada", "/", 100)
            .await
            .unwrap();
        let tries = (0..8).map(|i| {
            let store = replicas[i % 2].clone();
            let code = code.clone();
            tokio::spawn(async move { store.use_sign_in(&code, None, 10).await.unwrap() })
        });
        let used = futures::future::try_join_all(tries).await.unwrap();
        assert_eq!(used.iter().flatten().count(), 1, "round {round}: {used:?}");
    }
}

#[tokio::test]
async fn a_pending_registration_becomes_a_ticket_only_through_its_code_and_never_replaces_one() {
    for store in stores().await {
        let ticket = |t: &str| Ticket {
            event: "default/gala".into(),
            ticket_type: t.into(),
        };
        store
            .register("default/gala", "ada@example.org", "Ada", "general", 1)
            .await
            .unwrap();
        store
            .add_sign_in("c1", "ada@example.org", "ada", "/e/default/gala", 100)
            .await
            .unwrap();
        store
            .add_pending_registration(
                "c1",
                "default/gala",
                "ada@example.org",
                "Mallory",
                "vip",
                100,
            )
            .await
            .unwrap();
        assert_eq!(
            store.tickets_of("ada@example.org").await.unwrap(),
            vec![ticket("general")]
        );
        let used = store.use_sign_in("c1", None, 10).await.unwrap().unwrap();
        assert_eq!(used.name, "Ada", "the registered name stays");
        assert_eq!(
            store.tickets_of("ada@example.org").await.unwrap(),
            vec![ticket("general")],
            "an existing registration is never replaced"
        );

        store
            .add_sign_in("c2", "bo@example.org", "bo", "/e/default/gala", 100)
            .await
            .unwrap();
        store
            .add_pending_registration("c2", "default/gala", "bo@example.org", "Bo", "vip", 100)
            .await
            .unwrap();
        assert!(store.tickets_of("bo@example.org").await.unwrap().is_empty());
        let used = store.use_sign_in("c2", None, 10).await.unwrap().unwrap();
        assert_eq!(used.name, "Bo");
        assert_eq!(
            store.tickets_of("bo@example.org").await.unwrap(),
            vec![ticket("vip")]
        );
    }
}

#[tokio::test]
async fn chat_keeps_the_latest_messages_per_scope() {
    for store in stores().await {
        for i in 0..(CHAT_KEPT + 5) {
            let entry = ChatEntry {
                at: i,
                name: "Ada".into(),
                email: "ada@example.org".into(),
                text: format!("m{i}"),
            };
            store.add_chat("event:a", &entry).await.unwrap();
        }
        let kept = store.chat("event:a").await.unwrap();
        assert_eq!(kept.len() as i64, CHAT_KEPT, "{}", store.backend());
        assert_eq!(kept.first().unwrap().text, "m5");
        assert!(store.chat("event:b").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_kept_message_reaches_the_feed_of_another_connection_without_the_email() {
    let url = postgres::database().await;
    let (a, b) = (
        Store::connect(&url, 2).await.unwrap(),
        Store::connect(&url, 2).await.unwrap(),
    );
    let mut feed = b.chat_feed().await.unwrap().expect("PostgreSQL has a feed");
    let entry = ChatEntry {
        at: 7,
        name: "Ada".into(),
        email: "ada@example.org".into(),
        text: "hello from a".into(),
    };
    a.add_chat("event:default/gala", &entry).await.unwrap();
    let (scope, heard) = tokio::time::timeout(std::time::Duration::from_secs(10), feed.next())
        .await
        .expect("heard within 10 s")
        .unwrap();
    assert_eq!(scope, "event:default/gala");
    assert_eq!(
        (heard.at, heard.text.as_str(), heard.email.as_str()),
        (7, "hello from a", "")
    );
    assert!(
        Store::in_memory()
            .await
            .unwrap()
            .chat_feed()
            .await
            .unwrap()
            .is_none()
    );
}
