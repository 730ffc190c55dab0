//! A relay in front of a TCP server that holds every byte back for a fixed time in each direction: the bench's
//! PostgreSQL as API processes reach a database on another machine, not on their own. It runs on a thread of its
//! own, so that the bench's clients do not delay it further.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A PostgreSQL URL on loopback (`postgres://user@127.0.0.1:PORT/db`) rewritten to go through a relay that delays
/// each direction by `one_way`.
pub fn delayed_url(url: &str, one_way: Duration) -> String {
    let (head, rest) = url.split_once("@127.0.0.1:").expect("a loopback URL");
    let (port, db) = rest.split_once('/').expect("a database in the URL");
    let relay = start(format!("127.0.0.1:{port}"), one_way);
    format!("{head}@127.0.0.1:{}/{db}", relay.port())
}

/// Relay connections to `target` with `one_way` delay; the address to connect to instead.
fn start(target: String, one_way: Duration) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (_, _) = (client.set_nodelay(true), server.set_nodelay(true));
                let ((cr, cw), (sr, sw)) = (client.into_split(), server.into_split());
                tokio::spawn(delay(cr, sw, one_way));
                tokio::spawn(delay(sr, cw, one_way));
            }
        });
    });
    rx.recv().unwrap()
}

/// Copy `from` to `to`, each chunk written `by` after it was read; order kept, bandwidth not limited.
async fn delay(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, by: Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if tx.send((Instant::now() + by, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The median time of `SELECT 1` on one connection to `url` (not a pool's: it pings as a connection is taken):
/// the round trip the relay makes.
pub async fn round_trip_ms(url: &str) -> f64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = std::time::Instant::now();
        sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = conn.close().await;
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
