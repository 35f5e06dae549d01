//! Exporters: one module per output format.

pub mod csv;
pub mod markdown;
