//! Policy routing rules (`ip rule`), for `static_rules`.

use std::net::IpAddr;

use netlink_packet_route::{
    AddressFamily,
    route::RouteProtocol,
    rule::{RuleAction, RuleAttribute, RuleMessage},
};

use super::{Netlink, NetlinkError, is_errno, route::RTPROT_KEEPALIVED};

/// A rule, as `ip rule add` takes it (lookup a table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// IPv6 (`inet6`, or the family of its prefixes).
    pub ipv6: bool,
    /// `from PREFIX`.
    pub from: Option<(IpAddr, u8)>,
    /// `to PREFIX`.
    pub to: Option<(IpAddr, u8)>,
    /// The table it looks up.
    pub table: u32,
    /// `preference`.
    pub preference: Option<u32>,
    /// `iif NAME`.
    pub iif: Option<String>,
    /// `oif NAME`.
    pub oif: Option<String>,
    /// `fwmark MARK[/MASK]`.
    pub fwmark: Option<(u32, Option<u32>)>,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule")?;
        if let Some((addr, len)) = self.from {
            write!(f, " from {addr}/{len}")?;
        }
        if let Some((addr, len)) = self.to {
            write!(f, " to {addr}/{len}")?;
        }
        write!(f, " lookup {}", self.table)?;
        if let Some(preference) = self.preference {
            write!(f, " pref {preference}")?;
        }
        Ok(())
    }
}

impl Rule {
    /// The netlink message that adds or deletes it.
    fn message(&self) -> RuleMessage {
        let mut message = RuleMessage::default();
        message.header.family = if self.ipv6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        message.header.action = RuleAction::ToTable;
        if let Ok(table) = u8::try_from(self.table) {
            message.header.table = table;
        }
        message.attributes.push(RuleAttribute::Table(self.table));
        if let Some((addr, len)) = self.from {
            message.header.src_len = len;
            message.attributes.push(RuleAttribute::Source(addr));
        }
        if let Some((addr, len)) = self.to {
            message.header.dst_len = len;
            message.attributes.push(RuleAttribute::Destination(addr));
        }
        if let Some(preference) = self.preference {
            message.attributes.push(RuleAttribute::Priority(preference));
        }
        if let Some(iif) = &self.iif {
            message.attributes.push(RuleAttribute::Iifname(iif.clone()));
        }
        if let Some(oif) = &self.oif {
            message.attributes.push(RuleAttribute::Oifname(oif.clone()));
        }
        if let Some((mark, mask)) = self.fwmark {
            message.attributes.push(RuleAttribute::FwMark(mark));
            if let Some(mask) = mask {
                message.attributes.push(RuleAttribute::FwMask(mask));
            }
        }
        message.attributes.push(RuleAttribute::Protocol(RouteProtocol::from(RTPROT_KEEPALIVED)));
        message
    }
}

impl Netlink {
    /// Adds `rule`; one already there is fine.
    pub async fn add_rule(&self, rule: &Rule) -> Result<(), NetlinkError> {
        let mut request = self.handle().rule().add();
        *request.message_mut() = rule.message();
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(source) => Err(NetlinkError::Request { request: format!("adding {rule}"), source }),
        }
    }

    /// Removes `rule`. Returns whether it was there.
    pub async fn delete_rule(&self, rule: &Rule) -> Result<bool, NetlinkError> {
        match self.handle().rule().del(rule.message()).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(false),
            Err(source) => Err(NetlinkError::Request { request: format!("removing {rule}"), source }),
        }
    }
}
