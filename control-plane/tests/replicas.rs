//! Two control-plane replicas on one PostgreSQL database (started by this test binary, see
//! `support/postgres.rs`), each serving HTTP on loopback: what one does, the other sees.

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/replicas.rs"]
mod replicas;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use replicas::{Replica, browser, open_link, open_link_with, sign_in_code};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Two replicas on a fresh database.
async fn pair() -> (Replica, Replica) {
    let url = postgres::database().await;
    let url2 = url.clone();
    // Started from plain threads: each replica owns its runtime.
    let (a, b) = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let a = s.spawn(|| Replica::start(&url));
            let b = s.spawn(|| Replica::start(&url2));
            (a.join().unwrap(), b.join().unwrap())
        })
    })
    .await
    .unwrap();
    (a, b)
}

async fn drop_all(replicas: Vec<Replica>) {
    tokio::task::spawn_blocking(move || drop(replicas))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_link_opened_at_both_replicas_at_once_works_once_and_the_cookie_works_at_both() {
    let (a, b) = pair().await;
    let http = browser();
    for round in 0..10 {
        let code = sign_in_code(&a.store, &format!("p{round}@example.org")).await;
        let (url_a, url_b) = (a.url(""), b.url(""));
        let (at_a, at_b) = tokio::join!(
            open_link(&http, &url_a, &code),
            open_link(&http, &url_b, &code)
        );
        let cookies: Vec<String> = [at_a.unwrap(), at_b.unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(cookies.len(), 1, "round {round}: signed in exactly once");
        for replica in [&a, &b] {
            let me: Value = http
                .get(replica.url("/api/me"))
                .header("cookie", &cookies[0])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                me["signedIn"], true,
                "the cookie of one replica works at the other"
            );
        }
    }
    drop_all(vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_email_rate_limit_holds_across_replicas() {
    let (a, b) = pair().await;
    let http = browser();
    let mut answers = vec![];
    for i in 0..6 {
        let replica = if i % 2 == 0 { &a } else { &b };
        let status = http
            .post(replica.url("/api/signin"))
            .json(&json!({"email": "ada@example.org"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        answers.push(status);
    }
    // Five emails to one address in 15 minutes, wherever they were asked for.
    assert_eq!(answers, [202, 202, 202, 202, 202, 429]);
    drop_all(vec![a, b]).await;
}

/// A signed-in attendee of the gala at `replica`: their cookie.
async fn attendee(replica: &Replica, email: &str) -> String {
    replica
        .store
        .register("default/gala", email, email, "general", replicas::NOW)
        .await
        .unwrap();
    let code = sign_in_code(&replica.store, email).await;
    open_link(&browser(), &replica.url(""), &code)
        .await
        .unwrap()
        .expect("signed in")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The gala's event chat at `replica`, after its history.
pub async fn chat(replica: &Replica, cookie: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{}/api/events/default/gala/chat", replica.addr);
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", replicas::PUBLIC_URL.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = next_json(&mut socket).await;
    assert_eq!(hello["type"], "history");
    socket
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_sent_at_one_replica_arrives_once_at_people_on_both() {
    let (a, b) = pair().await;
    let ada = attendee(&a, "ada@example.org").await;
    let bo = attendee(&b, "bo@example.org").await;
    let mut at_a = chat(&a, &ada).await;
    let mut at_b = chat(&b, &bo).await;
    at_a.send(Message::Text(
        json!({"type": "chat", "text": "hello across"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let heard = next_json(&mut at_b).await;
    assert_eq!(heard["type"], "chat");
    assert_eq!(heard["message"]["text"], "hello across");
    assert!(
        heard["message"].get("email").is_none(),
        "addresses stay private"
    );
    let echoed = next_json(&mut at_a).await;
    assert_eq!(
        echoed["message"]["text"], "hello across",
        "the sender sees it too"
    );
    at_b.send(Message::Text(
        json!({"type": "chat", "text": "and back"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut at_a).await["message"]["text"], "and back");
    assert_eq!(
        next_json(&mut at_b).await["message"]["text"],
        "and back",
        "exactly once: nothing else came before it"
    );
    // A late joiner at either replica gets both in the history.
    let history = a.store.chat("event:default/gala").await.unwrap();
    assert_eq!(history.len(), 2);
    drop_all(vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_during_a_join_burst_leaves_nobody_needing_a_new_link() {
    let (mut a, b) = pair().await;
    let http = browser();
    let people = 200;
    let mut codes = vec![];
    for i in 0..people {
        codes.push(sign_in_code(&b.store, &format!("burst{i}@example.org")).await);
    }
    let (base_a, base_b) = (a.url(""), b.url(""));
    let answered_by_a = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let burst = codes.iter().enumerate().map(|(i, code)| {
        let http = http.clone();
        let answered_by_a = answered_by_a.clone();
        let (base_a, base_b) = (base_a.clone(), base_b.clone());
        let code = code.clone();
        // Each person's own browser, from their own address (the load balancer forwards it).
        let client = format!("10.0.{}.{}", i / 256, i % 256);
        async move {
            // Half go to each replica; a request the load balancer sent to a dead replica is
            // sent again to the live one, as its retry (or the person's reload) would be, with
            // the browser's cookies.
            let mut claim = None;
            if i % 2 == 0
                && let Ok(answer) =
                    open_link_with(&http, &base_a, &code, Some(&client), &mut claim).await
            {
                answered_by_a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return (answer, "a", false);
            }
            let retried = claim.is_some();
            let answer = open_link_with(&http, &base_b, &code, Some(&client), &mut claim)
                .await
                .unwrap();
            (answer, "b", retried)
        }
    });
    let running = tokio::spawn(futures::future::join_all(burst));
    // Killed mid-burst: once it has answered a few.
    while answered_by_a.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::task::block_in_place(|| a.kill());
    let answered = running.await.unwrap();

    let by_a = answered.iter().filter(|(_, at, _)| *at == "a").count();
    let retried = answered.iter().filter(|(_, _, r)| *r).count();
    println!(
        "answered by the killed replica: {by_a}; sent again with their claim cookie: {retried}"
    );
    // Everyone got in: those sent to the survivor, and those whose sign-in the killed replica
    // committed without answering (their browser's retry carries its claim cookie).
    for (i, (cookie, at, _)) in answered.iter().enumerate() {
        let cookie = cookie
            .as_ref()
            .unwrap_or_else(|| panic!("person {i} (answered at {at}) needs a new link"));
        let me: Value = http
            .get(b.url("/api/me"))
            .header("cookie", cookie.as_str())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            me["email"],
            format!("burst{i}@example.org"),
            "every sign-in works at the survivor, as its own person"
        );
    }
    // A link is never used by two browsers, even in the burst.
    let used = codes[0].clone();
    let stranger = open_link(&http, &b.url(""), &used).await.unwrap();
    assert_eq!(stranger, None, "another browser with a used link");
    let fresh = sign_in_code(&b.store, "after@example.org").await;
    assert!(
        open_link(&http, &b.url(""), &fresh)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        by_a >= 10 && by_a < people / 2,
        "a was killed mid-burst: {by_a}"
    );
    drop_all(vec![a, b]).await;
}
