//! The XDP data plane: load the embedded object, pin its maps, attach, read counters.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{ProgramError, Xdp, XdpMode},
};
use lb_common::{maps::GLOBAL_STATS, programs::LB_XDP, stats::GlobalStats};
use tracing::{info, warn};

use super::{DataplaneError, bpffs};

/// The XDP object built by `cargo xtask build-ebpf` (`lb-ebpf`), embedded at build time.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("LBD_EBPF_OBJECT"));

/// How to attach the program to an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic mode, with a warning, where the driver has
    /// no XDP support.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Driver,
    /// Generic (skb) mode only: slower, works on every device.
    Generic,
}

/// An interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The interface.
    pub interface: String,
    /// The mode the kernel accepted.
    pub mode: XdpMode,
}

/// The loaded XDP program and its pinned maps.
#[derive(Debug)]
pub struct XdpDataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    attachments: Vec<Attachment>,
}

impl XdpDataplane {
    /// Loads the embedded object, pinning (or, after a restart, reusing) its maps under
    /// `pin_dir`, which is put on a bpffs if it is not on one.
    pub fn load(pin_dir: &Path) -> Result<Self, DataplaneError> {
        if bpffs::ensure(pin_dir)? {
            info!("mounted a bpffs on {}", pin_dir.display());
        }
        let mut loader = EbpfLoader::new();
        for &name in lb_common::maps::PINNED {
            // Reuses the pinned map if a previous run left it, so counters and (later) flows
            // survive a restart.
            loader.map_pin_path(name, pin_dir.join(name));
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| DataplaneError::Load(Box::new(e)))?;
        let program = lb_program(&mut ebpf)?;
        program.load().map_err(|e| program_error("load", None, e))?;
        Ok(Self { ebpf, pin_dir: pin_dir.to_path_buf(), attachments: Vec::new() })
    }

    /// Attaches the program to `interface`.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<XdpMode, DataplaneError> {
        let program = lb_program(&mut self.ebpf)?;
        let used = match mode {
            AttachMode::Driver => attach(program, interface, XdpMode::Driver)?,
            AttachMode::Generic => attach(program, interface, XdpMode::Skb)?,
            AttachMode::Auto => match attach(program, interface, XdpMode::Driver) {
                Ok(mode) => mode,
                Err(driver_error) => {
                    warn!(
                        "{interface}: native XDP failed ({}), falling back to generic mode",
                        error_chain(&driver_error)
                    );
                    attach(program, interface, XdpMode::Skb)?
                }
            },
        };
        self.attachments.push(Attachment { interface: interface.to_owned(), mode: used });
        Ok(used)
    }

    /// The interfaces the program is attached to.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// The directory where the maps are pinned.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The outcome counters, summed over CPUs.
    pub fn stats(&self) -> Result<GlobalStats, DataplaneError> {
        let map =
            self.ebpf.map(GLOBAL_STATS).ok_or(DataplaneError::Missing { kind: "map", name: GLOBAL_STATS })?;
        read_stats(map)
    }

    /// Detaches the program and removes the pins: the orderly end of the data plane.
    pub fn remove(self) -> Result<(), DataplaneError> {
        let Self { ebpf, pin_dir, .. } = self;
        // Dropping the Ebpf detaches every link it owns.
        drop(ebpf);
        for name in lb_common::maps::PINNED {
            let pin = pin_dir.join(name);
            if let Err(e) = std::fs::remove_file(&pin)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!("removing pin {}: {e}", pin.display());
            }
        }
        Ok(())
    }
}

/// Sums the per-CPU copies of the `LBD_STATS` map.
pub fn read_stats(map: &aya::maps::Map) -> Result<GlobalStats, DataplaneError> {
    let map_err = |e| DataplaneError::Map { map: GLOBAL_STATS, source: Box::new(e) };
    let array = PerCpuArray::<_, GlobalStats>::try_from(map).map_err(map_err)?;
    let per_cpu = array.get(&0, 0).map_err(map_err)?;
    Ok(per_cpu.iter().fold(GlobalStats::default(), |sum, cpu| sum.merged(cpu)))
}

fn lb_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DataplaneError> {
    let missing = DataplaneError::Missing { kind: "program", name: LB_XDP };
    ebpf.program_mut(LB_XDP).ok_or(missing)?.try_into().map_err(|e| program_error("find", None, e))
}

fn attach(program: &mut Xdp, interface: &str, mode: XdpMode) -> Result<XdpMode, DataplaneError> {
    program.attach(interface, mode).map_err(|e| program_error("attach", Some(interface), e))?;
    Ok(mode)
}

fn program_error(action: &'static str, interface: Option<&str>, e: ProgramError) -> DataplaneError {
    DataplaneError::Program {
        action,
        program: LB_XDP,
        interface: interface.map(str::to_owned),
        source: Box::new(e),
    }
}

/// An error and its causes on one line, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}
