//! `S3Datasets`, the object source of `s3://` datasets, on a real
//! S3-compatible server (moto's): listings page and stop when told, objects
//! stream in small reads, errors say what they are, a download cut off
//! partway resumes where it stopped, and all of it works when called from
//! async code on a one-thread runtime (the dry run's estimate) as from a
//! blocking thread (the planner's).

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cache::{ObjectStore, S3Datasets, S3Options, S3Store, S3TestServer};
use futures::stream::{StreamExt, TryStreamExt};
use jobs::dataset::{ObjectSource, ObjectSourceError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// More than one listing page (1,000 keys).
const MANY: usize = 1005;

fn server() -> S3TestServer {
    S3TestServer::start().unwrap_or_else(|e| panic!("{e}"))
}

async fn bucket(server: &S3TestServer, name: &str) -> S3Store {
    let store = S3Store::new(&format!("s3://{name}"), server.options()).unwrap();
    store.create_bucket_if_missing().await.unwrap();
    store
}

/// Bytes that differ everywhere, so a resume from the wrong offset shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn keys(source: &S3Datasets, prefix: &str, delimited: bool, stop: usize) -> Vec<String> {
    let mut found = Vec::new();
    source
        .list("datasets", prefix, delimited, &mut |object| {
            found.push(object.key);
            found.len() < stop
        })
        .unwrap();
    found
}

// A one-thread runtime, as `#[tokio::test]` makes: the source must not
// block on it (the dry run calls the reader from async code).
#[tokio::test]
async fn lists_and_streams_objects_from_async_code_too() {
    let server = server();
    let store = bucket(&server, "datasets").await;
    let big = pattern(3 * 1024 * 1024 + 17);
    store
        .put("qa/big.jsonl", Bytes::from(big.clone()))
        .await
        .unwrap();
    store
        .put("qa/nested/x.csv", Bytes::from_static(b"a\n1\n"))
        .await
        .unwrap();
    futures::stream::iter(0..MANY)
        .map(|i| {
            let store = &store;
            async move {
                let key = format!("many/{i:05}.jsonl");
                store.put(&key, Bytes::from_static(b"{}\n")).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let source = S3Datasets::new(server.options());

    assert_eq!(keys(&source, "qa/", true, usize::MAX), ["qa/big.jsonl"]);
    assert_eq!(keys(&source, "qa/", false, usize::MAX).len(), 2);
    let many = keys(&source, "many/", true, usize::MAX);
    assert_eq!(many.len(), MANY, "every page listed");
    assert!(many.windows(2).all(|w| w[0] < w[1]), "in key order");
    assert_eq!(
        keys(&source, "many/", true, 3).len(),
        3,
        "stopped when told"
    );
    assert!(
        server.log().contains("continuation-token="),
        "a second page"
    );

    // Small reads, as a line reader makes them.
    let mut object = source.open("datasets", "qa/big.jsonl").unwrap();
    let mut read = Vec::new();
    let mut buf = [0u8; 1000];
    loop {
        let n = object.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        read.extend_from_slice(&buf[..n]);
    }
    assert!(read == big, "{} bytes read of {}", read.len(), big.len());

    // What went wrong, told apart.
    assert_eq!(
        source.open("datasets", "qa/none.jsonl").err(),
        Some(ObjectSourceError::NotFound)
    );
    match source.open("no-such-datasets", "x.jsonl").err() {
        Some(ObjectSourceError::Refused(text)) => {
            assert!(
                text.contains("bucket no-such-datasets does not exist"),
                "{text}"
            )
        }
        other => panic!("{other:?}"),
    }
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dead = S3Datasets::new(S3Options {
        endpoint_url: Some(format!("http://127.0.0.1:{dead_port}")),
        ..server.options()
    });
    match dead.list("datasets", "", true, &mut |_| true) {
        Err(ObjectSourceError::Unavailable(text)) => {
            assert!(text.contains(&format!("127.0.0.1:{dead_port}")), "{text}");
            assert!(!text.contains("shardline-test-secret"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // Dropped here, in async code: its runtime shuts down without waiting.
    drop(source);
}

/// What a cutting proxy saw: connections, and the bytes it passed back on
/// all but the first.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    later_bytes: AtomicUsize,
}

/// A proxy to `upstream` that passes only `cut_after` bytes of its first
/// connection's answers, then closes it; later connections pass whole.
/// With `drop_range`, later requests lose their `Range` header, as through
/// a proxy that ignores it: the whole object comes back.
async fn proxy(
    upstream: SocketAddr,
    cut_after: usize,
    drop_range: bool,
) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counted = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let first = counted.connections.fetch_add(1, Ordering::SeqCst) == 0;
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::spawn(async move {
                    if drop_range && !first {
                        // The request head, without its Range line.
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            match client_read.read(&mut byte).await {
                                Ok(1) => head.push(byte[0]),
                                _ => return,
                            }
                        }
                        let text = String::from_utf8_lossy(&head).to_string();
                        let kept: String = text
                            .split_inclusive("\r\n")
                            .filter(|line| !line.to_ascii_lowercase().starts_with("range:"))
                            .collect();
                        if server_write.write_all(kept.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut left = if first { cut_after } else { usize::MAX };
                let mut buf = vec![0u8; 16 * 1024];
                while left > 0 {
                    let Ok(n) = server_read.read(&mut buf).await else {
                        break;
                    };
                    if n == 0 {
                        break;
                    }
                    let n = n.min(left);
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    left -= n;
                    if !first {
                        counted.later_bytes.fetch_add(n, Ordering::SeqCst);
                    }
                }
                up.abort();
            });
        }
    });
    (addr, seen)
}

/// Reads a 2 MiB object through a proxy that cuts the first connection
/// after 300 KiB (and, with `drop_range`, strips later requests' `Range`):
/// what was read, the object, and what the proxy saw.
async fn read_through_cut(drop_range: bool) -> (std::io::Result<Vec<u8>>, Vec<u8>, Arc<Seen>) {
    let server = server();
    let store = bucket(&server, "datasets").await;
    let data = pattern(2 * 1024 * 1024 + 5);
    store
        .put("cut/data.jsonl", Bytes::from(data.clone()))
        .await
        .unwrap();
    let (proxy, seen) = proxy(server.addr(), 300 * 1024, drop_range).await;
    let source = S3Datasets::new(S3Options {
        endpoint_url: Some(format!("http://{proxy}")),
        ..server.options()
    });
    let read = tokio::task::spawn_blocking(move || {
        let mut object = source.open("datasets", "cut/data.jsonl").unwrap();
        let mut read = Vec::new();
        object.read_to_end(&mut read).map(|_| read)
    })
    .await
    .unwrap();
    (read, data, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_off_resumes_where_it_stopped() {
    let (read, data, seen) = read_through_cut(false).await;
    let read = read.expect("resumed after the cut");
    assert!(read == data, "{} bytes read of {}", read.len(), data.len());
    assert!(
        seen.connections.load(Ordering::SeqCst) >= 2,
        "no second request"
    );
    // Resumed from where it stopped, not downloaded again from the start.
    let later = seen.later_bytes.load(Ordering::SeqCst);
    assert!(later < data.len(), "{later} bytes after the cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_the_server_does_not_honour_is_an_error_not_repeated_rows() {
    let (read, data, _) = read_through_cut(true).await;
    let err = match read {
        Ok(bytes) => panic!(
            "{} bytes read of {}: the whole object was appended again",
            bytes.len(),
            data.len()
        ),
        Err(e) => e,
    };
    assert!(err.to_string().contains("did not resume it"), "{err}");
}
