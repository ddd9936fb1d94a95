//! The data plane: the XDP program, its pinned maps, and the interfaces it is attached to.
//!
//! Only this module touches BPF maps. [`xdp::XdpDataplane`] loads the object the build embeds
//! ([`xdp::OBJECT`]), pins its maps under a directory on a bpffs ([`bpffs`]), and attaches the
//! program to interfaces.

pub mod bpffs;
pub mod xdp;

use std::path::PathBuf;

/// What can go wrong while setting up or reading the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The pin directory could not be created or mounted.
    #[error("pin directory {path}: {reason}")]
    PinDirectory {
        /// The directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The kernel refused the object (verifier, BTF, map creation).
    #[error("loading the XDP object")]
    Load(#[source] Box<aya::EbpfError>),
    /// The object lacks something the daemon expects: it was built from other sources.
    #[error("the XDP object has no {kind} named {name}")]
    Missing {
        /// "program" or "map".
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A program operation (load, attach) failed.
    #[error("{action} program {program}{}", interface.as_deref().map(|i| format!(" on {i}")).unwrap_or_default())]
    Program {
        /// What was being done.
        action: &'static str,
        /// The program.
        program: &'static str,
        /// The interface, for attach.
        interface: Option<String>,
        /// The cause.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map operation failed.
    #[error("map {map}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The cause.
        #[source]
        source: Box<aya::maps::MapError>,
    },
}
