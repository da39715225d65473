//! Outgoing email: sign-in links and room access links, over SMTP (lettre).
//!
//! Without an SMTP server configured (the local mode's default) the links are written to the
//! log instead, so someone trying Roundtable on their laptop can still follow them.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
    },
    /// Print each message to the log (no SMTP server configured).
    Log,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Smtp { from, .. } => write!(f, "Mailer::Smtp(from {from})"),
            Mailer::Log => f.write_str("Mailer::Log"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("bad mail setting: {0}")]
    Config(String),
    #[error("could not build the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("bad address: {0}")]
    Address(#[from] lettre::address::AddressError),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl Mailer {
    /// An SMTP mailer from a URL such as `smtp://127.0.0.1:2525` (plain),
    /// `smtp://host:587?tls=required` (STARTTLS) or `smtps://user:pass@host` (TLS).
    pub fn smtp(url: &str, from: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::Config(format!("{url}: {e}")))?
            .build();
        Ok(Mailer::Smtp {
            transport: Box::new(transport),
            from: from.parse()?,
        })
    }

    /// SMTP when a URL is given, else the log.
    pub fn new(smtp_url: Option<&str>, from: &str) -> Result<Self, MailError> {
        match smtp_url {
            Some(url) => Self::smtp(url, from),
            None => Ok(Mailer::Log),
        }
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        match self {
            Mailer::Smtp { transport, from } => {
                let message = Message::builder()
                    .from(from.clone())
                    .to(to.parse()?)
                    .subject(subject)
                    .body(body)?;
                transport.send(message).await?;
            }
            Mailer::Log => {
                tracing::info!(to, subject, "mail (no SMTP server configured):\n{body}");
            }
        }
        Ok(())
    }
}
