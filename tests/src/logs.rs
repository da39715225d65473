//! The operator's log as tests see it: every reconcile failure the operator logs is kept, so
//! a test can check that each one also reached the object's Events (what `kubectl describe`
//! shows), never only the log.

use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// One reconcile failure the operator logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedFailure {
    pub namespace: String,
    pub name: String,
    /// The reason the Event carries: the child refusal's (e.g. `PodForbidden`), or
    /// `ReconcileFailed`.
    pub reason: String,
    pub text: String,
}

static FAILURES: Mutex<Vec<LoggedFailure>> = Mutex::new(Vec::new());

/// The failures logged so far for objects in `namespace`.
pub fn failures_in(namespace: &str) -> Vec<LoggedFailure> {
    FAILURES
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|f| f.namespace == namespace)
        .cloned()
        .collect()
}

/// A tracing layer that keeps the operator's `reconcile failed` and refused-child warnings.
#[derive(Debug, Default)]
pub struct FailureLog;

#[derive(Default)]
struct Fields {
    message: String,
    namespace: String,
    name: String,
    reason: String,
    error: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}").trim_matches('"').to_string());
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            "namespace" => self.namespace = value,
            "name" => self.name = value,
            "reason" => self.reason = value,
            "error" | "detail" => self.error = value,
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for FailureLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::WARN || !meta.target().starts_with("roundtable_operator") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let reason = match fields.message.as_str() {
            "reconcile failed" => "ReconcileFailed".to_string(),
            "a child was refused; reported in status" => fields.reason.clone(),
            _ => return,
        };
        FAILURES.lock().expect("not poisoned").push(LoggedFailure {
            namespace: fields.namespace,
            name: fields.name,
            reason,
            text: fields.error,
        });
    }
}
