//! The beatmatch spec of a reference optimizer configuration, as the fixture sidecars record
//! it (`optimizer` plus optax's `constructor_args`, or an OptList entry): the one mapping every
//! conformance check — host, device — configures itself from.

use anyhow::Result;
use beatmatch_core::OptimizerSpec;
use serde_json::Value;

/// The spec for the sidecar `meta` of case `name`, `None` when its optimizer is not a
/// hand-designed one (learned optimizers). Each kind answers the references it implements
/// ([`crate::Kind::reference_spec`]). A reference argument beatmatch does not implement is an
/// error naming it, never silently dropped.
pub fn spec_for(name: &str, meta: &Value) -> Result<Option<OptimizerSpec>> {
    crate::kinds().into_iter().find_map(|k| k.reference_spec(name, meta)).transpose()
}
