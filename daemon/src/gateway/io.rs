//! hyper's I/O traits over a glommio socket.
//!
//! hyper 1 reads into a cursor of possibly uninitialized memory; glommio's stream reads
//! into `&mut [u8]`. The part of the cursor a read may fill is zeroed first, so no
//! uninitialized byte is ever exposed as a slice. That part follows what the connection
//! sends (from `READ_BYTES_MIN` up to `READ_BYTES_MAX`, doubling when a read fills it,
//! halving when reads use under a quarter), so small requests do not pay for zeroing 64 KiB.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// Most bytes one read may fill (and so zero first).
const READ_BYTES_MAX: usize = 64 * 1024;
/// Fewest bytes one read offers (when the cursor has that much room).
const READ_BYTES_MIN: usize = 4 * 1024;

pub struct HyperIo<S> {
    inner: S,
    /// What the next read offers, adapted to the sizes of the reads before.
    read_bytes: usize,
}

impl<S> HyperIo<S> {
    pub fn new(inner: S) -> HyperIo<S> {
        HyperIo { inner, read_bytes: 2 * READ_BYTES_MIN }
    }
}

/// The next read's size after a read of `read` bytes out of `offered`.
fn adapt(current: usize, offered: usize, read: usize) -> usize {
    if read == offered && offered == current {
        (current * 2).min(READ_BYTES_MAX)
    } else if read < current / 4 {
        (current / 2).max(READ_BYTES_MIN)
    } else {
        current
    }
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for HyperIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: hyper::rt::ReadBufCursor<'_>) -> Poll<std::io::Result<()>> {
        // SAFETY: the slice is only written (zeros, then the read's bytes) before being read,
        // and `advance` is called with the count the read reported, never more.
        let unfilled = unsafe { buf.as_mut() };
        let len = unfilled.len().min(self.read_bytes);
        let unfilled = &mut unfilled[..len];
        for byte in unfilled.iter_mut() {
            byte.write(0);
        }
        // SAFETY: every byte of `unfilled` was initialized just above.
        let slice = unsafe { &mut *(unfilled as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        match Pin::new(&mut self.inner).poll_read(cx, slice) {
            Poll::Ready(Ok(read)) => {
                // SAFETY: the read initialized (and reported) `read` bytes of the cursor.
                unsafe { buf.advance(read) };
                self.read_bytes = adapt(self.read_bytes, len, read);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grow_when_filled_and_shrink_when_mostly_empty() {
        assert_eq!(adapt(8192, 8192, 8192), 16384, "a full read doubles");
        assert_eq!(adapt(READ_BYTES_MAX, READ_BYTES_MAX, READ_BYTES_MAX), READ_BYTES_MAX, "up to the most");
        assert_eq!(adapt(8192, 3000, 3000), 8192, "a cursor smaller than the size says nothing");
        assert_eq!(adapt(16384, 16384, 3000), 8192, "a read under a quarter halves");
        assert_eq!(adapt(READ_BYTES_MIN, READ_BYTES_MIN, 10), READ_BYTES_MIN, "down to the fewest");
        assert_eq!(adapt(16384, 16384, 5000), 16384, "otherwise it stays");
    }
}
