//! Framing: how many bytes of a stream make the next frame.
//!
//! The check looks only at the 4-byte little-endian length prefix and never
//! allocates; the caller then hands the complete frame to `codec`.

use crate::limits::FRAME_PREFIX_BYTES;

/// What the start of a receive buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCheck {
    /// A whole frame of this many bytes, prefix included, is at the start of the buffer.
    Complete(usize),
    /// More bytes are needed; `total` is the whole frame's size once the prefix is known.
    Incomplete { total: Option<usize> },
    /// The prefix announces more than `frame_bytes_max` (or an empty frame): the
    /// stream cannot be trusted past this point.
    Invalid { announced: usize },
}

/// Inspects the start of `buf` for a frame no larger than `frame_bytes_max` (prefix included).
pub fn check_frame(buf: &[u8], frame_bytes_max: usize) -> FrameCheck {
    let Some(prefix) = buf.get(..FRAME_PREFIX_BYTES) else {
        return FrameCheck::Incomplete { total: None };
    };
    let announced = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let total = announced + FRAME_PREFIX_BYTES;
    if announced == 0 || total > frame_bytes_max {
        return FrameCheck::Invalid { announced };
    }
    if buf.len() >= total {
        FrameCheck::Complete(total)
    } else {
        FrameCheck::Incomplete { total: Some(total) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_buffers_are_incomplete() {
        assert_eq!(check_frame(&[], 100), FrameCheck::Incomplete { total: None });
        assert_eq!(check_frame(&[5, 0, 0], 100), FrameCheck::Incomplete { total: None });
        assert_eq!(check_frame(&[5, 0, 0, 0, 1], 100), FrameCheck::Incomplete { total: Some(9) });
    }

    #[test]
    fn complete_frame_reports_its_size() {
        assert_eq!(check_frame(&[2, 0, 0, 0, 1, 2, 3], 100), FrameCheck::Complete(6));
    }

    #[test]
    fn oversized_and_empty_frames_are_invalid() {
        assert_eq!(check_frame(&[0xff, 0xff, 0xff, 0xff], 100), FrameCheck::Invalid { announced: u32::MAX as usize });
        assert_eq!(check_frame(&[97, 0, 0, 0], 100), FrameCheck::Invalid { announced: 97 });
        assert_eq!(check_frame(&[96, 0, 0, 0], 100), FrameCheck::Incomplete { total: Some(100) });
        assert_eq!(check_frame(&[0, 0, 0, 0], 100), FrameCheck::Invalid { announced: 0 });
    }
}
