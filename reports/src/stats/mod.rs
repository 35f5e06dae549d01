//! Statistics with clearly named estimates.

pub mod bootstrap;
