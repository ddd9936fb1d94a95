//! The optional status listener (`--status-listen ADDR:PORT`): `/metrics` in Prometheus text
//! format and `/status` as JSON, over HTTP/1 (hyper).
//!
//! The listener does not own any state: each request is handed to the daemon's loop, which owns
//! the data plane, and answered from the [`Snapshot`] it takes. Rendering is pure, so the
//! formats are tested without a socket.

use std::{convert::Infallible, fmt::Write as _, net::SocketAddr};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, header, service::service_fn};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::{bfd::SessionStatus, dataplane::ServiceCounters, vrrp::status::InstanceStatus};

/// Everything the endpoints show, taken by the daemon when a request comes.
#[derive(Debug, Default, Serialize)]
pub struct Snapshot {
    /// lbd's version.
    pub version: &'static str,
    /// Seconds since the daemon started.
    pub uptime_seconds: f64,
    /// Configuration reloads done (SIGHUP), refused ones included.
    pub reloads: u64,
    /// Reloads refused because the configuration had errors.
    pub reload_failures: u64,
    /// The VRRP instances.
    pub vrrp: Vec<InstanceStatus>,
    /// The virtual services and their real servers, with counters.
    pub virtual_servers: Vec<ServiceCounters>,
    /// The health checkers.
    pub checks: Vec<CheckStatus>,
    /// The BFD sessions.
    pub bfd: Vec<SessionStatus>,
}

/// One health checker as `/status` and `/metrics` show it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckStatus {
    /// Its virtual server, as keepalived names it (`[10.0.0.1]:tcp:80`).
    pub virtual_server: String,
    /// Its real server (`[10.0.1.1]:tcp:80`).
    pub real_server: String,
    /// Its keyword (`TCP_CHECK`, ...).
    pub check: String,
    /// Whether it counts its real server up.
    pub up: bool,
    /// Whether it is suspended (`ha_suspend`, the VIP not here).
    pub suspended: bool,
    /// Probes run.
    pub probes: u64,
    /// How long the last probe took, in seconds (until its verdict or its time limit).
    pub last_duration_seconds: Option<f64>,
}

impl From<crate::check::runner::CheckerHealth> for CheckStatus {
    fn from(c: crate::check::runner::CheckerHealth) -> Self {
        Self {
            virtual_server: c.virtual_server,
            real_server: c.real_server,
            check: c.kind.to_owned(),
            up: c.up,
            suspended: c.suspended,
            probes: c.probes,
            last_duration_seconds: c.last_duration.map(|d| d.as_secs_f64()),
        }
    }
}

/// What the endpoint asks the daemon for.
#[derive(Debug)]
pub struct SnapshotRequest(pub oneshot::Sender<Snapshot>);

/// Binds `addr` and serves until the daemon goes; requests reach the daemon through `requests`.
pub async fn serve(addr: SocketAddr, requests: mpsc::Sender<SnapshotRequest>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!("status listener: {e}");
                    continue;
                }
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(request, requests.clone()));
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!("status connection from {peer}: {e}");
                }
            });
        }
    });
    Ok(())
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    requests: mpsc::Sender<SnapshotRequest>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let respond = |status: StatusCode, kind: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = header::HeaderValue::from_str(kind) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        Ok(response)
    };
    let path = request.uri().path();
    if request.method() != hyper::Method::GET || !matches!(path, "/metrics" | "/status") {
        return respond(StatusCode::NOT_FOUND, "text/plain", "try /metrics or /status\n".into());
    }
    let (reply, snapshot) = oneshot::channel();
    if requests.send(SnapshotRequest(reply)).await.is_err() {
        return respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "stopping\n".into());
    }
    let Ok(snapshot) = snapshot.await else {
        return respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "stopping\n".into());
    };
    if path == "/metrics" {
        respond(StatusCode::OK, "text/plain; version=0.0.4", metrics(&snapshot))
    } else {
        let mut json = serde_json::to_string_pretty(&snapshot).unwrap_or_default();
        json.push('\n');
        respond(StatusCode::OK, "application/json", json)
    }
}

/// A metric family: name, type, help, and how to read its value from a `T`.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> f64);

/// The Prometheus text exposition of `s`.
pub fn metrics(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, samples: &mut dyn Iterator<Item = (String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
    family(
        "lbd_info",
        "gauge",
        "lbd's version.",
        &mut std::iter::once((format!("{{version=\"{}\"}}", s.version), 1.0)),
    );
    family(
        "lbd_uptime_seconds",
        "gauge",
        "Seconds since lbd started.",
        &mut std::iter::once((String::new(), s.uptime_seconds)),
    );
    family(
        "lbd_reloads_total",
        "counter",
        "Configuration reloads.",
        &mut std::iter::once((String::new(), s.reloads as f64)),
    );
    family(
        "lbd_reload_failures_total",
        "counter",
        "Reloads refused for configuration errors.",
        &mut std::iter::once((String::new(), s.reload_failures as f64)),
    );

    let instance = |i: &InstanceStatus| {
        format!("instance=\"{}\",interface=\"{}\",vrid=\"{}\"", esc(&i.name), esc(&i.interface), i.vrid)
    };
    family(
        "lbd_vrrp_state",
        "gauge",
        "VRRP instance state (1 for the current one).",
        &mut s.vrrp.iter().flat_map(|i| {
            ["INIT", "BACKUP", "MASTER", "FAULT"].into_iter().map(move |state| {
                (format!("{{{},state=\"{state}\"}}", instance(i)), f64::from(u8::from(i.state == state)))
            })
        }),
    );
    let per_instance: [Family<InstanceStatus>; 8] = [
        ("lbd_vrrp_priority", "gauge", "Configured priority.", |i| f64::from(i.base_priority)),
        ("lbd_vrrp_effective_priority", "gauge", "Priority after tracking weights.", |i| {
            f64::from(i.effective_priority)
        }),
        ("lbd_vrrp_transitions_total", "counter", "State changes.", |i| i.transitions as f64),
        ("lbd_vrrp_became_master_total", "counter", "Times the instance became MASTER.", |i| {
            i.stats.become_master as f64
        }),
        ("lbd_vrrp_released_master_total", "counter", "Times the instance left MASTER.", |i| {
            i.stats.release_master as f64
        }),
        ("lbd_vrrp_adverts_sent_total", "counter", "Adverts sent.", |i| i.stats.advert_sent as f64),
        ("lbd_vrrp_adverts_received_total", "counter", "Adverts received.", |i| i.stats.advert_rcvd as f64),
        ("lbd_vrrp_adverts_discarded_total", "counter", "Adverts dropped for a mismatch.", |i| {
            i.stats.discarded as f64
        }),
    ];
    for (name, kind, help, value) in per_instance {
        family(name, kind, help, &mut s.vrrp.iter().map(|i| (format!("{{{}}}", instance(i)), value(i))));
    }

    let service = |v: &ServiceCounters| format!("virtual_server=\"{}\"", esc(&v.service.to_string()));
    let per_service: [Family<ServiceCounters>; 5] = [
        ("lbd_virtual_server_packets_total", "counter", "Packets from clients.", |v| {
            v.counters.packets as f64
        }),
        ("lbd_virtual_server_bytes_total", "counter", "Bytes from clients.", |v| v.counters.bytes as f64),
        ("lbd_virtual_server_connections_total", "counter", "Connections scheduled.", |v| {
            v.counters.new_conns as f64
        }),
        ("lbd_virtual_server_active_connections", "gauge", "Connections open.", |v| {
            v.counters.active_conns as f64
        }),
        ("lbd_virtual_server_no_real_total", "counter", "Packets dropped for want of a real server.", |v| {
            v.no_real as f64
        }),
    ];
    for (name, kind, help, value) in per_service {
        family(
            name,
            kind,
            help,
            &mut s.virtual_servers.iter().map(|v| (format!("{{{}}}", service(v)), value(v))),
        );
    }
    let reals = || {
        s.virtual_servers.iter().flat_map(move |v| {
            v.reals.iter().map(move |r| {
                let labels = format!(
                    "{{{},real_server=\"{}\",sorry=\"{}\"}}",
                    service(v),
                    std::net::SocketAddr::new(r.addr, r.port),
                    r.sorry
                );
                (labels, r)
            })
        })
    };
    let per_real: [Family<crate::dataplane::RealCounters>; 6] = [
        (
            "lbd_real_server_up",
            "gauge",
            "1 when the real server takes new connections (weight above 0).",
            |r| f64::from(u8::from(r.weight > 0)),
        ),
        ("lbd_real_server_weight", "gauge", "Weight as applied.", |r| f64::from(r.weight)),
        ("lbd_real_server_packets_total", "counter", "Packets forwarded to the real server.", |r| {
            r.counters.packets as f64
        }),
        ("lbd_real_server_bytes_total", "counter", "Bytes forwarded to the real server.", |r| {
            r.counters.bytes as f64
        }),
        ("lbd_real_server_connections_total", "counter", "Connections scheduled to the real server.", |r| {
            r.counters.new_conns as f64
        }),
        ("lbd_real_server_active_connections", "gauge", "Connections open to the real server.", |r| {
            r.counters.active_conns as f64
        }),
    ];
    for (name, kind, help, value) in per_real {
        family(name, kind, help, &mut reals().map(|(labels, r)| (labels, value(r))));
    }

    let check = |c: &CheckStatus| {
        format!(
            "{{virtual_server=\"{}\",real_server=\"{}\",check=\"{}\"}}",
            esc(&c.virtual_server),
            esc(&c.real_server),
            esc(&c.check)
        )
    };
    let per_check: [Family<CheckStatus>; 3] = [
        ("lbd_check_up", "gauge", "1 when the checker counts its real server up.", |c| {
            f64::from(u8::from(c.up))
        }),
        ("lbd_check_suspended", "gauge", "1 while the checker is suspended (ha_suspend).", |c| {
            f64::from(u8::from(c.suspended))
        }),
        ("lbd_check_probes_total", "counter", "Probes run.", |c| c.probes as f64),
    ];
    for (name, kind, help, value) in per_check {
        family(name, kind, help, &mut s.checks.iter().map(|c| (check(c), value(c))));
    }
    family(
        "lbd_check_duration_seconds",
        "gauge",
        "How long the checker's last probe took (until its verdict or its time limit).",
        &mut s.checks.iter().filter_map(|c| Some((check(c), c.last_duration_seconds?))),
    );

    let session =
        |b: &SessionStatus| format!("instance=\"{}\",neighbor=\"{}\"", esc(&b.name), esc(&b.neighbor));
    family(
        "lbd_bfd_session_state",
        "gauge",
        "BFD session state (1 for the current one).",
        &mut s.bfd.iter().flat_map(|b| {
            ["AdminDown", "Down", "Init", "Up"].into_iter().map(move |state| {
                (format!("{{{},state=\"{state}\"}}", session(b)), f64::from(u8::from(b.state == state)))
            })
        }),
    );
    let per_session: [Family<SessionStatus>; 6] = [
        ("lbd_bfd_session_up", "gauge", "1 while the BFD session is Up.", |b| f64::from(u8::from(b.up()))),
        ("lbd_bfd_remote_discriminator", "gauge", "The remote's discriminator (0 while unheard).", |b| {
            f64::from(b.remote_discriminator)
        }),
        ("lbd_bfd_tx_interval_seconds", "gauge", "Interval of the packets sent.", |b| us(b.tx_interval_us)),
        ("lbd_bfd_remote_tx_interval_seconds", "gauge", "Interval of the remote's packets.", |b| {
            us(b.remote_tx_interval_us)
        }),
        ("lbd_bfd_detection_time_seconds", "gauge", "Silence this long takes the session down.", |b| {
            us(b.detection_time_us)
        }),
        (
            "lbd_bfd_last_state_change_timestamp_seconds",
            "gauge",
            "When the session's state last changed (Unix time).",
            |b| b.last_state_change,
        ),
    ];
    for (name, kind, help, value) in per_session {
        family(name, kind, help, &mut s.bfd.iter().map(|b| (format!("{{{}}}", session(b)), value(b))));
    }
    out
}

/// Seconds of `micros` microseconds.
fn us(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// A label value escaped per the exposition format.
fn esc(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{Counters, Protocol, RealCounters, ServiceAddr};

    #[test]
    fn metrics_name_every_instance_service_and_real() {
        let snapshot = Snapshot {
            version: "0.1.0",
            reloads: 2,
            vrrp: vec![InstanceStatus {
                name: "VI_1".into(),
                interface: "eth0".into(),
                vrid: 51,
                state: "MASTER",
                base_priority: 150,
                effective_priority: 140,
                ..InstanceStatus::default()
            }],
            virtual_servers: vec![ServiceCounters {
                service: ServiceAddr { vip: [10, 0, 0, 1].into(), port: 80, protocol: Protocol::Tcp },
                counters: Counters { packets: 7, ..Counters::default() },
                no_real: 0,
                reals: vec![RealCounters {
                    addr: [10, 1, 0, 1].into(),
                    port: 8080,
                    sorry: false,
                    weight: 0,
                    counters: Counters { active_conns: 3, ..Counters::default() },
                }],
            }],
            checks: vec![CheckStatus {
                virtual_server: "[10.0.0.1]:tcp:80".into(),
                real_server: "[10.1.0.1]:tcp:8080".into(),
                check: "TCP_CHECK".into(),
                up: true,
                probes: 4,
                last_duration_seconds: Some(0.25),
                ..CheckStatus::default()
            }],
            bfd: vec![SessionStatus {
                name: "to_ka".into(),
                neighbor: "10.52.0.2".into(),
                state: "Up".into(),
                remote_discriminator: 0x5985fc85,
                tx_interval_us: 50_000,
                detection_time_us: 250_000,
                last_state_change: 1796071481.5,
                ..SessionStatus::default()
            }],
            ..Snapshot::default()
        };
        let text = metrics(&snapshot);
        for line in [
            "lbd_reloads_total 2",
            r#"lbd_vrrp_state{instance="VI_1",interface="eth0",vrid="51",state="MASTER"} 1"#,
            r#"lbd_vrrp_state{instance="VI_1",interface="eth0",vrid="51",state="BACKUP"} 0"#,
            r#"lbd_vrrp_effective_priority{instance="VI_1",interface="eth0",vrid="51"} 140"#,
            r#"lbd_virtual_server_packets_total{virtual_server="TCP 10.0.0.1:80"} 7"#,
            r#"lbd_real_server_up{virtual_server="TCP 10.0.0.1:80",real_server="10.1.0.1:8080",sorry="false"} 0"#,
            r#"lbd_real_server_active_connections{virtual_server="TCP 10.0.0.1:80",real_server="10.1.0.1:8080",sorry="false"} 3"#,
            "# TYPE lbd_real_server_packets_total counter",
            r#"lbd_check_up{virtual_server="[10.0.0.1]:tcp:80",real_server="[10.1.0.1]:tcp:8080",check="TCP_CHECK"} 1"#,
            r#"lbd_check_duration_seconds{virtual_server="[10.0.0.1]:tcp:80",real_server="[10.1.0.1]:tcp:8080",check="TCP_CHECK"} 0.25"#,
            r#"lbd_check_probes_total{virtual_server="[10.0.0.1]:tcp:80",real_server="[10.1.0.1]:tcp:8080",check="TCP_CHECK"} 4"#,
            r#"lbd_bfd_session_state{instance="to_ka",neighbor="10.52.0.2",state="Up"} 1"#,
            r#"lbd_bfd_session_state{instance="to_ka",neighbor="10.52.0.2",state="Down"} 0"#,
            r#"lbd_bfd_session_up{instance="to_ka",neighbor="10.52.0.2"} 1"#,
            r#"lbd_bfd_remote_discriminator{instance="to_ka",neighbor="10.52.0.2"} 1501953157"#,
            r#"lbd_bfd_tx_interval_seconds{instance="to_ka",neighbor="10.52.0.2"} 0.05"#,
            r#"lbd_bfd_detection_time_seconds{instance="to_ka",neighbor="10.52.0.2"} 0.25"#,
            r#"lbd_bfd_last_state_change_timestamp_seconds{instance="to_ka",neighbor="10.52.0.2"} 1796071481.5"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert_eq!(esc("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
