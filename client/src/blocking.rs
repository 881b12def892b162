//! A synchronous client: the async `Client` with its driver on a thread of its own.

use std::net::{TcpStream, ToSocketAddrs};
use std::thread::JoinHandle;

use async_io::Async;

use crate::tls::Tls;
use crate::{Client, ClientError, Driver};

/// Blocking access to a Sluice server. Every async method of `Client` is
/// reachable through `call` or `client()` with `block_on`.
pub struct BlockingClient {
    client: Option<Client>,
    driver: Option<JoinHandle<Result<(), ClientError>>>,
}

impl BlockingClient {
    /// Connects to `addr` (e.g. `127.0.0.1:9800`) and says Hello.
    pub fn connect(addr: impl ToSocketAddrs, client_name: &str) -> Result<BlockingClient, ClientError> {
        BlockingClient::connect_as(addr, client_name, None)
    }

    /// Connects, proving to hold `key` when the server requires authentication.
    pub fn connect_as(addr: impl ToSocketAddrs, client_name: &str, key: Option<&crate::AccessKey>) -> Result<BlockingClient, ClientError> {
        let stream = BlockingClient::tcp(addr)?;
        let (client, driver) = async_io::block_on(Client::connect_as(stream, client_name, key))?;
        BlockingClient::drive(client, driver)
    }

    /// Connects over TLS to `addr` (`host:port`; the server's certificate must name `host`
    /// unless `tls` says otherwise), proving to hold `key` when given.
    pub fn connect_tls(addr: &str, client_name: &str, key: Option<&crate::AccessKey>, tls: &Tls) -> Result<BlockingClient, ClientError> {
        let stream = BlockingClient::tcp(addr)?;
        let (client, driver) = async_io::block_on(async {
            let stream = tls.connect(crate::tls::host_of(addr), stream).await?;
            Client::connect_as(stream, client_name, key).await
        })?;
        BlockingClient::drive(client, driver)
    }

    fn tcp(addr: impl ToSocketAddrs) -> Result<Async<TcpStream>, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Async::new(stream)?)
    }

    /// Runs `driver` on a thread of its own.
    fn drive<S>(client: Client, driver: Driver<S>) -> Result<BlockingClient, ClientError>
    where
        S: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static,
    {
        let driver = std::thread::Builder::new().name("sluice-client".into()).spawn(move || async_io::block_on(driver.run()))?;
        Ok(BlockingClient { client: Some(client), driver: Some(driver) })
    }

    /// The async client behind this one, e.g. to run several requests at once.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("client is present until drop")
    }

    /// Runs any future (typically a `Client` call) to completion on this thread.
    pub fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        async_io::block_on(future)
    }

    /// Closes the connection after every answer is in; reports how the connection ended.
    pub fn close(mut self) -> Result<(), ClientError> {
        self.client.take();
        match self.driver.take().map(|handle| handle.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ClientError::Protocol("client driver thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for BlockingClient {
    fn drop(&mut self) {
        self.client.take();
        if let Some(handle) = self.driver.take() {
            let _ = handle.join();
        }
    }
}
