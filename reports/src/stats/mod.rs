//! Statistics with clearly named estimates.

pub mod bootstrap;
pub mod iqm;
pub mod profile;
pub mod sign_test;
pub mod wilcoxon;
