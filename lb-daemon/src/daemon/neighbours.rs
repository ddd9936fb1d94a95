//! The real servers' next hops, kept resolved for the XDP data plane.
//!
//! Every real and sorry server of the configuration (whatever its checker says: a server that
//! comes back must not lose its first connection either) gets its next hop held as a managed
//! neighbour entry ([`crate::netlink::neigh`]). The set follows reloads; an orderly stop removes
//! the entries lbd made, a stop that leaves the data plane forwarding (`-I`, parent gone) keeps
//! them, and the next lbd adopts them.

use std::{collections::BTreeSet, net::IpAddr};

use tracing::{info, warn};

use crate::{
    dataplane::{DesiredState, xdp::error_chain},
    netlink::{
        Netlink,
        neigh::{Entry, NeighbourTable, NextHop},
    },
};

/// The next hops lbd keeps resolved.
#[derive(Debug, Default)]
pub struct Neighbours {
    managed: BTreeSet<NextHop>,
}

impl Neighbours {
    /// Keeps the next hops of `desired`'s real and sorry servers resolved and lets go of those
    /// no longer needed. Failures are logged: the data plane then hands a first packet to the
    /// kernel, as without this.
    pub async fn sync(&mut self, netlink: &Netlink, desired: &DesiredState) {
        let mut wanted = BTreeSet::new();
        for addr in servers(desired) {
            match netlink.next_hop(addr).await {
                Ok(Some(hop)) => {
                    wanted.insert(hop);
                }
                Ok(None) => {}
                Err(e) => warn!("real server {addr}: {}", error_chain(&e)),
            }
        }
        let table = match netlink.neighbour_table().await {
            Ok(table) => table,
            Err(e) => {
                warn!("{}", error_chain(&e));
                return;
            }
        };
        for &hop in wanted.difference(&self.managed.clone()) {
            match table.entry(hop) {
                Entry::Static => {}
                Entry::Managed => {
                    self.managed.insert(hop);
                }
                Entry::Ordinary => match netlink.keep_resolved(hop).await {
                    Ok(()) => {
                        info!("next hop {hop}: kept resolved (managed neighbour entry)");
                        self.managed.insert(hop);
                    }
                    Err(e) => warn!("{}", error_chain(&e)),
                },
            }
        }
        let gone: Vec<NextHop> = self.managed.difference(&wanted).copied().collect();
        for hop in gone {
            self.managed.remove(&hop);
            release(netlink, &table, hop).await;
        }
    }

    /// Removes every entry lbd made.
    pub async fn release(self, netlink: &Netlink) {
        if self.managed.is_empty() {
            return;
        }
        match netlink.neighbour_table().await {
            Ok(table) => {
                for hop in self.managed {
                    release(netlink, &table, hop).await;
                }
            }
            Err(e) => warn!("{}", error_chain(&e)),
        }
    }
}

async fn release(netlink: &Netlink, table: &NeighbourTable, hop: NextHop) {
    match netlink.release_resolved(table, hop).await {
        Ok(true) => info!("next hop {hop}: managed neighbour entry removed"),
        Ok(false) => {}
        Err(e) => warn!("{}", error_chain(&e)),
    }
}

/// The addresses of every real and sorry server, once each.
fn servers(desired: &DesiredState) -> BTreeSet<IpAddr> {
    desired
        .services
        .iter()
        .flat_map(|s| s.reals.iter().chain(s.sorry_server.as_ref()).map(|r| r.addr))
        .collect()
}
