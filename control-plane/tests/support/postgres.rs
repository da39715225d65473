//! A throwaway PostgreSQL server for tests and benchmarks: Debian's `postgresql` package
//! (scripts/install-deps), `initdb` into a temporary directory, `postgres` on a loopback port.
//! As root the server runs as the `postgres` user (PostgreSQL refuses root). It stops and its
//! directory goes when the process that started it exits: a shell holds it and waits for its
//! standard input, a pipe from this process, to close (then `pg_ctl stop`; `runuser` would
//! not pass a plain signal on).
//!
//! Included with `#[path]` by the control plane's unit tests, its integration tests and its
//! benchmark; one server per process, one database per caller ([`database`]).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running server: `postgres://postgres@127.0.0.1:<port>`.
#[derive(Debug)]
pub struct Server {
    pub port: u16,
    /// Kept so the pipe to the guarding shell stays open until the process exits.
    _guard: Child,
}

impl Server {
    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/install-deps installs Debian's postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server; `durable` keeps fsync on (benchmarks), tests turn it off.
pub fn start(durable: bool) -> Server {
    let bin = bin_dir();
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("roundtable-pg-{}-{}", std::process::id(), port));
    let root = is_root();
    let fsync = if durable {
        ""
    } else {
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    };
    let script = format!(
        r#"set -e
dir={dir}
mkdir -p "$dir/data"
{chown}
{run}"{bin}/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
{run}"{bin}/postgres" -D "$dir/data" -h 127.0.0.1 -p {port} -k "$dir" -c max_connections=300 {fsync} >"$dir/server.log" 2>&1 &
pid=$!
for i in $(seq 1 100); do
  if "{bin}/pg_isready" -q -h 127.0.0.1 -p {port}; then break; fi
  sleep 0.1
done
echo ready
cat >/dev/null || true
{run}"{bin}/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || kill -TERM $pid
wait $pid 2>/dev/null || true
rm -rf "$dir"
"#,
        dir = dir.display(),
        bin = bin.display(),
        chown = if root {
            "chown -R postgres \"$dir\""
        } else {
            ""
        },
        run = if root { "runuser -u postgres -- " } else { "" },
    );
    let mut guard = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    let mut line = String::new();
    BufReader::new(guard.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "ready",
        "PostgreSQL did not start; see {}/server.log",
        dir.display()
    );
    Server {
        port,
        _guard: guard,
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The server this process shares (started on first use, fsync off).
pub fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start(false))
}

/// A fresh, empty database on the shared server; its URL.
pub async fn database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = shared();
    let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
    create(server, &name).await;
    server.url(&name)
}

/// Creates database `name` on `server`.
pub async fn create(server: &Server, name: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&server.url("postgres"))
        .await
        .expect("connecting to the test server");
    sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("creating a test database");
    admin.close().await.ok();
}
