//! A running coordinator API: bound to an address, serving, stoppable. The
//! CLI's `serve`, the embedded cluster and the tests all start this type.

use std::io;
use std::net::SocketAddr;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::coordinator::Coordinator;

/// The API server and its background duties (planner, leader duties), as
/// [`crate::serve`] runs them, on a spawned task.
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free one) and starts serving.
    pub async fn bind(addr: impl ToSocketAddrs, coordinator: Coordinator) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(crate::http::serve(
            listener,
            coordinator,
            stop.clone().cancelled_owned(),
        ));
        Ok(Server {
            addr,
            stop,
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Resolves when the server ends by itself, which it does only on an
    /// error; the usual end is [`Server::shutdown`].
    pub async fn stopped(&mut self) -> io::Result<()> {
        match self.task.as_mut() {
            Some(task) => {
                let ended = join(task).await;
                self.task = None;
                ended
            }
            None => Ok(()),
        }
    }

    /// Stops accepting, lets requests in flight finish and stops the
    /// background duties.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(mut task) => join(&mut task).await,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn join(task: &mut JoinHandle<io::Result<()>>) -> io::Result<()> {
    match task.await {
        Ok(served) => served,
        Err(e) => Err(io::Error::other(format!("coordinator task failed: {e}"))),
    }
}
