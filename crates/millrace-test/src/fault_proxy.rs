//! A TCP proxy that injects network faults between one client and PostgreSQL, on the loopback
//! only: the chaos soak (`tests/soak.rs`) puts one in front of each worker process.
//!
//! Unlike the reply-dropping proxy of `tests/proof.rs`, it knows nothing of PostgreSQL's
//! protocol: it models what a network does to a TCP connection, whatever runs over it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What [`FaultProxy`] does to the traffic it relays, from the moment it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFault {
    /// Relays every byte at once.
    Healthy,
    /// Delivers nothing, in either direction, on open and new connections alike, while both
    /// ends stay open: what a dropped route does. Held bytes are delivered when the fault
    /// ends, as TCP retransmission would deliver them.
    Blackhole,
    /// Delays every chunk by this long in each direction.
    Latency(Duration),
    /// Closes the server's end of every connection (the server sees the client go) while
    /// the client's end stays open and silent, as after a peer's crash or a NAT that forgot
    /// the connection. When the fault ends, those client connections are reset, as the
    /// client's next segment would be answered with a reset.
    HalfOpen,
}

/// A TCP proxy on `127.0.0.1` in front of one upstream address, whose connections suffer the
/// [`NetFault`] set by [`FaultProxy::set`], and can be reset at once by [`FaultProxy::reset`].
///
/// Dropping it stops accepting; open connections end with their peers.
///
/// # Examples
///
/// ```no_run
/// # async fn example() {
/// use std::time::Duration;
/// use millrace_test::fault_proxy::{FaultProxy, NetFault};
///
/// let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
/// let url = proxy.url_for("postgres://postgres@127.0.0.1:5432/test");
/// proxy.set(NetFault::Latency(Duration::from_millis(200)));
/// proxy.reset(); // every open connection gets a TCP reset
/// proxy.set(NetFault::Healthy);
/// # drop(url);
/// # }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    fault: watch::Sender<NetFault>,
    /// Bumped by each reset; every connection watches it.
    resets: watch::Sender<u64>,
    connections: AtomicU64,
}

impl FaultProxy {
    /// Listens on a free loopback port and relays each connection to `upstream`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound: it is a test fixture.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        let shared = Arc::new(Shared {
            fault: watch::Sender::new(NetFault::Healthy),
            resets: watch::Sender::new(0),
            connections: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(relay(client, upstream, accepting.clone()));
            }
        });
        FaultProxy {
            addr,
            shared,
            accept,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its host and port replaced by the proxy's, and TLS off (the proxy relays
    /// bytes; TLS would work through it, but the soak has no use for it).
    ///
    /// # Panics
    ///
    /// When `url` is not a PostgreSQL URL.
    pub fn url_for(&self, url: &str) -> String {
        use sqlx::ConnectOptions;
        use sqlx::postgres::{PgConnectOptions, PgSslMode};

        let options: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
        options
            .host(&self.addr.ip().to_string())
            .port(self.addr.port())
            .ssl_mode(PgSslMode::Disable)
            .to_url_lossy()
            .to_string()
    }

    /// Sets the fault every connection suffers from now on; [`NetFault::Healthy`] ends it.
    pub fn set(&self, fault: NetFault) {
        self.shared.fault.send_replace(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> NetFault {
        *self.shared.fault.borrow()
    }

    /// Resets every open connection at once (a TCP RST to both ends), as a firewall or a
    /// restarted middlebox does. New connections are relayed as before.
    pub fn reset(&self) {
        self.shared.resets.send_modify(|n| *n += 1);
    }

    /// How many connections the proxy has accepted.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Relays one client connection until either end closes, a reset, or a half-open fault.
async fn relay(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut faults = shared.fault.subscribe();
    let mut resets = shared.resets.subscribe();
    resets.borrow_and_update();
    let _ = client.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();

    // A half-open path from the start never reaches the server.
    if *faults.borrow_and_update() != NetFault::HalfOpen {
        let Ok(server) = TcpStream::connect(upstream).await else {
            return;
        };
        let _ = server.set_nodelay(true);
        let (mut server_read, mut server_write) = server.into_split();
        let half_open = {
            let mut watch_half_open = faults.clone();
            tokio::select! {
                () = pump(&mut client_read, &mut server_write, faults.clone()) => false,
                () = pump(&mut server_read, &mut client_write, faults.clone()) => false,
                _ = resets.changed() => false,
                _ = watch_half_open.wait_for(|f| *f == NetFault::HalfOpen) => true,
            }
        };
        // Reset both ends, or, for a half-open path, only the server's.
        if let Ok(server) = server_read.reunite(server_write) {
            let _ = server.set_zero_linger();
        }
        if !half_open {
            if let Ok(client) = client_read.reunite(client_write) {
                let _ = client.set_zero_linger();
            }
            return;
        }
    }
    // Half-open: swallow what the client sends, answer nothing, and reset it when the fault
    // ends or on a reset.
    let mut buf = vec![0; 16 * 1024];
    loop {
        tokio::select! {
            read = client_read.read(&mut buf) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return;
                }
            }
            _ = resets.changed() => break,
            _ = faults.wait_for(|f| *f != NetFault::HalfOpen) => break,
        }
    }
    if let Ok(client) = client_read.reunite(client_write) {
        let _ = client.set_zero_linger();
    }
}

/// Copies one direction, applying the fault in force to each chunk; returns at the end of
/// the stream or on an error.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mut faults: watch::Receiver<NetFault>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bounded: each pass either forwards or waits for the fault to change.
        loop {
            let fault = *faults.borrow_and_update();
            match fault {
                NetFault::Healthy => break,
                NetFault::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                // Held until the fault changes; a half-open fault ends the relay above.
                NetFault::Blackhole | NetFault::HalfOpen => {
                    if faults.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
