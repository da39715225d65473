//! The router's tests on PostgreSQL: a fresh database per test on a server this test binary
//! starts (see `tests/support/postgres.rs`).

use super::*;

async fn test_store() -> Store {
    Store::connect(&store::tests::postgres::database().await, 4)
        .await
        .unwrap()
}

#[path = "tests.rs"]
mod tests;
