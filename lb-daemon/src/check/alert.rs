//! The checkers' `smtp_alert`: a mail through `smtp_server` when a real server goes up or down
//! and when a virtual server gains or loses its quorum, with keepalived 2.2.7's subjects
//! (`smtp.c`): `[ROUTER_ID] Realserver [10.0.0.2]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN`
//! and `[ROUTER_ID] Virtualserver [10.0.0.1]:tcp:80 - UP`.
//!
//! Whether a server alerts: its own `smtp_alert`, else `global_defs`' `smtp_alert_checker`,
//! else `smtp_alert`, else yes (nothing is sent without `smtp_server` and `notification_email`).
//! The SMTP dialogue is [`crate::vrrp::smtp::send`]'s; each mail is sent by a task of its own.

use tracing::{info, warn};

use crate::{
    config::model::GlobalDefs,
    vrrp::{config::SmtpPlan, smtp},
};

/// Whether a real or virtual server whose own `smtp_alert` is `own` alerts.
pub fn enabled(own: Option<bool>, global: &GlobalDefs) -> bool {
    own.or(global.smtp_alert_checker).or(global.smtp_alert).unwrap_or(true)
}

/// The subject and body of the mail for real server `rs` of `vs` going up or down, found by a
/// checker of kind `kind` (`TCP`, `HTTP_GET`, ...).
pub fn real_message(router_id: &str, rs: &str, vs: &str, up: bool, kind: &str) -> (String, String) {
    let state = if up { "UP" } else { "DOWN" };
    let verdict = if up { "succeed" } else { "failed" };
    (
        format!("[{router_id}] Realserver {rs} of virtual server {vs} - {state}"),
        format!("=> {kind} CHECK {verdict} on service <="),
    )
}

/// The subject and body of the mail for `vs` gaining or losing its quorum.
pub fn quorum_message(router_id: &str, vs: &str, up: bool) -> (String, String) {
    let (state, what) = if up { ("UP", "Gained") } else { ("DOWN", "Lost") };
    (format!("[{router_id}] Virtualserver {vs} - {state}"), format!("=> {what} quorum <="))
}

/// Sends a mail in the background (inside a tokio runtime).
pub fn send(plan: &SmtpPlan, (subject, body): (String, String)) {
    if plan.to.is_empty() {
        return;
    }
    let plan = plan.clone();
    tokio::spawn(async move {
        match smtp::send(&plan, &subject, &body).await {
            Ok(()) => info!("SMTP alert successfully sent."),
            Err(e) => warn!("SMTP alert not sent ({subject}): {e}"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_bodies_are_keepalived_s() {
        assert_eq!(
            real_message("lb1", "[10.0.0.2]:tcp:80", "[10.0.0.1]:tcp:80", false, "TCP"),
            (
                "[lb1] Realserver [10.0.0.2]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN".to_owned(),
                "=> TCP CHECK failed on service <=".to_owned()
            )
        );
        assert_eq!(
            real_message("lb1", "r", "v", true, "HTTP_GET").1,
            "=> HTTP_GET CHECK succeed on service <=".to_owned()
        );
        assert_eq!(
            quorum_message("lb1", "[10.0.0.1]:tcp:80", true).0,
            "[lb1] Virtualserver [10.0.0.1]:tcp:80 - UP".to_owned()
        );
    }

    #[test]
    fn the_servers_own_setting_wins_then_the_checker_default_then_the_global_one() {
        let mut global = GlobalDefs::default();
        assert!(enabled(None, &global), "keepalived alerts by default");
        global.smtp_alert = Some(false);
        assert!(!enabled(None, &global));
        global.smtp_alert_checker = Some(true);
        assert!(enabled(None, &global));
        assert!(!enabled(Some(false), &global));
    }
}
