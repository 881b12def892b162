//! The Sluice wire protocol, without I/O.
//!
//! - `schema/sluice.fbs` is the source of truth; `generated` is flatc's Rust for it
//!   (checked in; `cargo run -p sluice-codegen` regenerates it).
//! - `frame` finds frame boundaries in a byte stream; `codec` turns frames into
//!   `ops` values and back, verifying every inbound buffer first.
//! - `error` holds the typed error codes and their AWS names; `limits` every bound.

pub mod auth;
pub mod codec;
pub mod digest;
pub mod error;
pub mod frame;
pub mod limits;
pub mod ops;

#[allow(clippy::all, unused_imports, dead_code, non_snake_case, mismatched_lifetime_syntaxes, unsafe_op_in_unsafe_fn)]
#[rustfmt::skip]
pub mod generated {
    include!("generated/sluice_generated.rs");
}

pub use codec::{decode_request, decode_response, DecodeError, Encoder};
pub use error::{ErrorCode, OpError};
pub use frame::{check_frame, FrameCheck};
pub use ops::*;
