//! The router's tests on SQLite in memory.

use super::*;

async fn test_store() -> Store {
    Store::in_memory().await.unwrap()
}

#[path = "tests.rs"]
mod tests;
