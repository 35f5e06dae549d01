//! Exporters: one module per output format.

pub mod csv;
pub mod html;
pub mod markdown;
pub mod parquet;
