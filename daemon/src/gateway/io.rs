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

/// A stream whose first bytes were already read (to tell HTTP/2's preface from HTTP/1.1): it
/// reads them again before the rest.
pub struct Rewind<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

/// The preface an HTTP/2 client with prior knowledge opens with (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl<S: AsyncRead + Unpin> Rewind<S> {
    /// Reads until the first bytes tell whether the client speaks HTTP/2 with prior knowledge
    /// (`true`) or not; the bytes read are read again from the returned stream.
    pub async fn sniff(mut inner: S) -> std::io::Result<(bool, Rewind<S>)> {
        use futures::AsyncReadExt;
        let mut prefix = Vec::with_capacity(H2_PREFACE.len());
        let mut chunk = [0u8; 24];
        loop {
            let wanted = H2_PREFACE.len() - prefix.len();
            let read = inner.read(&mut chunk[..wanted]).await?;
            prefix.extend_from_slice(&chunk[..read]);
            let agrees = H2_PREFACE.starts_with(&prefix);
            if read == 0 || !agrees || prefix.len() == H2_PREFACE.len() {
                return Ok((agrees && prefix.len() == H2_PREFACE.len(), Rewind { prefix, at: 0, inner }));
            }
        }
    }

    pub fn new(inner: S) -> Rewind<S> {
        Rewind { prefix: Vec::new(), at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        if self.at < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.at);
            buf[..n].copy_from_slice(&self.prefix[self.at..self.at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Runs the futures hyper's HTTP/2 connections spawn (one per stream) on the shard's executor.
#[derive(Clone, Copy, Debug)]
pub struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        glommio::spawn_local(async move {
            future.await;
        })
        .detach();
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
