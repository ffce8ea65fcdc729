//! Who may call (spec §12).

mod fetch;
mod gate;
mod jwks;
pub(crate) mod jwt;
mod tokens;

pub(crate) use tokens::StaticTokens;
mod verified;

pub(crate) use gate::{Gate, Identity, METADATA_PATH, Reached};
