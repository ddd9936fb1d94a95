//! The connection table as the connection sync (`lvs_sync_daemon`) sees it: tracked flows
//! named by addresses ([`SyncedFlow`]) rather than by the table ids of one load balancer, and
//! the table entries that give another load balancer the same flow.
//!
//! Sans-IO: [`SyncIndex`] (what the service and real tables hold, by id and by address) turns
//! entries read from `LBD_CONNS4` / `LBD_CONNS` into [`SyncedFlow`]s on the master, and
//! [`SyncedFlow`]s into entries to write on the backup: the ORIGINAL entry (client → VIP) and,
//! for NAT, the REPLY entry (real → client), exactly as the XDP program writes them for a new
//! flow. The XDP backend ([`super::xdp`]) does the map reads and writes.
//!
//! FNAT flows are not synced: their local address and port have no field in the IPVS sync
//! protocol, and a backup holds other local addresses anyway.

use std::{collections::BTreeMap, net::IpAddr};

use lb_common::lb::{Flow, FlowKey, Method, Service, direction, family, tcp_state};

use super::{
    ForwardingMethod, Protocol, ServiceAddr,
    tables::{addr_from, words},
};

/// A tracked flow, by addresses: what one load balancer tells another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncedFlow {
    /// The virtual service.
    pub service: ServiceAddr,
    /// The client's address and port.
    pub client: (IpAddr, u16),
    /// The real server's address and port (the port the packets are sent to).
    pub real: (IpAddr, u16),
    /// How the service forwards.
    pub method: ForwardingMethod,
    /// The table's TCP state ([`tcp_state`]).
    pub tcp_state: u8,
}

/// Why a received flow gets no entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsynced {
    /// No such virtual service here.
    UnknownService,
    /// The service has no such real server here.
    UnknownReal,
    /// FNAT (or a method that differs from the local service's).
    Method,
}

/// What a flow's entries are: keys and values to insert.
pub type Entries = Vec<(FlowKey, Flow)>;

/// The service and real tables, indexed both ways.
#[derive(Clone, Debug, Default)]
pub struct SyncIndex {
    /// Services by id.
    pub services: BTreeMap<u32, (ServiceAddr, Service)>,
    /// Real ids by service id and the real's address and port.
    pub reals: BTreeMap<(u32, IpAddr, u16), u32>,
    /// Real addresses and ports by id.
    pub real_addrs: BTreeMap<u32, (IpAddr, u16)>,
}

const fn forwarding(method: u8) -> Option<ForwardingMethod> {
    match Method::from_u8(method) {
        Some(Method::Nat) => Some(ForwardingMethod::Nat),
        Some(Method::Dr) => Some(ForwardingMethod::Dr),
        Some(Method::Tun) => Some(ForwardingMethod::Tun),
        Some(Method::Fnat) | None => None,
    }
}

impl SyncIndex {
    /// The flow an ORIGINAL entry describes; `None` for REPLY entries, FNAT, and entries of
    /// services or reals that are gone.
    pub fn flow_of(&self, key: &FlowKey, flow: &Flow) -> Option<SyncedFlow> {
        if flow.direction != direction::ORIGINAL {
            return None;
        }
        let method = forwarding(flow.method)?;
        let (service, _) = self.services.get(&flow.service)?;
        let &(real_addr, real_port) = self.real_addrs.get(&flow.real)?;
        let client = addr_from(key.src, key.family)?;
        let dport = u16::from_be(key.dport);
        Some(SyncedFlow {
            service: ServiceAddr { port: dport, ..*service },
            client: (client, u16::from_be(key.sport)),
            real: (real_addr, if real_port == 0 { dport } else { real_port }),
            method,
            tcp_state: flow.tcp_state,
        })
    }

    /// The entries that make this load balancer send `synced`'s packets to the same real
    /// server, stamped `now_ns` (`CLOCK_MONOTONIC`, as the XDP program's clock).
    pub fn entries_of(&self, synced: &SyncedFlow, now_ns: u64) -> Result<Entries, Unsynced> {
        let exact = self.services.iter().find(|(_, (addr, _))| *addr == synced.service);
        let any_port = || {
            let wildcard = ServiceAddr { port: 0, ..synced.service };
            self.services.iter().find(|(_, (addr, _))| *addr == wildcard)
        };
        let (&service_id, (_, service)) = exact.or_else(any_port).ok_or(Unsynced::UnknownService)?;
        if forwarding(service.method) != Some(synced.method) {
            return Err(Unsynced::Method);
        }
        let (raddr, rport) = synced.real;
        let real = self
            .reals
            .get(&(service_id, raddr, rport))
            .or_else(|| self.reals.get(&(service_id, raddr, 0)))
            .copied()
            .ok_or(Unsynced::UnknownReal)?;
        let (client, fam) = words(synced.client.0);
        let (vip, _) = words(synced.service.vip);
        let (real_words, _) = words(raddr);
        let proto = synced.service.protocol.number();
        let key = FlowKey {
            src: client,
            dst: vip,
            sport: synced.client.1.to_be(),
            dport: synced.service.port.to_be(),
            proto,
            family: fam,
            pad: 0,
        };
        let flow = Flow {
            last_seen_ns: now_ns,
            real,
            service: service_id,
            direction: direction::ORIGINAL,
            tcp_state: if synced.service.protocol == Protocol::Tcp {
                synced.tcp_state
            } else {
                tcp_state::NONE
            },
            method: service.method,
            ..Flow::default()
        };
        let mut entries = vec![(key, flow)];
        if synced.method == ForwardingMethod::Nat {
            let reply_key =
                FlowKey { src: real_words, dst: client, sport: rport.to_be(), dport: key.sport, ..key };
            let reply = Flow { direction: direction::REPLY, nat_addr: vip, nat_port: key.dport, ..flow };
            entries.insert(0, (reply_key, reply));
        }
        Ok(entries)
    }
}

/// Whether an entry's key is IPv4 (it goes to the narrow table).
pub fn is_ipv4(key: &FlowKey) -> bool {
    key.family == family::IPV4
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn index(method: Method) -> SyncIndex {
        let service = ServiceAddr { vip: "10.0.0.100".parse().unwrap(), port: 80, protocol: Protocol::Tcp };
        let mut index = SyncIndex::default();
        index.services.insert(3, (service, Service { id: 3, method: method as u8, ..Service::default() }));
        for (id, last) in [(7, 2), (8, 3)] {
            let addr: IpAddr = format!("10.0.1.{last}").parse().unwrap();
            index.reals.insert((3, addr, 8080), id);
            index.real_addrs.insert(id, (addr, 8080));
        }
        index
    }

    fn synced(method: ForwardingMethod) -> SyncedFlow {
        SyncedFlow {
            service: ServiceAddr { vip: "10.0.0.100".parse().unwrap(), port: 80, protocol: Protocol::Tcp },
            client: ("10.0.0.1".parse().unwrap(), 40000),
            real: ("10.0.1.3".parse().unwrap(), 8080),
            method,
            tcp_state: tcp_state::ESTABLISHED,
        }
    }

    #[test]
    fn a_dr_flow_becomes_one_original_entry_and_reads_back_the_same() {
        let index = index(Method::Dr);
        let entries = index.entries_of(&synced(ForwardingMethod::Dr), 5).unwrap();
        assert_eq!(entries.len(), 1);
        let (key, flow) = entries[0];
        assert_eq!(
            (flow.real, flow.service, flow.direction, flow.last_seen_ns),
            (8, 3, direction::ORIGINAL, 5)
        );
        assert_eq!((u16::from_be(key.sport), u16::from_be(key.dport), key.proto), (40000, 80, 6));
        assert_eq!(index.flow_of(&key, &flow), Some(synced(ForwardingMethod::Dr)));
    }

    #[test]
    fn a_nat_flow_gets_its_reply_entry() {
        let index = index(Method::Nat);
        let entries = index.entries_of(&synced(ForwardingMethod::Nat), 5).unwrap();
        assert_eq!(entries.len(), 2);
        let (rkey, reply) = entries[0];
        assert_eq!(reply.direction, direction::REPLY);
        assert_eq!(addr_from(rkey.src, family::IPV4), Some("10.0.1.3".parse().unwrap()));
        assert_eq!(addr_from(rkey.dst, family::IPV4), Some("10.0.0.1".parse().unwrap()));
        assert_eq!((u16::from_be(rkey.sport), u16::from_be(rkey.dport)), (8080, 40000));
        assert_eq!(addr_from(reply.nat_addr, family::IPV4), Some("10.0.0.100".parse().unwrap()));
        assert_eq!(u16::from_be(reply.nat_port), 80);
        assert_eq!(index.flow_of(&rkey, &reply), None, "a reply entry is not a flow to sync");
    }

    #[test]
    fn unknown_services_reals_and_methods_are_refused() {
        let index = index(Method::Dr);
        let mut other = synced(ForwardingMethod::Dr);
        other.service.port = 443;
        assert_eq!(index.entries_of(&other, 0), Err(Unsynced::UnknownService));
        let mut other = synced(ForwardingMethod::Dr);
        other.real.0 = "10.0.1.9".parse().unwrap();
        assert_eq!(index.entries_of(&other, 0), Err(Unsynced::UnknownReal));
        assert_eq!(index.entries_of(&synced(ForwardingMethod::Nat), 0), Err(Unsynced::Method));
    }
}
