//! The VRRP state machine of RFC 5798 §6 (and RFC 3768 §6 for v2), with keepalived 2.2.7's
//! extensions, as a sans-IO [`Instance`].
//!
//! The instance does no I/O and reads no clock: the socket layer feeds it [`Event`]s with the
//! current time, carries out the [`Action`]s it returns, and calls it again with [`Event::Timer`]
//! when [`Instance::next_deadline`] is reached. Tests drive it with a fake clock.
//!
//! States are keepalived's: INIT, BACKUP, MASTER, FAULT, and STOP after a shutdown. Behaviour
//! that departs from a plain reading of the RFC follows keepalived 2.2.7 (`vrrp.c`,
//! `vrrp_scheduler.c`) and what was measured of it (`vrrp-captures/README.md`):
//! - a non-owner always starts in BACKUP, even with `state MASTER`, and takes over after
//!   Master_Down_Interval; the owner (priority 255) goes MASTER at once (RFC 5798 §6.4.1);
//! - `state MASTER` and the owner force preemption on (nopreempt and preempt_delay are cleared);
//! - Skew_Time is `((256 − priority) × Master_Adver_Interval) / 256` for v3 (RFC 5798 §6.1) and
//!   `(256 − priority) / 256` seconds for v2 whatever the interval (RFC 3768 §6.1), computed in
//!   microseconds with keepalived's integer arithmetic; priority is the effective one;
//! - with `preempt_delay`, a backup keeps accepting lower-priority adverts until the delay,
//!   started by the first such advert, has run out;
//! - a master answers a lower-priority advert with an advert of its own unless
//!   `vrrp_lower_prio_no_advert`; with `vrrp_higher_prio_send_advert` it also sends one before
//!   yielding to a higher priority;
//! - on becoming master the VIPs are added first (keepalived sends its advert first: the address
//!   is what the hosts wait for, and the advert's send only delayed it), then the advert goes
//!   out, before the gratuitous ARPs, so that an old master still alive drops the VIPs before
//!   the ARPs reach the hosts; a second burst follows after `garp_master_delay`;
//! - a v2 advert whose interval differs from ours is discarded (RFC 3768 §7.1); a v3 backup
//!   learns Master_Adver_Interval from the master (RFC 5798 §6.4.2);
//! - effective priority = base + tracking weights, kept within 1..=254 unless the base is 255;
//! - sync groups (keepalived's `vrrp_sync.c`) are coordinated by the caller with
//!   [`Event::SyncHold`] (a member whose Master_Down_Timer fired waits for the rest of its
//!   group), [`Event::SyncMaster`] and [`Event::SyncBackup`] (members follow one that moved);
//! - beyond keepalived: a Master_Down_Timer handled [`STALL`] (or half an advert interval, if
//!   less) after it ran out was not watched (the daemon waited for a CPU, or its whole machine
//!   was paused: a VM whose host throttles it stops every virtual CPU at once): the master may
//!   not have run either, and its advert may be about to arrive, so the backup waits
//!   [`STALL_WAIT`] more (at most one Master_Adver_Interval) before taking over, once per timer
//!   ([`LATE_GRACE`]), and never after a priority-0 advert (the master said it is leaving);
//! - when leaving FAULT the instance comes up as at startup, with the configured interval: in
//!   BACKUP for a full Master_Down_Interval (measured: MASTER 3.418 s after link up), or, for the
//!   owner, MASTER at once (RFC 5798 §6.4.1; keepalived 2.2.7 makes the owner wait in BACKUP
//!   too, which only delays a takeover that is certain anyway).

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU8;
use std::time::{Duration, Instant};

use super::packet::{
    AUTH_DATA_LEN, AddressFamily, AddressList, AuthType, MaxAdverInt, PRIORITY_OWNER, PRIORITY_STOP, Version,
    VersionFields, Vrid, VrrpAdvert, compare_addresses,
};

/// Microseconds per centisecond: keepalived's `TIMER_CENTI_HZ`.
const MICROS_PER_CENTISECOND: u64 = 10_000;
/// Master_Down_Interval counts this many advert intervals before the skew (RFC 5798 §6.1), unless
/// `down_timer_adverts` says otherwise.
pub const DOWN_TIMER_ADVERTS: u32 = 3;
/// A Master_Down_Timer handled at least this fraction of Master_Adver_Interval late (1/N), or
/// [`STALL`] late if that is less, gets [`STALL_WAIT`] more (at most one Master_Adver_Interval)
/// before the backup takes over.
pub const LATE_GRACE: u32 = 2;
/// How long a backup whose Master_Down_Timer was handled late waits, from when it handled it,
/// for the master's advert before taking over. Adverts that arrived while the backup did not
/// run are read before its timer; what it still waits for is a master stopped with it (the
/// same throttled VM) whose advert, overdue, goes out as soon as it runs again: a real-time
/// thread's wake-up and a trip over the link, well under a millisecond when measured. A whole
/// Master_Adver_Interval (what this was) cost every late timer 100 ms at `advert_int 0.1`
/// (`cargo xtask bench vrrp`).
pub const STALL_WAIT: Duration = Duration::from_millis(5);
/// A wake-up this late means the daemon did not run: the engine's timer (a timerfd) wakes a
/// real-time thread within 0.1 ms of its deadline. Measured on a VM throttled by its host (the
/// soak of `cargo xtask bench vrrp`): the whole machine stops for up to tens of milliseconds at
/// the end of the host's 100 ms accounting period, master and backup alike; a stop longer than
/// Master_Down_Interval − Master_Adver_Interval that ended up to half an interval after the
/// backup's timer ran out made it take over from a master whose advert was about to go out.
pub const STALL: Duration = Duration::from_millis(1);
/// What [`later`] falls back to when a configured delay overflows [`Instant`]: about 136 years.
const FAR_FUTURE: Duration = Duration::from_secs(u32::MAX as u64);

/// Why an [`InstanceParams`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VrrpStateError {
    /// Priority 0 is reserved for "master stopping" (RFC 5798 §5.2.4).
    #[error("priority 0 is reserved for a stopping master; use 1..=255")]
    ZeroPriority,
    /// The interval cannot be carried by adverts of this version.
    #[error("advert interval {interval:?} cannot be sent in {version}: {expected}")]
    InvalidAdvertInterval {
        /// The protocol version.
        version: Version,
        /// The interval asked for.
        interval: Duration,
        /// What the version can carry.
        expected: &'static str,
    },
    /// The primary address and the virtual addresses are of different families.
    #[error("{source_family} primary address {address} with {addresses_family} virtual addresses")]
    FamilyMismatch {
        /// The primary address.
        address: IpAddr,
        /// Its family.
        source_family: AddressFamily,
        /// The family of the virtual addresses.
        addresses_family: AddressFamily,
    },
    /// VRRPv2 is IPv4 only (RFC 3768).
    #[error("VRRPv2 is IPv4 only; use version 3 for IPv6")]
    V2OverIpv6,
    /// More virtual addresses than an advert can list.
    #[error("{count} virtual addresses do not fit an advert (at most 255)")]
    TooManyAddresses {
        /// The number of addresses.
        count: usize,
    },
    /// VRRPv3 has no authentication (RFC 5798 §9).
    #[error("VRRPv3 has no authentication; authentication needs version 2")]
    AuthenticationWithV3,
}

/// The state of an instance, with keepalived's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Created, not started yet (RFC 5798 §6.4.1 Initialize).
    Init,
    /// Watching the master (RFC 5798 §6.4.2).
    Backup,
    /// Forwarding for the virtual addresses (RFC 5798 §6.4.3).
    Master,
    /// A tracked interface, script or file is down; adverts are neither sent nor heeded.
    Fault,
    /// Shut down (RFC 5798 Initialize after a Shutdown event; keepalived's STOP).
    Stop,
}

impl State {
    /// The name keepalived passes to notify scripts as `$3`.
    pub fn keepalived_name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
            State::Stop => "STOP",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keepalived_name())
    }
}

/// keepalived's `state` keyword. For a non-owner it only turns preemption on: the instance still
/// starts in BACKUP, as keepalived 2.2.7 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[doc(alias = "state")]
pub enum InitialState {
    /// `state BACKUP` (or no `state`).
    #[default]
    Backup,
    /// `state MASTER`.
    Master,
}

/// Whether a backup takes over from a lower-priority master (RFC 5798 §6.1 Preempt_Mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Preempt {
    /// `nopreempt`: a lower-priority master is left alone.
    #[doc(alias = "nopreempt")]
    Off,
    /// Take over from a lower-priority master after Master_Down_Interval (the default).
    #[default]
    On,
    /// `preempt_delay`: keep accepting a lower-priority master for this long after first
    /// hearing it, then take over.
    #[doc(alias = "preempt_delay")]
    Delayed(Duration),
}

/// VRRPv2 authentication (keepalived's `authentication { auth_type auth_pass }`).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
#[doc(alias = "authentication")]
pub enum Authentication {
    /// No authentication (the only choice for v3).
    #[default]
    None,
    /// `auth_type PASS`: the password in clear, zero-padded to 8 bytes.
    #[doc(alias = "PASS")]
    Password([u8; AUTH_DATA_LEN]),
    /// `auth_type AH`: IPsec AH with HMAC-MD5-96 keyed with the password (handled by the
    /// socket layer; adverts carry auth type 2 and zero authentication data).
    #[doc(alias = "AH")]
    Ah([u8; AUTH_DATA_LEN]),
}

impl Authentication {
    /// The 8 bytes keepalived makes of `auth_pass`: the first 8 bytes, zero-padded.
    pub fn auth_data(password: &[u8]) -> [u8; AUTH_DATA_LEN] {
        let mut data = [0; AUTH_DATA_LEN];
        data.iter_mut().zip(password).for_each(|(slot, byte)| *slot = *byte);
        data
    }

    fn auth_type(&self) -> AuthType {
        match self {
            Authentication::None => AuthType::None,
            Authentication::Password(_) => AuthType::SimpleText,
            Authentication::Ah(_) => AuthType::IpAh,
        }
    }
}

impl fmt::Debug for Authentication {
    /// Keeps passwords out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Authentication::None => "None",
            Authentication::Password(_) => "Password(..)",
            Authentication::Ah(_) => "Ah(..)",
        })
    }
}

/// What a [`State`] machine needs to know about its virtual router. A later step maps
/// keepalived's `vrrp_instance` configuration onto this.
#[derive(Debug, Clone, PartialEq, Eq)]
#[doc(alias = "vrrp_instance")]
pub struct InstanceParams {
    /// `virtual_router_id`.
    pub vrid: Vrid,
    /// `version` (keepalived's default is 2; `vrrp_version` globally).
    pub version: Version,
    /// `priority`: 1..=254, or 255 for the address owner.
    pub priority: u8,
    /// `advert_int`: whole seconds 1..=255 for v2, a multiple of 10 ms up to 40.95 s for v3.
    pub advert_interval: Duration,
    /// The address adverts come from: the interface's primary address or `unicast_src_ip`
    /// (for IPv6, the link-local address). Used for the tie-break of RFC 5798 §6.4.3.
    pub source_address: IpAddr,
    /// `virtual_ipaddress`, as listed in adverts (and checked in received ones).
    pub addresses: AddressList,
    /// `authentication` (v2 only).
    pub authentication: Authentication,
    /// `state`.
    pub initial_state: InitialState,
    /// `nopreempt` / `preempt_delay`.
    pub preempt: Preempt,
    /// `vrrp_lower_prio_no_advert`: as master, do not answer a lower-priority advert.
    pub lower_prio_no_advert: bool,
    /// `vrrp_higher_prio_send_advert`: as master, send an advert before yielding to a higher one.
    pub higher_prio_send_advert: bool,
    /// `vrrp_skip_check_adv_addr`: as backup, check the address list only of adverts from a new
    /// master.
    pub skip_check_adv_addr: bool,
    /// `vrrp_garp_master_repeat`: gratuitous ARPs / NAs per address on becoming master.
    pub garp_master_repeat: u32,
    /// `vrrp_garp_master_delay`: when to send a second burst after becoming master.
    pub garp_master_delay: Option<Duration>,
    /// `vrrp_garp_master_refresh`: resend gratuitous ARPs / NAs this often while master.
    pub garp_master_refresh: Option<Duration>,
    /// `vrrp_garp_master_refresh_repeat`: how many per refresh.
    pub garp_master_refresh_repeat: u32,
    /// `vrrp_garp_lower_prio_repeat`: gratuitous ARPs / NAs a master sends on hearing a
    /// lower-priority advert (0: none).
    pub garp_lower_prio_repeat: u32,
    /// `vrrp_garp_lower_prio_delay`: when to send a second such burst (`None`: no second burst).
    pub garp_lower_prio_delay: Option<Duration>,
    /// `down_timer_adverts` / `vrrp_down_timer_adverts` (1..=100): the advert intervals
    /// Master_Down_Interval counts before the skew (RFC 5798's 3 by default).
    pub down_timer_adverts: u32,
}

impl InstanceParams {
    /// Parameters with keepalived's defaults for everything else: no authentication,
    /// `state BACKUP`, preemption on, 5 gratuitous ARPs at takeover and 5 more 5 s later.
    pub fn new(
        vrid: Vrid,
        version: Version,
        priority: u8,
        advert_interval: Duration,
        source_address: IpAddr,
        addresses: AddressList,
    ) -> Self {
        InstanceParams {
            vrid,
            version,
            priority,
            advert_interval,
            source_address,
            addresses,
            authentication: Authentication::None,
            initial_state: InitialState::Backup,
            preempt: Preempt::On,
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            skip_check_adv_addr: false,
            garp_master_repeat: 5,
            garp_master_delay: Some(Duration::from_secs(5)),
            garp_master_refresh: None,
            garp_master_refresh_repeat: 1,
            garp_lower_prio_repeat: 0,
            garp_lower_prio_delay: None,
            down_timer_adverts: DOWN_TIMER_ADVERTS,
        }
    }
}

/// Something that happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// Start (RFC 5798 §6.4.1 Startup). Accepted in [`State::Init`] and [`State::Stop`].
    Startup,
    /// Stop (RFC 5798 Shutdown): a master sends priority 0 and releases its addresses.
    Shutdown,
    /// [`Instance::next_deadline`] has been reached.
    Timer,
    /// A decoded advert for this instance's VRID arrived from `from` (the IP source), having
    /// passed the socket layer's checks (TTL / hop limit, unicast peers).
    AdvertReceived {
        /// IP source address of the advert.
        from: IpAddr,
        /// The advert.
        advert: &'a VrrpAdvert,
    },
    /// Whether any tracked object (interface, script, file) that faults the instance is down.
    Fault(bool),
    /// The sum of the weights of the tracked objects, added to the base priority.
    PriorityAdjustment(i32),
    /// Sync groups (keepalived's `vrrp_sync.c`): the Master_Down_Timer is due
    /// ([`Instance::master_down_due`]) but another member of the group does not want MASTER yet.
    /// Stay in BACKUP, wanting MASTER ([`Instance::wants_master`]), for another
    /// Master_Down_Interval: a group moves to MASTER only when all its members would, which
    /// keeps it from thrashing.
    SyncHold,
    /// Sync groups: another member became MASTER; a member in BACKUP follows it at once.
    SyncMaster,
    /// Sync groups: another member left MASTER for BACKUP; a member in MASTER follows it (VIPs
    /// removed, no advert sent), as keepalived's `vrrp_sync_backup`.
    SyncBackup,
    /// One of a MASTER's VIPs was deleted by someone else (`ip addr del`). keepalived 2.2.7
    /// (measured) then sends priority 0, enters BACKUP removing its other VIPs, and its
    /// Master_Down_Timer is Skew_Time, as for a priority-0 advert: alone, or above the other
    /// routers, it is MASTER again a Skew_Time later, its VIPs all back.
    VipRemoved,
}

/// Something the socket / address layer must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority: [`Instance::advert`] builds it.
    SendAdvert {
        /// The priority to advertise (0 when stopping).
        priority: u8,
    },
    /// Install the virtual addresses (and routes).
    AddVips,
    /// Remove the virtual addresses (and routes); idempotent (also sent at startup, like
    /// keepalived, to clear addresses left by a killed daemon).
    RemoveVips,
    /// Send gratuitous ARPs (IPv4) / unsolicited NAs (IPv6), `repeat` per address.
    SendGratuitous {
        /// How many per address.
        repeat: u32,
    },
    /// Run the notify scripts for the new state.
    Notify(State),
    /// A received advert was discarded; worth a log line, nothing to do.
    Discarded(DiscardReason),
}

/// Why a received advert was discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscardReason {
    /// The instance is not in BACKUP or MASTER.
    NotListening {
        /// The state it is in.
        state: State,
    },
    /// Advert for another virtual router.
    VridMismatch {
        /// VRID received.
        received: Vrid,
    },
    /// Advert of another VRRP version (RFC 5798 §7.1).
    VersionMismatch {
        /// Version received.
        received: Version,
    },
    /// Advert of another address family.
    FamilyMismatch,
    /// v2 auth type differs from ours (RFC 3768 §7.1).
    AuthTypeMismatch {
        /// Auth type received.
        received: AuthType,
    },
    /// v2 password differs from ours.
    AuthFailure,
    /// v2 advert interval differs from ours (RFC 3768 §7.1).
    IntervalMismatch {
        /// Interval received.
        received: Duration,
    },
    /// The address list differs from ours (RFC 5798 §7.1; keepalived drops whatever the
    /// sender's priority).
    AddressListMismatch,
    /// Lower priority (or equal with a lower address) than ours: a preempting backup lets its
    /// master down timer run on; a master discards it (RFC 5798 §6.4.2, §6.4.3).
    LowerPriority {
        /// Priority received.
        priority: u8,
    },
    /// Equal priority from our own address.
    OwnAddress,
}

impl fmt::Display for DiscardReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscardReason::NotListening { state } => write!(f, "instance is in {state} state"),
            DiscardReason::VridMismatch { received } => write!(f, "advert for VRID {received}"),
            DiscardReason::VersionMismatch { received } => write!(f, "{received} advert"),
            DiscardReason::FamilyMismatch => f.write_str("advert of the other address family"),
            DiscardReason::AuthTypeMismatch { received } => {
                write!(f, "auth type {} differs from ours", received.number())
            }
            DiscardReason::AuthFailure => f.write_str("invalid password"),
            DiscardReason::IntervalMismatch { received } => {
                write!(f, "advert interval {received:?} differs from ours")
            }
            DiscardReason::AddressListMismatch => f.write_str("address list differs from ours"),
            DiscardReason::LowerPriority { priority } => write!(f, "lower priority {priority}"),
            DiscardReason::OwnAddress => f.write_str("equal priority advert from our own address"),
        }
    }
}

/// The router an instance believes to be master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MasterInfo {
    /// Its address (the IP source of its adverts).
    pub address: IpAddr,
    /// The priority it advertised.
    pub priority: u8,
}

/// One VRRP instance (virtual router) of this host: a sans-IO state machine.
#[derive(Debug, Clone)]
#[doc(alias = "vrrp_t")]
pub struct Instance {
    params: InstanceParams,
    /// The version fields of our adverts, fixed at creation.
    advert_fields: VersionFields,
    /// Base priority; 255 drops to 254 on an owner conflict, as in keepalived.
    base_priority: u8,
    adjustment: i32,
    effective_priority: u8,
    fault: bool,
    state: State,
    master_adver_interval: Duration,
    /// Adver_Timer in MASTER, Master_Down_Timer in BACKUP (keepalived's `sands`).
    timer: Option<Instant>,
    /// Second gratuitous burst after becoming master.
    garp_delay_timer: Option<Instant>,
    /// Next gratuitous refresh while master.
    garp_refresh_at: Option<Instant>,
    /// Second gratuitous burst after hearing a lower-priority advert as master.
    garp_lower_prio_timer: Option<Instant>,
    /// When a running preempt_delay ends.
    preempt_time: Option<Instant>,
    master: Option<MasterInfo>,
    /// Sync groups: the Master_Down_Timer fired while the group was not ready ([`Event::SyncHold`]).
    wants_master: bool,
    /// The running Master_Down_Timer was already extended because it was handled late.
    late_grace: bool,
    /// `vrrp_startup_delay`: until then a BACKUP's Master_Down_Timer runs from this instant,
    /// not from now (keepalived's `vrrp_delayed_start_time`).
    startup_hold: Option<Instant>,
}

impl Instance {
    /// An instance in [`State::Init`]; send it [`Event::Startup`] to start. Creation and start are
    /// separate so that the initial tracking state ([`Event::Fault`],
    /// [`Event::PriorityAdjustment`]) can be given first, as keepalived evaluates its tracked
    /// objects before the instances start.
    ///
    /// Like keepalived, preemption is forced on (no nopreempt, no preempt_delay) for the owner
    /// and for `state MASTER`; [`Instance::params`] shows the result.
    pub fn new(params: InstanceParams) -> Result<Self, VrrpStateError> {
        let mut params = params;
        if params.priority == PRIORITY_STOP {
            return Err(VrrpStateError::ZeroPriority);
        }
        let family = AddressFamily::of(params.source_address);
        if params.addresses.family() != family {
            return Err(VrrpStateError::FamilyMismatch {
                address: params.source_address,
                source_family: family,
                addresses_family: params.addresses.family(),
            });
        }
        if params.version == Version::V2 && family == AddressFamily::Ipv6 {
            return Err(VrrpStateError::V2OverIpv6);
        }
        if u8::try_from(params.addresses.len()).is_err() {
            return Err(VrrpStateError::TooManyAddresses { count: params.addresses.len() });
        }
        let interval = params.advert_interval;
        let advert_fields = match params.version {
            Version::V2 => {
                let seconds = (interval.subsec_nanos() == 0)
                    .then(|| u8::try_from(interval.as_secs()).ok().and_then(NonZeroU8::new))
                    .flatten();
                let adver_int = seconds.ok_or(VrrpStateError::InvalidAdvertInterval {
                    version: Version::V2,
                    interval,
                    expected: "whole seconds from 1 to 255",
                })?;
                let auth_data = match &params.authentication {
                    Authentication::Password(data) => *data,
                    Authentication::None | Authentication::Ah(_) => [0; AUTH_DATA_LEN],
                };
                VersionFields::V2 { auth_type: params.authentication.auth_type(), adver_int, auth_data }
            }
            Version::V3 => {
                if params.authentication != Authentication::None {
                    return Err(VrrpStateError::AuthenticationWithV3);
                }
                let centiseconds = interval
                    .as_nanos()
                    .is_multiple_of(10_000_000)
                    .then(|| {
                        u16::try_from(interval.as_millis() / 10).ok().and_then(MaxAdverInt::from_centiseconds)
                    })
                    .flatten();
                let max_adver_int = centiseconds.ok_or(VrrpStateError::InvalidAdvertInterval {
                    version: Version::V3,
                    interval,
                    expected: "a multiple of 10 ms from 10 ms to 40.95 s",
                })?;
                VersionFields::V3 { max_adver_int }
            }
        };
        if params.priority == PRIORITY_OWNER || params.initial_state == InitialState::Master {
            params.preempt = Preempt::On;
        }
        Ok(Instance {
            advert_fields,
            base_priority: params.priority,
            adjustment: 0,
            effective_priority: params.priority,
            fault: false,
            state: State::Init,
            master_adver_interval: params.advert_interval,
            timer: None,
            garp_delay_timer: None,
            garp_refresh_at: None,
            garp_lower_prio_timer: None,
            preempt_time: None,
            master: None,
            wants_master: false,
            late_grace: false,
            startup_hold: None,
            params,
        })
    }

    /// The parameters in force (after keepalived's adjustments).
    pub fn params(&self) -> &InstanceParams {
        &self.params
    }

    /// The address adverts go from changed (no configured source: the interface's address
    /// went and another took its place). Ignored if of the other family.
    pub fn set_source_address(&mut self, source: IpAddr) {
        if source.is_ipv4() == self.params.source_address.is_ipv4() {
            self.params.source_address = source;
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Base priority plus tracking weights, within 1..=254 unless the base is 255.
    pub fn effective_priority(&self) -> u8 {
        self.effective_priority
    }

    /// Master_Adver_Interval: the configured interval, or in a v3 backup the master's.
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Skew_Time for the current priority and Master_Adver_Interval.
    pub fn skew_time(&self) -> Duration {
        skew_time(self.params.version, self.effective_priority, self.master_adver_interval)
    }

    /// Master_Down_Interval for the current priority, Master_Adver_Interval and
    /// `down_timer_adverts`.
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(
            self.params.version,
            self.effective_priority,
            self.master_adver_interval,
            self.params.down_timer_adverts,
        )
    }

    /// The router this instance last accepted (or, as a preempting backup, heard) as master;
    /// `None` when it is master itself or has not heard one.
    pub fn master(&self) -> Option<MasterInfo> {
        self.master
    }

    /// Whether the Master_Down_Timer of a BACKUP instance has run out at `now`: [`Event::Timer`]
    /// would make it MASTER. A sync group asks this before letting a member take over.
    pub fn master_down_due(&self, now: Instant) -> bool {
        self.state == State::Backup && self.timer.is_some_and(|at| at <= now)
    }

    /// Sync groups: whether this BACKUP instance was held back ([`Event::SyncHold`]) and would be
    /// MASTER if the rest of its group agreed.
    pub fn wants_master(&self) -> bool {
        self.state == State::Backup && self.wants_master
    }

    /// `vrrp_startup_delay`: until `until`, the instance cannot become MASTER. As keepalived
    /// does, it runs as a BACKUP (hearing adverts) whose Master_Down_Timer counts from `until`
    /// rather than from now, the address owner included. Give it before [`Event::Startup`].
    pub fn hold_startup_until(&mut self, until: Instant) {
        self.startup_hold = Some(until);
    }

    /// The Master_Down_Timer (or Skew_Time) `interval` set at `now`: from the end of the startup
    /// hold while it lasts.
    fn down_timer(&self, now: Instant, interval: Duration) -> Instant {
        later(self.startup_hold.filter(|&until| until > now).unwrap_or(now), interval)
    }

    /// When [`Event::Timer`] is next due; `None` in INIT, FAULT and STOP.
    pub fn next_deadline(&self) -> Option<Instant> {
        let garps = if self.state == State::Master {
            [self.garp_delay_timer, self.garp_lower_prio_timer]
        } else {
            [None, None]
        };
        [self.timer].into_iter().chain(garps).flatten().min()
    }

    /// When a MASTER's next advert is due (its Adver_Timer); `None` in the other states.
    pub fn next_advert(&self) -> Option<Instant> {
        self.timer.filter(|_| self.state == State::Master)
    }

    /// The advert to send for [`Action::SendAdvert`] with `priority`.
    pub fn advert(&self, priority: u8) -> VrrpAdvert {
        VrrpAdvert {
            vrid: self.params.vrid,
            priority,
            fields: self.advert_fields.clone(),
            addresses: self.params.addresses.clone(),
        }
    }

    /// Processes `event`, which happened at `now`, and returns what to do, in order. An advert
    /// happened when it reached the host (the engine passes the socket's receive timestamp), so
    /// a backup's Master_Down_Timer and Skew_Time run from then, however late it is handled.
    #[must_use = "the actions must be carried out, in order"]
    pub fn handle(&mut self, event: Event<'_>, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Startup => self.startup(now, &mut actions),
            Event::Shutdown => self.shutdown(&mut actions),
            Event::Timer => self.timers(now, &mut actions),
            Event::AdvertReceived { from, advert } => self.receive(from, advert, now, &mut actions),
            Event::Fault(down) => self.set_fault(down, now, &mut actions),
            Event::PriorityAdjustment(adjustment) => {
                self.adjustment = adjustment;
                self.update_effective_priority();
            }
            Event::SyncHold => {
                if self.state == State::Backup {
                    self.wants_master = true;
                    self.timer = Some(self.down_timer(now, self.master_down_interval()));
                }
            }
            Event::SyncMaster => {
                if self.state == State::Backup {
                    self.become_master(now, &mut actions);
                }
            }
            Event::SyncBackup => {
                if self.state == State::Master {
                    self.become_backup(now, &mut actions);
                }
            }
            Event::VipRemoved => {
                if self.state == State::Master {
                    actions.push(Action::SendAdvert { priority: PRIORITY_STOP });
                    self.become_backup(now, &mut actions);
                    self.timer = Some(self.down_timer(now, self.skew_time()));
                }
            }
        }
        actions
    }

    /// RFC 5798 §6.4.1.
    fn startup(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if !matches!(self.state, State::Init | State::Stop) {
            return;
        }
        if self.fault {
            // keepalived removes leftover VIPs whatever the state it starts in.
            actions.push(Action::RemoveVips);
            self.enter_fault(actions);
        } else {
            self.come_up(now, true, actions);
        }
    }

    /// From INIT, STOP or FAULT to MASTER (owner) or BACKUP.
    fn come_up(&mut self, now: Instant, startup: bool, actions: &mut Vec<Action>) {
        self.master_adver_interval = self.params.advert_interval;
        self.master = None;
        self.preempt_time = None;
        if self.base_priority == PRIORITY_OWNER {
            if let Some(until) = self.startup_hold.filter(|&until| until > now) {
                // keepalived: the owner is a BACKUP whose timer runs out as the hold ends.
                if startup {
                    actions.push(Action::RemoveVips);
                }
                self.state = State::Backup;
                self.timer = Some(until);
                return;
            }
            self.become_master(now, actions);
            return;
        }
        if startup {
            actions.push(Action::RemoveVips);
        }
        self.state = State::Backup;
        self.wants_master = false;
        self.late_grace = false;
        self.timer = Some(self.down_timer(now, self.master_down_interval()));
        actions.push(Action::Notify(State::Backup));
    }

    /// RFC 5798 §6.4.2 "If the Master_Down_Timer fires": the VIPs first (what the hosts wait
    /// for), then the advert, so that an old master still alive drops the addresses before our
    /// gratuitous ARPs reach the hosts.
    fn become_master(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.state = State::Master;
        self.wants_master = false;
        self.master = None;
        self.preempt_time = None;
        self.master_adver_interval = self.params.advert_interval;
        actions.push(Action::AddVips);
        actions.push(Action::SendAdvert { priority: self.effective_priority });
        if self.params.garp_master_repeat > 0 {
            actions.push(Action::SendGratuitous { repeat: self.params.garp_master_repeat });
        }
        actions.push(Action::Notify(State::Master));
        self.timer = Some(later(now, self.params.advert_interval));
        self.garp_delay_timer = self.params.garp_master_delay.map(|delay| later(now, delay));
        self.garp_refresh_at = self.params.garp_master_refresh.map(|refresh| later(now, refresh));
    }

    /// Takes over from an earlier run of this instance that was MASTER (a reload that left the
    /// instance's configuration unchanged): from INIT straight to MASTER, advertising at once,
    /// with the addresses it already holds refreshed and nothing notified again. A faulted
    /// instance starts as [`Event::Startup`] would.
    pub fn resume_master(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state != State::Init || self.fault {
            self.startup(now, &mut actions);
            return actions;
        }
        self.become_master(now, &mut actions);
        actions.retain(|a| !matches!(a, Action::Notify(_) | Action::SendGratuitous { .. }));
        self.garp_delay_timer = None;
        actions
    }

    /// RFC 5798 §6.4.3 on a higher-priority advert.
    fn become_backup(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.state = State::Backup;
        self.wants_master = false;
        self.preempt_time = None;
        self.garp_delay_timer = None;
        self.garp_refresh_at = None;
        self.garp_lower_prio_timer = None;
        actions.push(Action::RemoveVips);
        actions.push(Action::Notify(State::Backup));
        self.late_grace = false;
        self.timer = Some(self.down_timer(now, self.master_down_interval()));
    }

    fn enter_fault(&mut self, actions: &mut Vec<Action>) {
        self.state = State::Fault;
        self.clear_timers();
        self.master = None;
        actions.push(Action::Notify(State::Fault));
    }

    fn clear_timers(&mut self) {
        self.wants_master = false;
        self.timer = None;
        self.garp_delay_timer = None;
        self.garp_refresh_at = None;
        self.garp_lower_prio_timer = None;
        self.preempt_time = None;
    }

    /// RFC 5798 §6.4.2 / §6.4.3 Shutdown.
    fn shutdown(&mut self, actions: &mut Vec<Action>) {
        match self.state {
            State::Init | State::Stop => return,
            State::Master => {
                actions.push(Action::SendAdvert { priority: PRIORITY_STOP });
                actions.push(Action::RemoveVips);
            }
            State::Backup | State::Fault => {}
        }
        self.state = State::Stop;
        self.clear_timers();
        self.master = None;
        actions.push(Action::Notify(State::Stop));
    }

    fn timers(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.state == State::Master && self.garp_delay_timer.is_some_and(|at| at <= now) {
            self.garp_delay_timer = None;
            if self.params.garp_master_repeat > 0 {
                actions.push(Action::SendGratuitous { repeat: self.params.garp_master_repeat });
            }
        }
        if self.state == State::Master && self.garp_lower_prio_timer.is_some_and(|at| at <= now) {
            self.garp_lower_prio_timer = None;
            actions.push(Action::SendGratuitous { repeat: self.params.garp_lower_prio_repeat });
        }
        if self.timer.is_none_or(|at| at > now) {
            return;
        }
        match self.state {
            State::Backup => {
                let late = self.timer.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
                if !self.late_grace && late >= (self.master_adver_interval / LATE_GRACE).min(STALL) {
                    self.late_grace = true;
                    self.timer = Some(later(now, self.master_adver_interval.min(STALL_WAIT)));
                    return;
                }
                self.become_master(now, actions)
            }
            State::Master => {
                // RFC 5798 §6.4.3 "If the Adver_Timer fires". The next one is due an interval
                // after this one was, not after it was handled, so that late wake-ups do not
                // stretch the interval the backups see.
                let due = self.timer.unwrap_or(now);
                actions.push(Action::SendAdvert { priority: self.effective_priority });
                if let (Some(refresh), Some(at)) = (self.params.garp_master_refresh, self.garp_refresh_at)
                    && at <= now
                {
                    if self.params.garp_master_refresh_repeat > 0 {
                        actions
                            .push(Action::SendGratuitous { repeat: self.params.garp_master_refresh_repeat });
                    }
                    self.garp_refresh_at = Some(later(now, refresh));
                }
                let next = later(due, self.params.advert_interval);
                self.timer = Some(if next > now { next } else { later(now, self.params.advert_interval) });
            }
            State::Init | State::Fault | State::Stop => self.timer = None,
        }
    }

    fn set_fault(&mut self, down: bool, now: Instant, actions: &mut Vec<Action>) {
        if down == self.fault {
            return;
        }
        self.fault = down;
        match (down, self.state) {
            (true, State::Master) => {
                // keepalived: "Entering FAULT STATE", priority 0 advert, VIPs removed. The
                // advert is lost when the link itself is down.
                actions.push(Action::SendAdvert { priority: PRIORITY_STOP });
                actions.push(Action::RemoveVips);
                self.enter_fault(actions);
            }
            (true, State::Backup) => self.enter_fault(actions),
            (false, State::Fault) => self.come_up(now, false, actions),
            // INIT and STOP remember the fault for Startup; nothing else changes.
            _ => {}
        }
    }

    fn update_effective_priority(&mut self) {
        let priority = if self.base_priority == PRIORITY_OWNER {
            PRIORITY_OWNER
        } else {
            let total = i64::from(self.base_priority) + i64::from(self.adjustment);
            // Clamped to 1..=254, so the conversion cannot fail.
            u8::try_from(total.clamp(1, i64::from(PRIORITY_OWNER - 1))).unwrap_or(1)
        };
        if priority == self.effective_priority {
            return;
        }
        let old_skew = self.skew_time();
        self.effective_priority = priority;
        let new_skew = self.skew_time();
        // A running Master_Down_Timer moves with the skew, as in keepalived's
        // vrrp_set_effective_priority.
        if self.state == State::Backup
            && let Some(at) = self.timer
        {
            self.timer = Some(match new_skew.cmp(&old_skew) {
                Ordering::Greater => later(at, new_skew - old_skew),
                Ordering::Less => at.checked_sub(old_skew - new_skew).unwrap_or(at),
                Ordering::Equal => at,
            });
        }
    }

    fn receive(&mut self, from: IpAddr, advert: &VrrpAdvert, now: Instant, actions: &mut Vec<Action>) {
        let check_addresses = match self.state {
            State::Master => true,
            State::Backup => {
                !self.params.skip_check_adv_addr || self.master.is_none_or(|master| master.address != from)
            }
            state => {
                actions.push(Action::Discarded(DiscardReason::NotListening { state }));
                return;
            }
        };
        if let Err(reason) = self.check(from, advert, check_addresses) {
            actions.push(Action::Discarded(reason));
            return;
        }
        if self.state == State::Backup {
            self.backup_receive(from, advert, now, actions);
        } else {
            self.master_receive(from, advert, now, actions);
        }
    }

    /// The checks of RFC 5798 §7.1 / RFC 3768 §7.1 that need the configuration, in keepalived's
    /// order; the codec has checked version, type, length and checksum.
    fn check(&self, from: IpAddr, advert: &VrrpAdvert, check_addresses: bool) -> Result<(), DiscardReason> {
        if advert.vrid != self.params.vrid {
            return Err(DiscardReason::VridMismatch { received: advert.vrid });
        }
        if advert.version() != self.params.version {
            return Err(DiscardReason::VersionMismatch { received: advert.version() });
        }
        let family = self.params.addresses.family();
        if advert.addresses.family() != family || AddressFamily::of(from) != family {
            return Err(DiscardReason::FamilyMismatch);
        }
        if let (VersionFields::V2 { auth_type, auth_data, .. }, VersionFields::V2 { adver_int, .. }) =
            (&advert.fields, &self.advert_fields)
        {
            if *auth_type != self.params.authentication.auth_type() {
                return Err(DiscardReason::AuthTypeMismatch { received: *auth_type });
            }
            if let Authentication::Password(password) = &self.params.authentication
                && !constant_time_eq(password, auth_data)
            {
                return Err(DiscardReason::AuthFailure);
            }
            // "to prevent concurrent VRID running => multiple master in 1 VRID" (keepalived).
            let received = advert.adver_interval();
            if received != Duration::from_secs(u64::from(adver_int.get())) {
                return Err(DiscardReason::IntervalMismatch { received });
            }
        }
        // keepalived checks the count of every advert; vrrp_skip_check_adv_addr skips only the
        // comparison of the addresses themselves.
        if advert.addresses.len() != self.params.addresses.len()
            || (check_addresses && !self.params.addresses.iter().all(|a| advert.addresses.contains(a)))
        {
            return Err(DiscardReason::AddressListMismatch);
        }
        Ok(())
    }

    /// RFC 5798 §6.4.2 "If an ADVERTISEMENT is received", with keepalived's preempt_delay.
    fn backup_receive(&mut self, from: IpAddr, advert: &VrrpAdvert, now: Instant, actions: &mut Vec<Action>) {
        let priority = advert.priority;
        if priority == PRIORITY_STOP {
            // The master said it is leaving: no advert of its is coming, so a Skew_Time handled
            // late is no reason to wait for one (the stall grace would add STALL_WAIT to the
            // orderly failover keepalived does in Skew_Time).
            self.timer = Some(self.down_timer(now, self.skew_time()));
            self.late_grace = true;
            return;
        }
        let accept = match self.params.preempt {
            Preempt::Off => true,
            Preempt::On => priority >= self.effective_priority,
            Preempt::Delayed(_) => {
                priority >= self.effective_priority || self.preempt_time.is_none_or(|until| until > now)
            }
        };
        self.master = Some(MasterInfo { address: from, priority });
        if !accept {
            actions.push(Action::Discarded(DiscardReason::LowerPriority { priority }));
            return;
        }
        if self.params.version == Version::V3 {
            self.master_adver_interval = advert.adver_interval();
        }
        self.timer = Some(self.down_timer(now, self.master_down_interval()));
        self.late_grace = false;
        // A master is heard again: a sync group member held back no longer wants to take over.
        self.wants_master = false;
        if let Preempt::Delayed(delay) = self.params.preempt {
            if priority >= self.effective_priority {
                self.preempt_time = None;
            } else if self.preempt_time.is_none() {
                self.preempt_time = Some(later(now, delay));
            }
        }
    }

    /// RFC 5798 §6.4.3 "If an ADVERTISEMENT is received", with keepalived's extensions.
    fn master_receive(&mut self, from: IpAddr, advert: &VrrpAdvert, now: Instant, actions: &mut Vec<Action>) {
        let priority = advert.priority;
        let address_order = compare_addresses(from, self.params.source_address).unwrap_or(Ordering::Equal);
        if priority == PRIORITY_STOP {
            actions.push(Action::SendAdvert { priority: self.effective_priority });
            self.timer = Some(later(now, self.params.advert_interval));
            return;
        }
        if priority == self.effective_priority && address_order == Ordering::Equal {
            actions.push(Action::Discarded(DiscardReason::OwnAddress));
            return;
        }
        let higher = |ours: u8| priority > ours || (priority == ours && address_order == Ordering::Greater);
        if self.params.higher_prio_send_advert && higher(self.effective_priority) {
            actions.push(Action::SendAdvert { priority: self.effective_priority });
        }
        if priority == PRIORITY_OWNER && self.effective_priority == PRIORITY_OWNER {
            // Two owners is a configuration error; keepalived steps down to 254 to resolve it.
            self.base_priority = PRIORITY_OWNER - 1;
            self.update_effective_priority();
        }
        if higher(self.effective_priority) {
            if self.params.version == Version::V3 {
                self.master_adver_interval = advert.adver_interval();
            }
            self.master = Some(MasterInfo { address: from, priority });
            self.become_backup(now, actions);
            return;
        }
        actions.push(Action::Discarded(DiscardReason::LowerPriority { priority }));
        if !self.params.lower_prio_no_advert {
            actions.push(Action::SendAdvert { priority: self.effective_priority });
            self.timer = Some(later(now, self.params.advert_interval));
        }
        if self.params.garp_lower_prio_repeat > 0 {
            // keepalived's vrrp_state_master_rx: a burst now and another after
            // garp_lower_prio_delay (one pending at a time here).
            actions.push(Action::SendGratuitous { repeat: self.params.garp_lower_prio_repeat });
            if self.garp_lower_prio_timer.is_none() {
                self.garp_lower_prio_timer = self.params.garp_lower_prio_delay.map(|delay| later(now, delay));
            }
        }
    }
}

/// Skew_Time for `priority` and `master_adver_interval`, in keepalived's microsecond integer
/// arithmetic: `((256 − priority) × centiseconds × 625) / 16` µs for v3 (RFC 5798 §6.1, the
/// interval truncated to centiseconds), `(256 − priority) × 10⁶ / 256` µs for v2 whatever the
/// interval (RFC 3768 §6.1).
pub fn skew_time(version: Version, priority: u8, master_adver_interval: Duration) -> Duration {
    let weight = 256 - u64::from(priority);
    let micros = match version {
        Version::V3 => {
            let centiseconds =
                u64::try_from(master_adver_interval.as_micros() / u128::from(MICROS_PER_CENTISECOND))
                    .unwrap_or(u64::MAX);
            weight.saturating_mul(centiseconds).saturating_mul(625) / 16
        }
        Version::V2 => weight * 1_000_000 / 256,
    };
    Duration::from_micros(micros)
}

/// Master_Down_Interval: `N × Master_Adver_Interval + Skew_Time`, N being `down_timer_adverts`
/// ([`DOWN_TIMER_ADVERTS`] = 3 by default, as RFC 5798 §6.1 has it).
pub fn master_down_interval(
    version: Version,
    priority: u8,
    master_adver_interval: Duration,
    down_timer_adverts: u32,
) -> Duration {
    master_adver_interval.saturating_mul(down_timer_adverts).saturating_add(skew_time(
        version,
        priority,
        master_adver_interval,
    ))
}

/// `now + delay`, saturating far in the future instead of panicking on overflow (delays come
/// from configuration).
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay).or_else(|| now.checked_add(FAR_FUTURE)).unwrap_or(now)
}

/// Compares passwords without leaking where they differ through timing.
fn constant_time_eq(a: &[u8; AUTH_DATA_LEN], b: &[u8; AUTH_DATA_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |difference, (x, y)| difference | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
