//! Outgoing email: sign-in links and room access links, over SMTP (lettre).
//!
//! A sign-in link in a log is a sign-in for whoever reads the log, so the links are written
//! there only in the local mode (`roundtable up`, someone trying Roundtable on their laptop)
//! or when `roundtable api` is started with `--dev-print-sign-in-links`; see
//! [`Mailer::for_api`].

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
    },
    /// Print each message to the log (no SMTP server configured; development only).
    Log,
    /// Send nothing: email sign-in, registration and access links are refused (people sign
    /// in through an external registration system).
    Off,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Smtp { from, .. } => write!(f, "Mailer::Smtp(from {from})"),
            Mailer::Log => f.write_str("Mailer::Log"),
            Mailer::Off => f.write_str("Mailer::Off"),
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
    #[error("this server sends no email")]
    Off,
    #[error(
        "no SMTP server is configured (--smtp-url, ROUNDTABLE_SMTP_URL; chart value api.smtp.url \
         or api.smtp.existingSecret). Without one, sign-in links could only be written to the log, \
         where anyone who can read it signs in as an organiser. Configure SMTP, or sign people in \
         through an external registration system (--registration-key-file or \
         --registration-jwks-url), or for development only pass --dev-print-sign-in-links \
         (chart value api.devPrintSignInLinks)"
    )]
    NoSmtp,
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

    /// SMTP when a URL is given, else the log (the local mode).
    pub fn new(smtp_url: Option<&str>, from: &str) -> Result<Self, MailError> {
        match smtp_url.filter(|u| !u.trim().is_empty()) {
            Some(url) => Self::smtp(url, from),
            None => Ok(Mailer::Log),
        }
    }

    /// The control plane's mailer (`roundtable api`): SMTP when a URL is given; without one,
    /// the log only when `dev_print_links` says so, else no email at all when people can sign
    /// in through an external registration system, else an error: the control plane does not
    /// start.
    pub fn for_api(
        smtp_url: Option<&str>,
        from: &str,
        dev_print_links: bool,
        registration_system: bool,
    ) -> Result<Self, MailError> {
        match smtp_url.filter(|u| !u.trim().is_empty()) {
            Some(url) => Self::smtp(url, from),
            None if dev_print_links => Ok(Mailer::Log),
            None if registration_system => Ok(Mailer::Off),
            None => Err(MailError::NoSmtp),
        }
    }

    /// Whether messages leave at all (not [`Mailer::Off`]).
    pub fn sends(&self) -> bool {
        !matches!(self, Mailer::Off)
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
            Mailer::Off => return Err(MailError::Off),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "Roundtable <no-reply@example.com>";

    #[test]
    fn the_control_plane_writes_links_to_its_log_only_when_told_to() {
        let refused = Mailer::for_api(None, FROM, false, false).unwrap_err();
        assert!(matches!(refused, MailError::NoSmtp));
        assert!(refused.to_string().contains("--dev-print-sign-in-links"));
        assert!(matches!(
            Mailer::for_api(Some(" "), FROM, false, false),
            Err(MailError::NoSmtp)
        ));
        assert!(matches!(
            Mailer::for_api(None, FROM, true, false),
            Ok(Mailer::Log)
        ));
        let off = Mailer::for_api(None, FROM, false, true).unwrap();
        assert!(matches!(off, Mailer::Off) && !off.sends());
        assert!(matches!(
            Mailer::for_api(Some("smtp://127.0.0.1:2525"), FROM, false, false),
            Ok(Mailer::Smtp { .. })
        ));
        assert!(
            matches!(Mailer::new(None, FROM), Ok(Mailer::Log)),
            "the local mode prints links"
        );
    }
}
