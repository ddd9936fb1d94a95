//! `static_ipaddress`, `static_routes` and `static_rules`: addresses, routes and rules the VRRP child keeps configured
//! whatever its instances' states, as keepalived does. They are installed when the child starts
//! (without a lifetime: unlike VIPs they belong on this host even after a kill -9), changed by
//! a reload to what the new configuration says, and removed on an orderly stop unless `-V`.

use tracing::warn;

use super::{
    addr,
    config::{StaticPlan, static_plan},
    engine::read_host,
};
use crate::{
    config::Config,
    netlink::{Netlink, addr::Lifetime},
};

/// What was installed.
#[derive(Debug, Default)]
pub struct Statics {
    plan: StaticPlan,
}

impl Statics {
    /// Installs the static addresses and routes of `config`.
    pub async fn install(netlink: &Netlink, config: &Config) -> Self {
        let mut statics = Self::default();
        statics.reload(netlink, config).await;
        statics
    }

    /// Makes the installed entries those of `config`: removes what it no longer has, adds (or
    /// replaces) the rest.
    pub async fn reload(&mut self, netlink: &Netlink, config: &Config) {
        if config.static_ipaddress.is_empty()
            && config.static_routes.is_empty()
            && config.static_rules.is_empty()
            && self.plan == StaticPlan::default()
        {
            return;
        }
        let host = match read_host(netlink).await {
            Ok(host) => host,
            Err(e) => {
                warn!("static addresses and routes: reading the interfaces: {e}");
                return;
            }
        };
        let (plan, problems) = static_plan(config, &host);
        for problem in problems {
            warn!("{problem}");
        }
        let old_rules: Vec<_> = self.plan.rules.iter().filter(|r| !plan.rules.contains(r)).cloned().collect();
        addr::remove_rules(netlink, "static", &old_rules).await;
        let old_routes: Vec<_> =
            self.plan.routes.iter().filter(|r| !plan.routes.contains(r)).cloned().collect();
        addr::remove_routes(netlink, "static", &old_routes).await;
        let old_addresses: Vec<_> =
            self.plan.addresses.iter().filter(|a| !plan.addresses.contains(a)).cloned().collect();
        addr::remove(netlink, "static", &old_addresses).await;
        addr::add(netlink, "static", &plan.addresses, Lifetime::Forever).await;
        // Routes after the addresses they may take their source from.
        addr::add_routes(netlink, "static", &plan.routes).await;
        addr::add_rules(netlink, "static", &plan.rules).await;
        self.plan = plan;
    }

    /// Removes every entry installed.
    pub async fn remove(self, netlink: &Netlink) {
        addr::remove_rules(netlink, "static", &self.plan.rules).await;
        addr::remove_routes(netlink, "static", &self.plan.routes).await;
        addr::remove(netlink, "static", &self.plan.addresses).await;
    }
}
