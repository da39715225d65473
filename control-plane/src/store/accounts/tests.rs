//! Accounts in the store, on both backends.

use super::super::tests::stores;
use super::*;

#[tokio::test]
async fn a_slug_is_chosen_once_unique_and_the_database_refuses_any_change() {
    for store in stores().await {
        let b = store.backend();
        store
            .ensure_account("ada@example.com", "ada", 1)
            .await
            .unwrap();
        store
            .ensure_account("grace@example.com", "grace", 1)
            .await
            .unwrap();
        assert!(store.slug_free("ada").await.unwrap(), "{b}");
        store
            .onboard("ada@example.com", "meetings", "Ada Lovelace", "ada", 2)
            .await
            .unwrap()
            .unwrap();
        assert!(!store.slug_free("ada").await.unwrap(), "{b}");
        assert_eq!(
            store
                .onboard("grace@example.com", "meetings", "Grace", "ada", 2)
                .await
                .unwrap(),
            Err(NotOnboarded::SlugTaken),
            "{b}"
        );
        assert_eq!(
            store
                .onboard("ada@example.com", "meetings", "Ada", "ada-2", 3)
                .await
                .unwrap(),
            Err(NotOnboarded::AlreadyDone),
            "{b}"
        );
        // Whatever the application does, the database keeps the slug.
        let changed = on_pool!(store, p => {
            sqlx::query("UPDATE accounts SET slug = 'someone-else' WHERE email = 'ada@example.com'")
                .execute(p)
                .await
                .map(drop)
        });
        let refused = changed
            .expect_err("the trigger refuses a new slug")
            .to_string();
        assert!(refused.contains("slug cannot change"), "{b}: {refused}");
        let ada = store.account("ada@example.com").await.unwrap().unwrap();
        assert_eq!(ada.slug.as_deref(), Some("ada"), "{b}");
        assert_eq!(ada.display_name, "Ada Lovelace", "{b}");
        assert_eq!(
            store.account_by_slug("ADA").await.unwrap().unwrap().email,
            "ada@example.com",
            "{b}"
        );
    }
}

#[tokio::test]
async fn an_oidc_state_is_used_once_before_it_expires() {
    for store in stores().await {
        let b = store.backend();
        let pending = OidcPending {
            browser: "b".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            next: "/".into(),
        };
        store.add_oidc_state("s1", &pending, 100).await.unwrap();
        store.add_oidc_state("s2", &pending, 100).await.unwrap();
        assert_eq!(
            store.use_oidc_state("s1", 50).await.unwrap(),
            Some(pending.clone()),
            "{b}"
        );
        assert_eq!(
            store.use_oidc_state("s1", 51).await.unwrap(),
            None,
            "{b}: replayed"
        );
        assert_eq!(
            store.use_oidc_state("s2", 100).await.unwrap(),
            None,
            "{b}: expired"
        );
        assert_eq!(store.use_oidc_state("nope", 1).await.unwrap(), None, "{b}");
    }
}

#[tokio::test]
async fn deleting_an_account_removes_its_data_keeps_an_audit_record_and_retires_the_slug() {
    for store in stores().await {
        let b = store.backend();
        let email = "ada@example.com";
        store.ensure_account(email, "ada", 1).await.unwrap();
        store
            .onboard(email, "events", "Ada", "ada", 1)
            .await
            .unwrap()
            .unwrap();
        store.save_avatar(email, b"png").await.unwrap();
        let label = crate::store::Label {
            name: "Ada".into(),
            ..Default::default()
        };
        store.save_label(email, &label, 1).await.unwrap();
        store
            .register("default/gala", email, "Ada", "vip", 1)
            .await
            .unwrap();
        let room = KeptRoom {
            host: "ada".into(),
            slug: "office".into(),
            owner: email.into(),
            spec: "{}".into(),
            passcode: None,
        };
        assert!(store.keep_room(&room, true, 1).await.unwrap());
        assert!(
            !store.keep_room(&room, true, 1).await.unwrap(),
            "{b}: created twice"
        );
        let said = crate::store::ChatEntry {
            at: 1,
            name: "Ada".into(),
            email: email.into(),
            text: "hello".into(),
        };
        store.add_chat("event:default/gala", &said).await.unwrap();

        let deletion = store
            .delete_account(email, vec![("rooms".into(), 1)], 9)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(deletion.slug, "ada");
        assert!(
            deletion.summary().contains("name labels: 1"),
            "{b}: {}",
            deletion.summary()
        );
        assert!(deletion.summary().contains("dashboard rooms: 1"), "{b}");
        assert!(store.account(email).await.unwrap().is_none(), "{b}");
        assert!(store.label_of(email).await.unwrap().is_none(), "{b}");
        assert!(store.tickets_of(email).await.unwrap().is_empty(), "{b}");
        assert!(store.kept_rooms().await.unwrap().is_empty(), "{b}");
        assert!(store.avatar("ada").await.unwrap().is_none(), "{b}");
        let chat = store.chat("event:default/gala").await.unwrap();
        assert_eq!(
            (chat[0].name.as_str(), chat[0].email.as_str()),
            ("Deleted account", ""),
            "{b}"
        );
        let audit = store.deletions().await.unwrap();
        assert_eq!(audit.len(), 1, "{b}");
        assert_eq!(
            (audit[0].0.as_str(), audit[0].1.as_str(), audit[0].2),
            (email, "ada", 9)
        );
        assert!(
            audit[0].3.starts_with("rooms: 1; dashboard rooms: 1"),
            "{b}: {}",
            audit[0].3
        );
        // Nobody else gets the URL people were given.
        assert!(!store.slug_free("ada").await.unwrap(), "{b}");
        assert!(
            store
                .delete_account(email, vec![], 10)
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );
    }
}
