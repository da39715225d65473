//! Benchmark (not a test; run by `bench/control-plane`): sign-ins per second on each backend,
//! and how long an event-chat message takes from sender to reader on one replica (SQLite) and
//! across two replicas (PostgreSQL, LISTEN/NOTIFY). PostgreSQL runs with fsync on here.
//! Prints one JSON object as its last line.

#[path = "../tests/support/postgres.rs"]
mod postgres;
#[path = "../tests/support/replicas.rs"]
mod replicas;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use replicas::{Replica, browser, open_link, open_link_from, sign_in_code};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SIGN_INS: usize = 2000;
const CONCURRENCY: usize = 32;
const MESSAGES: usize = 50;

/// Sign-ins per second through `GET /signin?code=`, spread over `replicas`.
async fn sign_ins_per_second(replicas: &[&Replica]) -> f64 {
    let mut codes = vec![];
    for i in 0..SIGN_INS {
        codes.push(sign_in_code(&replicas[0].store, &format!("b{i}@example.org")).await);
    }
    let http = browser();
    let bases: Vec<String> = replicas.iter().map(|r| r.url("")).collect();
    let started = Instant::now();
    let done: Vec<bool> = futures::stream::iter(codes.iter().enumerate())
        .map(|(i, code)| {
            let (http, base) = (http.clone(), bases[i % bases.len()].clone());
            // Each from its own address: the per-address link limit is not what is measured.
            let client = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
            async move {
                open_link_from(&http, &base, code, Some(&client))
                    .await
                    .unwrap()
                    .is_some()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(done.iter().all(|d| *d), "every sign-in worked");
    SIGN_INS as f64 / seconds
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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
        .unwrap()
}

async fn chat(replica: &Replica, cookie: &str) -> Socket {
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
    next_chat(&mut socket, None).await;
    socket
}

/// Reads until the history (None) or the chat message with `text`.
async fn next_chat(socket: &mut Socket, text: Option<&str>) {
    loop {
        let Some(Ok(Message::Text(raw))) = socket.next().await else {
            panic!("the chat socket closed")
        };
        let v: Value = serde_json::from_str(&raw).unwrap();
        match text {
            None if v["type"] == "history" => return,
            Some(t) if v["type"] == "chat" && v["message"]["text"] == t => return,
            _ => {}
        }
    }
}

/// Milliseconds from sending at `from` to reading at `to`, per message, sorted.
async fn chat_latencies(from: &Replica, to: &Replica, tag: &str) -> Vec<f64> {
    let reader = attendee(to, &format!("reader-{tag}@example.org")).await;
    let mut reading = chat(to, &reader).await;
    // Ten senders, five messages each: within the chat's pace of five per five seconds.
    let mut senders = vec![];
    for i in 0..MESSAGES / 5 {
        let cookie = attendee(from, &format!("sender{i}-{tag}@example.org")).await;
        senders.push(chat(from, &cookie).await);
    }
    let mut took = vec![];
    for n in 0..MESSAGES {
        let text = format!("{tag} {n}");
        let count = senders.len();
        let sender = &mut senders[n % count];
        let started = Instant::now();
        sender
            .send(Message::Text(
                json!({"type": "chat", "text": text}).to_string().into(),
            ))
            .await
            .unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            next_chat(&mut reading, Some(&text)),
        )
        .await
        .expect("delivered within 10 s");
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    took
}

fn at(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    (sorted[i] * 100.0).round() / 100.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_path = dir.path().join("bench.db");
    let sqlite = tokio::task::spawn_blocking(move || Replica::start(sqlite_path.to_str().unwrap()))
        .await
        .unwrap();
    let server = postgres::start(true);
    postgres::create(&server, "bench").await;
    let url = server.url("bench");
    let (a, b) = tokio::task::spawn_blocking(move || (Replica::start(&url), Replica::start(&url)))
        .await
        .unwrap();

    eprintln!("sign-ins on SQLite (one replica)…");
    let sqlite_rate = sign_ins_per_second(&[&sqlite]).await;
    eprintln!("sign-ins on PostgreSQL (one replica)…");
    let pg_one_rate = sign_ins_per_second(&[&a]).await;
    eprintln!("sign-ins on PostgreSQL (two replicas)…");
    let pg_two_rate = sign_ins_per_second(&[&a, &b]).await;
    eprintln!("chat on one SQLite replica…");
    let local = chat_latencies(&sqlite, &sqlite, "sqlite").await;
    eprintln!("chat on one PostgreSQL replica, and across two…");
    let pg_same = chat_latencies(&a, &a, "pg-same").await;
    let pg_across = chat_latencies(&a, &b, "pg-across").await;

    let result = json!({
        "sign_ins": SIGN_INS,
        "concurrency": CONCURRENCY,
        "sign_ins_per_second_sqlite": sqlite_rate.round(),
        "sign_ins_per_second_postgres_1_replica": pg_one_rate.round(),
        "sign_ins_per_second_postgres_2_replicas": pg_two_rate.round(),
        "chat_messages": MESSAGES,
        "chat_ms_sqlite_same_replica_p50": at(&local, 0.5),
        "chat_ms_sqlite_same_replica_p95": at(&local, 0.95),
        "chat_ms_postgres_same_replica_p50": at(&pg_same, 0.5),
        "chat_ms_postgres_same_replica_p95": at(&pg_same, 0.95),
        "chat_ms_postgres_across_replicas_p50": at(&pg_across, 0.5),
        "chat_ms_postgres_across_replicas_p95": at(&pg_across, 0.95),
    });
    tokio::task::spawn_blocking(move || drop((sqlite, a, b)))
        .await
        .unwrap();
    drop(server);
    println!("{result}");
}
