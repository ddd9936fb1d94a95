//! `smtp_alert`: a mail to `notification_email` through `smtp_server` on each state change of
//! an instance or sync group, with keepalived 2.2.7's subjects and bodies (`vrrp_notify.c`,
//! `smtp.c`): `[ROUTER_ID] VRRP Instance VI_1 - Entering MASTER state` and
//! `=> VRRP Instance is now owning VRRP VIPs <=`.
//!
//! The SMTP dialogue is the plain one keepalived has (HELO, MAIL FROM, RCPT TO, DATA, QUIT; no
//! TLS, no AUTH). Each mail is sent by a task of its own, so a slow server never delays VRRP.

use std::time::Duration;

use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
};
use tracing::{info, warn};

use super::{config::SmtpPlan, state::State};

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// Connecting, reading or writing failed.
    #[error("talking to the SMTP server")]
    Io(#[from] std::io::Error),
    /// The server did not answer in time.
    #[error("SMTP server timed out")]
    Timeout,
    /// The server refused a command.
    #[error("SMTP server answered {reply:?} to {command}")]
    Refused {
        /// The command.
        command: String,
        /// Its answer.
        reply: String,
    },
}

/// keepalived 2.2.7's `vrrp_smtp_notifier`: whether an instance or group entering `state` is
/// mailed, `last` being the state it was last mailed for. A state is mailed once in a row, and with
/// `no_email_faults` FAULT never is (nor is it remembered, so coming back from FAULT to the
/// state last mailed sends nothing either).
pub fn mail_due(state: State, last: Option<State>, no_email_faults: bool) -> bool {
    state != State::Init && last != Some(state) && !(no_email_faults && state == State::Fault)
}

/// The subject and body keepalived sends for an instance entering `state`.
pub fn instance_message(router_id: &str, name: &str, state: State) -> Option<(String, String)> {
    let (what, body) = match state {
        State::Master => ("Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <="),
        State::Backup => ("Entering BACKUP state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
        State::Fault => ("Entering FAULT state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
        State::Stop => ("Stopping", "=> VRRP Instance stopping <="),
        State::Init => return None,
    };
    Some((format!("[{router_id}] VRRP Instance {name} - {what}"), body.to_owned()))
}

/// The subject and body keepalived sends for a sync group entering `state`.
pub fn group_message(router_id: &str, name: &str, state: State) -> Option<(String, String)> {
    let (what, body) = match state {
        State::Master => ("Entering MASTER state", "=> All VRRP group instances are now in MASTER state <="),
        State::Backup => ("Entering BACKUP state", "=> All VRRP group instances are now in BACKUP state <="),
        State::Fault => ("Entering FAULT state", "=> All VRRP group instances are now in FAULT state <="),
        State::Stop => ("Stopping", "=> All VRRP group instances are now stopping <="),
        State::Init => return None,
    };
    Some((format!("[{router_id}] VRRP Group {name} - {what}"), body.to_owned()))
}

/// Mails the state change of instance `name`, in the background.
pub fn alert_instance(plan: &SmtpPlan, name: &str, state: State) {
    if let Some((subject, body)) = instance_message(&plan.router_id, name, state) {
        spawn(plan.clone(), subject, body);
    }
}

/// Mails the state change of sync group `name`, in the background.
pub fn alert_group(plan: &SmtpPlan, name: &str, state: State) {
    if let Some((subject, body)) = group_message(&plan.router_id, name, state) {
        spawn(plan.clone(), subject, body);
    }
}

fn spawn(plan: SmtpPlan, subject: String, body: String) {
    if plan.to.is_empty() {
        return;
    }
    tokio::spawn(async move {
        match send(&plan, &subject, &body).await {
            Ok(()) => info!("SMTP alert successfully sent."),
            Err(e) => warn!("SMTP alert not sent ({subject}): {}", super::addr::chain(&e)),
        }
    });
}

/// Sends one mail.
pub async fn send(plan: &SmtpPlan, subject: &str, body: &str) -> Result<(), SmtpError> {
    let timeout = plan.connect_timeout;
    let stream = within(timeout, TcpStream::connect((plan.host.as_str(), plan.port))).await??;
    let mut stream = BufReader::new(stream);
    expect(&mut stream, timeout, "connect", 220).await?;
    command(&mut stream, timeout, &format!("HELO {}", plan.helo), 250).await?;
    command(&mut stream, timeout, &format!("MAIL FROM:<{}>", plan.from), 250).await?;
    for to in &plan.to {
        command(&mut stream, timeout, &format!("RCPT TO:<{to}>"), 250).await?;
    }
    command(&mut stream, timeout, "DATA", 354).await?;
    let mut data = format!("From: {}\r\nSubject: {subject}\r\nX-Mailer: lbd\r\n", plan.from);
    for to in &plan.to {
        data.push_str(&format!("To: <{to}>\r\n"));
    }
    data.push_str("\r\n");
    for line in body.lines() {
        // Dot-stuffing (RFC 5321 §4.5.2).
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    within(timeout, stream.get_mut().write_all(data.as_bytes())).await??;
    expect(&mut stream, timeout, "end of data", 250).await?;
    command(&mut stream, timeout, "QUIT", 221).await?;
    Ok(())
}

async fn within<T>(timeout: Duration, future: impl Future<Output = T>) -> Result<T, SmtpError> {
    tokio::time::timeout(timeout, future).await.map_err(|_| SmtpError::Timeout)
}

async fn command(
    stream: &mut BufReader<TcpStream>,
    timeout: Duration,
    line: &str,
    code: u16,
) -> Result<(), SmtpError> {
    within(timeout, stream.get_mut().write_all(format!("{line}\r\n").as_bytes())).await??;
    expect(stream, timeout, line, code).await
}

/// Reads a (possibly multi-line) reply and checks its code.
async fn expect(
    stream: &mut BufReader<TcpStream>,
    timeout: Duration,
    command: &str,
    code: u16,
) -> Result<(), SmtpError> {
    loop {
        let mut line = String::new();
        let read = within(timeout, stream.read_line(&mut line)).await??;
        if read == 0 {
            return Err(SmtpError::Refused {
                command: command.to_owned(),
                reply: "connection closed".into(),
            });
        }
        // "250-more" continues, "250 last" ends.
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        return if line.get(..3).and_then(|c| c.parse::<u16>().ok()) == Some(code) {
            Ok(())
        } else {
            Err(SmtpError::Refused { command: command.to_owned(), reply: line.trim_end().to_owned() })
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{io::AsyncReadExt as _, net::TcpListener};

    #[test]
    fn a_state_is_mailed_once_in_a_row_and_no_email_faults_leaves_fault_out() {
        let mails = |states: &[State], no_email_faults: bool| {
            let mut last = None;
            let mut sent = Vec::new();
            for &state in states {
                if mail_due(state, last, no_email_faults) {
                    sent.push(state);
                    last = Some(state);
                }
            }
            sent
        };
        use State::{Backup, Fault, Master};
        // MASTER → FAULT → BACKUP → MASTER: the BACKUP after FAULT is mailed (MASTER was last).
        assert_eq!(
            mails(&[Backup, Master, Fault, Backup, Master], false),
            [Backup, Master, Fault, Backup, Master]
        );
        assert_eq!(mails(&[Backup, Master, Fault, Backup, Master], true), [Backup, Master, Backup, Master]);
        // BACKUP → FAULT → BACKUP: back to the state last mailed, nothing with no_email_faults.
        assert_eq!(mails(&[Backup, Fault, Backup], false), [Backup, Fault, Backup]);
        assert_eq!(mails(&[Backup, Fault, Backup], true), [Backup]);
        assert_eq!(mails(&[State::Init, Backup, Backup], false), [Backup]);
    }

    #[test]
    fn messages_match_keepalived() {
        assert_eq!(
            instance_message("lb1", "VI_1", State::Master),
            Some((
                "[lb1] VRRP Instance VI_1 - Entering MASTER state".into(),
                "=> VRRP Instance is now owning VRRP VIPs <=".into()
            ))
        );
        assert_eq!(
            group_message("lb1", "G1", State::Backup).map(|m| m.0),
            Some("[lb1] VRRP Group G1 - Entering BACKUP state".into())
        );
        assert_eq!(instance_message("lb1", "VI_1", State::Init), None);
    }

    #[tokio::test]
    async fn talks_smtp_to_a_sink() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let sink = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
            let mut seen = String::new();
            socket.write_all(b"220 sink ESMTP\r\n").await.unwrap_or_else(|e| panic!("{e}"));
            let mut buf = [0u8; 4096];
            let mut in_data = false;
            loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push_str(&chunk);
                let reply: &[u8] = if in_data {
                    if !chunk.ends_with(".\r\n") {
                        continue;
                    }
                    in_data = false;
                    b"250 queued\r\n"
                } else if chunk.starts_with("DATA") {
                    in_data = true;
                    b"354 go on\r\n"
                } else if chunk.starts_with("QUIT") {
                    let _ = socket.write_all(b"221 bye\r\n").await;
                    break;
                } else {
                    b"250 ok\r\n"
                };
                socket.write_all(reply).await.unwrap_or_else(|e| panic!("{e}"));
            }
            seen
        });
        let plan = SmtpPlan {
            host: "127.0.0.1".into(),
            port,
            helo: "lb1".into(),
            from: "lbd@example.org".into(),
            to: vec!["ops@example.org".into()],
            connect_timeout: Duration::from_secs(5),
            router_id: "lb1".into(),
        };
        let (subject, body) = instance_message("lb1", "VI_1", State::Master).unwrap_or_default();
        send(&plan, &subject, &body).await.unwrap_or_else(|e| panic!("{e}"));
        let seen = sink.await.unwrap_or_default();
        assert!(seen.contains("HELO lb1\r\n"), "{seen}");
        assert!(seen.contains("RCPT TO:<ops@example.org>\r\n"), "{seen}");
        assert!(seen.contains("Subject: [lb1] VRRP Instance VI_1 - Entering MASTER state\r\n"), "{seen}");
        assert!(seen.contains("=> VRRP Instance is now owning VRRP VIPs <=\r\n.\r\n"), "{seen}");
    }
}
