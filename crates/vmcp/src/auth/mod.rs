//! Who may call (spec §12).

pub(crate) mod jwt;
