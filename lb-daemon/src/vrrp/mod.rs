//! VRRP placeholder
pub mod packet;
