//! An in-memory stand-in for the XDP program's maps, for unit tests (as aya's `sys/fake.rs`).
//!
//! [`FakeTables`] holds what the maps would hold, behaves as the kernel would on each update
//! (bounds, a full hash map), records every write in order, and can fail a chosen write.
//! After every write that could break them it checks the invariants the XDP program relies on
//! (every slot of a service names an existing real, a sorry real and an FNAT pool exist), so a
//! test proves that no intermediate state of an apply would misroute a packet.

use std::collections::{BTreeMap, HashMap};

use aya::{maps::MapError, sys::SyscallError};
use lb_common::lb::{
    LocalAddr, MAX_LADDRS_PER_GROUP, Real, RealStats, SLOTS_PER_SERVICE, Service, ServiceKey, ServiceStats,
    Settings,
};

use super::{
    DataplaneError,
    tables::{Limits, StaticRoutes, TableDataplane, TableIo, TableWrite, zero_settings},
};

/// The fake data plane: the table engine over [`FakeTables`].
pub type FakeDataplane = TableDataplane<FakeTables>;

/// A fake data plane over `tables`, with fixed tunnel sources.
pub fn dataplane(tables: FakeTables, routes: StaticRoutes) -> FakeDataplane {
    match TableDataplane::adopt(tables) {
        Ok(dataplane) => dataplane.with_tunnel_source(Box::new(routes)),
        // Reading the fake only fails when a test makes it.
        Err(e) => panic!("adopting fake tables: {e}"),
    }
}

/// What the maps would hold, and every write made to them.
#[derive(Clone, Debug)]
pub struct FakeTables {
    /// Id ranges.
    pub limits: Limits,
    /// `LBD_SERVICES`.
    pub services: HashMap<ServiceKey, Service>,
    /// `LBD_REALS` entries that are not all zero.
    pub reals: BTreeMap<u32, Real>,
    /// `LBD_SLOTS` entries that are not zero.
    pub slots: BTreeMap<u32, u32>,
    /// `LBD_LADDRS` entries that are not all zero.
    pub laddrs: BTreeMap<u32, LocalAddr>,
    /// `LBD_SETTINGS`.
    pub settings: Settings,
    /// `LBD_SERVICE_STATS`, summed over CPUs.
    pub service_stats: BTreeMap<u32, ServiceStats>,
    /// `LBD_REAL_STATS`, summed over CPUs.
    pub real_stats: BTreeMap<u32, RealStats>,
    /// `LBD_REAL_ACTIVE`; `None`: the map is absent (new minus closed counts instead).
    pub real_active: Option<BTreeMap<u32, u64>>,
    /// Every write, in order.
    pub writes: Vec<TableWrite>,
    /// Fail the write that would be the `n`th in [`FakeTables::writes`] (0-based), once.
    pub fail_at: Option<usize>,
    /// Invariants found broken after a write, with the write's position.
    pub violations: Vec<String>,
}

impl Default for FakeTables {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl FakeTables {
    /// Empty tables, as fresh maps: all zero.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            services: HashMap::new(),
            reals: BTreeMap::new(),
            slots: BTreeMap::new(),
            laddrs: BTreeMap::new(),
            settings: zero_settings(),
            service_stats: BTreeMap::new(),
            real_stats: BTreeMap::new(),
            real_active: Some(BTreeMap::new()),
            writes: Vec::new(),
            fail_at: None,
            violations: Vec::new(),
        }
    }

    /// The used part of a service's slot row.
    pub fn row(&self, service: &Service) -> Vec<u32> {
        (0..service.slots_len.min(SLOTS_PER_SERVICE))
            .map(|i| self.slots.get(&(service.id * SLOTS_PER_SERVICE + i)).copied().unwrap_or(0))
            .collect()
    }

    /// The invariants the XDP program relies on, as broken ones.
    pub fn check(&self) -> Vec<String> {
        let mut broken = Vec::new();
        for (key, service) in &self.services {
            if service.id == 0 || service.id >= self.limits.service_ids {
                broken.push(format!("{key:?}: service id {}", service.id));
                continue;
            }
            for (i, id) in self.row(service).into_iter().enumerate() {
                if !self.reals.contains_key(&id) {
                    broken.push(format!(
                        "service {}: slot {i} names real {id}, which is not there",
                        service.id
                    ));
                }
            }
            if service.sorry_real != 0 && !self.reals.contains_key(&service.sorry_real) {
                broken
                    .push(format!("service {}: sorry real {} is not there", service.id, service.sorry_real));
            }
            if service.laddr_group != 0 {
                let start = service.laddr_group * MAX_LADDRS_PER_GROUP;
                if !(start..start + MAX_LADDRS_PER_GROUP).any(|i| self.laddrs.contains_key(&i)) {
                    broken.push(format!("service {}: pool {} is empty", service.id, service.laddr_group));
                }
            }
        }
        broken
    }
}

fn map_error(map: &'static str, e: MapError) -> DataplaneError {
    DataplaneError::Map { map, source: Box::new(e) }
}

fn set<K: Ord, V: Default + PartialEq>(map: &mut BTreeMap<K, V>, key: K, value: V) {
    if value == V::default() {
        map.remove(&key);
    } else {
        map.insert(key, value);
    }
}

impl TableIo for FakeTables {
    fn limits(&self) -> Limits {
        self.limits
    }

    fn write(&mut self, write: &TableWrite) -> Result<(), DataplaneError> {
        let map = write.map();
        if self.fail_at == Some(self.writes.len()) {
            self.fail_at = None;
            let io_error = std::io::Error::from_raw_os_error(libc::EIO);
            return Err(map_error(
                map,
                MapError::SyscallError(SyscallError { call: "bpf_map_update_elem", io_error }),
            ));
        }
        let bounds = |index: u32, max_entries: u32| {
            if index < max_entries {
                Ok(())
            } else {
                Err(map_error(map, MapError::OutOfBounds { index, max_entries }))
            }
        };
        let limits = self.limits;
        let mut check = true;
        match *write {
            TableWrite::Service { key, service } => {
                if !self.services.contains_key(&key) && self.services.len() >= limits.services as usize {
                    let io_error = std::io::Error::from_raw_os_error(libc::E2BIG);
                    let e = SyscallError { call: "bpf_map_update_elem", io_error };
                    return Err(map_error(map, MapError::SyscallError(e)));
                }
                self.services.insert(key, service);
            }
            TableWrite::RemoveService { key } => {
                if self.services.remove(&key).is_none() {
                    return Err(map_error(map, MapError::KeyNotFound));
                }
            }
            TableWrite::Real { id, real } => {
                bounds(id, limits.real_ids)?;
                set(&mut self.reals, id, real);
            }
            TableWrite::Slot { index, real } => {
                bounds(index, limits.service_ids * SLOTS_PER_SERVICE)?;
                set(&mut self.slots, index, real);
                // Only this entry changed: it matters if it is in use.
                let service_id = index / SLOTS_PER_SERVICE;
                let in_use = self
                    .services
                    .values()
                    .any(|s| s.id == service_id && index % SLOTS_PER_SERVICE < s.slots_len);
                if in_use && !self.reals.contains_key(&real) {
                    self.violations.push(format!(
                        "write {}: slot {index} in use set to missing real {real}",
                        self.writes.len()
                    ));
                }
                check = false;
            }
            TableWrite::LocalAddr { index, addr } => {
                bounds(index, limits.laddr_groups * MAX_LADDRS_PER_GROUP)?;
                set(&mut self.laddrs, index, addr);
            }
            TableWrite::Settings(settings) => {
                self.settings = settings;
                check = false;
            }
            TableWrite::ResetServiceStats { id } => {
                bounds(id, limits.service_ids)?;
                self.service_stats.remove(&id);
                check = false;
            }
            TableWrite::ResetRealStats { id } => {
                bounds(id, limits.real_ids)?;
                self.real_stats.remove(&id);
                if let Some(active) = &mut self.real_active {
                    active.remove(&id);
                }
                check = false;
            }
        }
        let position = self.writes.len();
        self.writes.push(*write);
        if check {
            for broken in self.check() {
                self.violations.push(format!("after write {position} ({write:?}): {broken}"));
            }
        }
        Ok(())
    }

    fn read_services(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError> {
        Ok(self.services.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn read_reals(&self) -> Result<Vec<(u32, Real)>, DataplaneError> {
        Ok(self.reals.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn read_slots(&self, start: u32, len: u32) -> Result<Vec<u32>, DataplaneError> {
        Ok((start..start + len).map(|i| self.slots.get(&i).copied().unwrap_or(0)).collect())
    }

    fn read_laddrs(&self, start: u32, len: u32) -> Result<Vec<LocalAddr>, DataplaneError> {
        Ok((start..start + len).map(|i| self.laddrs.get(&i).copied().unwrap_or_default()).collect())
    }

    fn read_settings(&self) -> Result<Settings, DataplaneError> {
        Ok(self.settings)
    }

    fn read_service_stats(&self, id: u32) -> Result<ServiceStats, DataplaneError> {
        Ok(self.service_stats.get(&id).copied().unwrap_or_default())
    }

    fn read_real_stats(&self, id: u32) -> Result<RealStats, DataplaneError> {
        Ok(self.real_stats.get(&id).copied().unwrap_or_default())
    }

    fn read_real_active(&self, id: u32) -> Result<Option<u64>, DataplaneError> {
        Ok(self.real_active.as_ref().map(|active| active.get(&id).copied().unwrap_or(0)))
    }
}
