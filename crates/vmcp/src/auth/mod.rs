//! Who may call (spec §12).

pub(crate) mod config;
mod fetch;
mod gate;
mod jwks;
pub(crate) mod jwt;
mod tokens;
mod verified;

pub(crate) use gate::{Gate, Identity, METADATA_PATH};
