//! The soak's own instruments, checked on their own: each fault of the proxy does to a TCP
//! connection what it says (or the soak would pass without faults), and a fault plan is a
//! function of its seed that never hits one worker twice at once.

use std::time::Duration;

use millrace_test::fault_plan::{FaultKind, FaultPlan, PlanSettings};
use millrace_test::fault_proxy::{FaultProxy, NetFault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a read waits before the test calls it blocked; and the bound on awaited events.
const QUIET: Duration = Duration::from_millis(300);
const DEADLINE: Duration = Duration::from_secs(5);

/// An echo server; each connection's end (EOF or error) is reported on the channel.
async fn echo_server() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, ends) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let ended = ended.clone();
            tokio::spawn(async move {
                let mut buf = [0; 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = ended.send(());
            });
        }
    });
    (addr, ends)
}

async fn round_trip(stream: &mut TcpStream, limit: Duration) -> std::io::Result<Option<Vec<u8>>> {
    stream.write_all(b"ping").await?;
    let mut buf = [0; 4];
    match tokio::time::timeout(limit, stream.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Ok(Some(buf.to_vec())),
        Ok(Err(err)) => Err(err),
        Err(_) => Ok(None),
    }
}

#[tokio::test]
async fn blackhole_holds_bytes_until_it_ends() {
    let (echo, _) = echo_server().await;
    let proxy = FaultProxy::start(echo).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut stream, DEADLINE).await.unwrap().as_deref(),
        Some(&b"ping"[..])
    );
    proxy.set(NetFault::Blackhole);
    assert_eq!(
        round_trip(&mut stream, QUIET).await.unwrap(),
        None,
        "bytes crossed a blackhole"
    );
    proxy.set(NetFault::Healthy);
    // The held "ping" arrives now, and a new one after it.
    let mut buf = [0; 8];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut buf[..4]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        round_trip(&mut stream, DEADLINE).await.unwrap().as_deref(),
        Some(&b"ping"[..])
    );
}

#[tokio::test]
async fn latency_delays_each_direction() {
    let (echo, _) = echo_server().await;
    let proxy = FaultProxy::start(echo).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.set(NetFault::Latency(Duration::from_millis(150)));
    let started = tokio::time::Instant::now();
    assert!(round_trip(&mut stream, DEADLINE).await.unwrap().is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn reset_ends_open_connections_and_spares_new_ones() {
    let (echo, mut ends) = echo_server().await;
    let proxy = FaultProxy::start(echo).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut stream, DEADLINE).await.unwrap().is_some());
    proxy.reset();
    tokio::time::timeout(DEADLINE, ends.recv())
        .await
        .expect("the server saw the reset");
    let mut buf = [0; 4];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the client's connection survived: {read:?}"
    );
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut fresh, DEADLINE).await.unwrap().is_some());
}

#[tokio::test]
async fn half_open_closes_the_server_side_and_leaves_the_client_hanging() {
    let (echo, mut ends) = echo_server().await;
    let proxy = FaultProxy::start(echo).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut stream, DEADLINE).await.unwrap().is_some());
    proxy.set(NetFault::HalfOpen);
    tokio::time::timeout(DEADLINE, ends.recv())
        .await
        .expect("the server saw its end close");
    // The client's end is open and silent: its write succeeds, no reply comes.
    assert_eq!(round_trip(&mut stream, QUIET).await.unwrap(), None);
    proxy.set(NetFault::Healthy);
    let mut buf = [0; 4];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the half-open connection survived: {read:?}"
    );
}

#[test]
fn a_plan_is_its_seed_and_spares_a_busy_worker() {
    let settings = PlanSettings {
        span: Duration::from_secs(600),
        workers: 3,
        menu: FaultKind::POSTGRES.to_vec(),
        lease: Duration::from_secs(4),
        mean_gap: Duration::from_millis(500),
    };
    let plan = FaultPlan::generate(7, &settings);
    assert_eq!(plan, FaultPlan::generate(7, &settings));
    assert_ne!(plan, FaultPlan::generate(8, &settings));
    for kind in FaultKind::POSTGRES {
        assert!(
            plan.counts().get(kind).is_some_and(|&n| n > 0),
            "no {kind} in {}",
            plan.timeline()
        );
    }
    for (i, a) in plan.faults.iter().enumerate() {
        assert!(a.at < settings.span);
        for b in &plan.faults[i + 1..] {
            let same_worker =
                a.kind.targets_worker() && b.kind.targets_worker() && a.worker == b.worker;
            let both_restarts =
                a.kind == FaultKind::RestartPostgres && b.kind == FaultKind::RestartPostgres;
            if same_worker || both_restarts {
                assert!(b.at >= a.at + a.hold, "{a:?} and {b:?} overlap");
            }
        }
    }
}
