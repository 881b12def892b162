//! Typed cross-shard calls, for any engine: an engine declares its calls with `calls!`,
//! which makes its call and answer enums and ties each request to its reply, so a wrong
//! answer cannot reach a caller (a mismatch could only come from a peer of another version,
//! and is an error, in one place). Knows no engine.

use sluice_protocol::OpError;

/// A request to another shard whose reply type is fixed by the request.
pub trait Request: Sized {
    /// The engine's answer enum the reply comes back in (the request travels in the engine's
    /// call enum, which it converts `Into`).
    type Answer;
    type Reply;
    /// The reply, if `answer` is this request's kind.
    fn reply(answer: Self::Answer) -> Result<Self::Reply, OpError>;
}

/// Declares an engine's calls: `calls! { Call, Answer; Request => Reply, … }` makes the enums
/// `Call` (one variant per request struct, named alike) and `Answer`, and each request's
/// `From` and `Request` impls.
macro_rules! calls {
    ($call:ident, $answer:ident; $($(#[doc = $doc:expr])* $name:ident => $reply:ty,)*) => {
        #[derive(Debug)]
        pub enum $call {
            $($(#[doc = $doc])* $name($name),)*
        }

        #[derive(Debug)]
        pub enum $answer {
            $($name($reply),)*
        }

        $(
            impl From<$name> for $call {
                fn from(request: $name) -> $call {
                    $call::$name(request)
                }
            }

            impl $crate::runtime::calls::Request for $name {
                type Answer = $answer;
                type Reply = $reply;
                fn reply(answer: $answer) -> Result<$reply, sluice_protocol::OpError> {
                    match answer {
                        $answer::$name(reply) => Ok(reply),
                        // (None other, for an engine with one call.)
                        #[allow(unreachable_patterns)]
                        other => Err($crate::runtime::calls::mismatch(stringify!($name), &other)),
                    }
                }
            }
        )*
    };
}
pub(crate) use calls;

/// The error for an answer of the wrong kind.
pub fn mismatch(request: &str, answer: &dyn std::fmt::Debug) -> OpError {
    OpError::new(sluice_protocol::ErrorCode::InternalFailure, format!("another shard answered {request} with {answer:?}"))
}
