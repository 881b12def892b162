//! Sluice over its binary protocol: SendMessageBatch, ReceiveMessage (long polling),
//! DeleteMessageBatch. A send is acknowledged once the message is kept as the daemon's
//! `--fsync` says: with `always` (the default) after an fdatasync of the log that holds it.

use bytes::Bytes;
use sluice_client::{Client, DeleteEntry, ReceiveMessage, SendEntry};

use crate::run::{stamp_of, Broker, Consumer, Error, Producer};

pub const GUARANTEE: &str =
    "acknowledged once written to its log and, with --fsync always, fdatasynced (group commit); with --fsync never, once in memory";

/// Batch entry ids, so a send costs no formatting.
const IDS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

pub struct Sluice {
    pub endpoint: String,
    pub queue: String,
}

/// Creates the queue before the run (it is kept if it exists).
pub fn setup(endpoint: &str, queue: &str) -> Result<(), Error> {
    let connection = sluice_client::blocking::BlockingClient::connect(endpoint, "sluice-load-setup")
        .map_err(|e| format!("cannot reach Sluice at {endpoint}: {e}"))?;
    connection.block_on(connection.client().create_queue(queue, vec![], vec![])).map_err(|e| e.to_string())?;
    Ok(())
}

#[derive(Clone)]
pub struct SluiceProducer {
    client: Client,
    queue: std::rc::Rc<str>,
}

pub struct SluiceConsumer {
    client: Client,
    queue: String,
    receipts: Vec<String>,
}

impl Broker for Sluice {
    type Executor = crate::run::Glommio;
    type Connection = Client;
    type Producer = SluiceProducer;
    type Consumer = SluiceConsumer;

    async fn connect(&self) -> Result<Client, Error> {
        let stream =
            glommio::net::TcpStream::connect(self.endpoint.as_str()).await.map_err(|e| format!("connecting to {}: {e}", self.endpoint))?;
        stream.set_nodelay(true).ok();
        let (client, driver) = Client::connect(stream, "sluice-load").await.map_err(|e| e.to_string())?;
        glommio::spawn_local(async move {
            if let Err(error) = driver.run().await {
                eprintln!("sluice-load: connection ended: {error}");
            }
        })
        .detach();
        Ok(client)
    }

    async fn producer(&self, connection: &Client) -> Result<SluiceProducer, Error> {
        Ok(SluiceProducer { client: connection.clone(), queue: self.queue.as_str().into() })
    }

    async fn consumer(&self, connection: &Client, _name: String) -> Result<SluiceConsumer, Error> {
        Ok(SluiceConsumer { client: connection.clone(), queue: self.queue.clone(), receipts: Vec::new() })
    }
}

impl Producer for SluiceProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        let entries = bodies.into_iter().zip(IDS).map(|(body, id)| SendEntry { id: id.to_owned(), body, ..SendEntry::default() }).collect();
        let (_, failed) = self.client.send_message_batch(&self.queue, entries).await.map_err(|e| e.to_string())?;
        match failed.first() {
            None => Ok(()),
            Some(entry) => Err(format!("{} of the batch failed, first: {entry:?}", failed.len())),
        }
    }
}

impl Consumer for SluiceConsumer {
    const RECEIVE_IS_A_REQUEST: bool = true;

    async fn receive(&mut self, max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        let request =
            ReceiveMessage { queue: self.queue.clone(), max_messages: Some(max as i32), wait_time_seconds: Some(1), ..Default::default() };
        let messages = self.client.receive_message(request).await.map_err(|e| e.to_string())?;
        self.receipts.clear();
        for message in messages {
            stamps.extend(stamp_of(&message.body));
            self.receipts.push(message.receipt_handle);
        }
        Ok(())
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        let entries =
            self.receipts.drain(..).zip(IDS).map(|(receipt_handle, id)| DeleteEntry { id: id.to_owned(), receipt_handle }).collect();
        let (_, failed) = self.client.delete_message_batch(&self.queue, entries).await.map_err(|e| e.to_string())?;
        match failed.first() {
            None => Ok(()),
            Some(entry) => Err(format!("{} deletes of the batch failed, first: {entry:?}", failed.len())),
        }
    }
}
