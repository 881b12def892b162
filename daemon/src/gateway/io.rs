//! hyper's I/O traits over a glommio socket.
//!
//! hyper 1 reads into a cursor of possibly uninitialized memory; glommio's stream reads
//! into `&mut [u8]`. The cursor's unfilled part is zeroed before each read (at most
//! `READ_BYTES_MAX`), so no uninitialized byte is ever exposed as a slice.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// Most bytes one read may fill (and so zero first).
const READ_BYTES_MAX: usize = 64 * 1024;

pub struct HyperIo<S> {
    inner: S,
}

impl<S> HyperIo<S> {
    pub fn new(inner: S) -> HyperIo<S> {
        HyperIo { inner }
    }
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for HyperIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: hyper::rt::ReadBufCursor<'_>) -> Poll<std::io::Result<()>> {
        // SAFETY: the slice is only written (zeros, then the read's bytes) before being read,
        // and `advance` is called with the count the read reported, never more.
        let unfilled = unsafe { buf.as_mut() };
        let len = unfilled.len().min(READ_BYTES_MAX);
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
