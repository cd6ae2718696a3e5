//! One conformance suite run against every object store: a local directory
//! and S3 on a real S3-compatible server (moto's, started on 127.0.0.1 per
//! test; `scripts/ensure-s3.sh` installs it).

use bytes::Bytes;
use cache::{
    list_segments, read_segment, segment_path, write_segment, LocalDirStore, ObjectStore,
    ObjectStoreError, S3ErrorKind, S3Options, S3Store, S3TestServer,
};
use futures::stream::{StreamExt, TryStreamExt};
use jobs::{InferenceOutput, ModelFingerprint, RequestKey, RequestType, SegmentRecord, Usage};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// More than one S3 listing page (1,000 keys), so pagination must work.
const MANY_OBJECTS: usize = 1100;
/// Above the 16 MiB multipart threshold: two parts, the last one short.
const LARGE_OBJECT: usize = 20 * 1024 * 1024 + 12_345;

async fn conformance(store: &dyn ObjectStore) {
    store.check_access().await.expect("check_access");

    // Small objects, overwrite, empty object.
    store
        .put("a/b/one", Bytes::from_static(b"1"))
        .await
        .unwrap();
    store
        .put("a/b/two", Bytes::from_static(b"first"))
        .await
        .unwrap();
    store
        .put("a/b/two", Bytes::from_static(b"22"))
        .await
        .unwrap();
    store.put("a/c", Bytes::from_static(b"333")).await.unwrap();
    store.put("empty", Bytes::new()).await.unwrap();
    assert_eq!(&store.get("a/b/two").await.unwrap()[..], b"22");
    assert!(store.get("empty").await.unwrap().is_empty());

    // Listing: prefix filtering, order, sizes.
    let listed: Vec<_> = store
        .list("a/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.path, m.size))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("a/b/one".to_string(), 1),
            ("a/b/two".to_string(), 2),
            ("a/c".to_string(), 3)
        ]
    );
    assert_eq!(store.list("a/b/t").await.unwrap().len(), 1);
    assert!(store.list("nothing/").await.unwrap().is_empty());

    // Missing objects and deletes.
    match store.get("a/missing").await {
        Err(ObjectStoreError::NotFound { path, .. }) => assert_eq!(path, "a/missing"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    store.delete("a/c").await.unwrap();
    assert!(matches!(
        store.get("a/c").await,
        Err(ObjectStoreError::NotFound { .. })
    ));
    store.delete("a/c").await.unwrap();
    assert_eq!(store.list("a/").await.unwrap().len(), 2);

    // Paths that could escape the root or are not portable are refused.
    for bad in ["../x", "/abs", "a//b", "a/./b", ""] {
        assert!(
            matches!(
                store.put(bad, Bytes::new()).await,
                Err(ObjectStoreError::InvalidPath { .. })
            ),
            "{bad}"
        );
    }

    // More objects than one listing page holds.
    let started = Instant::now();
    futures::stream::iter(0..MANY_OBJECTS)
        .map(|i| async move {
            store
                .put(
                    &format!("many/{i:05}"),
                    Bytes::from(i.to_string().into_bytes()),
                )
                .await
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let many = store.list("many/").await.unwrap();
    assert_eq!(many.len(), MANY_OBJECTS);
    for (i, meta) in many.iter().enumerate() {
        assert_eq!(meta.path, format!("many/{i:05}"));
        assert_eq!(meta.size, i.to_string().len() as u64);
    }
    eprintln!(
        "{}: {MANY_OBJECTS} puts + list in {:?}",
        store.describe(),
        started.elapsed()
    );

    // A large object goes through the multipart path on S3.
    let started = Instant::now();
    let large: Bytes = (0..LARGE_OBJECT)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into();
    store.put("large/object", large.clone()).await.unwrap();
    let back = store.get("large/object").await.unwrap();
    assert_eq!(back.len(), large.len());
    assert!(back == large, "large object changed on the way");
    assert_eq!(
        store.list("large/").await.unwrap()[0].size,
        LARGE_OBJECT as u64
    );
    eprintln!(
        "{}: {} MiB put + get in {:?}",
        store.describe(),
        LARGE_OBJECT >> 20,
        started.elapsed()
    );

    // Segments round-trip through the store.
    let records: Vec<_> = (0..40).map(|i| record(i, i % 9 != 0)).collect();
    let first = segment_path(Uuid::nil(), Uuid::nil(), 1);
    let second = segment_path(Uuid::nil(), Uuid::nil(), 2);
    write_segment(store, &second, &records[20..]).await.unwrap();
    write_segment(store, &first, &records[..20]).await.unwrap();
    store
        .put("segments/not-a-segment.txt", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(read_segment(store, &first).await.unwrap(), &records[..20]);
    assert_eq!(read_segment(store, &second).await.unwrap(), &records[20..]);
    assert_eq!(list_segments(store).await.unwrap(), vec![first, second]);
}

fn record(i: u32, ok: bool) -> SegmentRecord {
    SegmentRecord {
        key: RequestKey(format!("{i:064x}")),
        model: ModelFingerprint::api("openai", "m"),
        request_type: RequestType::Generate,
        sample_index: 0,
        output: ok.then(|| InferenceOutput {
            text: Some(format!("answer {i}")),
            finish_reason: Some("stop".into()),
            loglikelihood: None,
            usage: Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
            },
            latency_ms: 12,
            attempts: 1,
        }),
        error: (!ok).then(|| "HTTP 400: bad request".to_string()),
        created_at: "2026-01-01T00:00:00Z".into(),
    }
}

/// Starts the test server or fails the test, never skips it.
fn s3_server() -> S3TestServer {
    match S3TestServer::start() {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

async fn s3_store(server: &S3TestServer, location: &str) -> S3Store {
    let store = S3Store::new(location, server.options()).unwrap();
    store.create_bucket_if_missing().await.unwrap();
    store
}

#[tokio::test]
async fn local_dir_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&LocalDirStore::new(dir.path().to_path_buf())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_conforms() {
    let server = s3_server();
    let store = s3_store(&server, "s3://shardline-cache/runs/ci").await;
    assert_eq!(store.describe(), "s3://shardline-cache/runs/ci");
    conformance(&store).await;

    // The server's request log shows the paths really taken: the large
    // object went up in two parts and was completed, never aborted, and the
    // big listing needed a second page.
    let log = server.log();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("/runs/ci/large/object?uploads"), 1, "{log}");
    assert_eq!(count("/runs/ci/large/object?x-id=UploadPart"), 2, "{log}");
    assert_eq!(
        count("POST /shardline-cache/runs/ci/large/object?uploadId="),
        1
    );
    assert_eq!(count("large/object?x-id=AbortMultipartUpload"), 0);
    assert!(count("continuation-token=") >= 1, "no second listing page");
}

#[tokio::test]
async fn s3_prefixes_isolate_stores_in_one_bucket() {
    let server = s3_server();
    let left = s3_store(&server, "s3://shared-bucket/left").await;
    let right = s3_store(&server, "s3://shared-bucket/right").await;
    let root = s3_store(&server, "s3://shared-bucket").await;
    assert!(!root.create_bucket_if_missing().await.unwrap());
    left.put("x/1", Bytes::from_static(b"L")).await.unwrap();
    right.put("x/1", Bytes::from_static(b"R")).await.unwrap();
    assert_eq!(&left.get("x/1").await.unwrap()[..], b"L");
    assert_eq!(&right.get("x/1").await.unwrap()[..], b"R");
    assert_eq!(left.list("").await.unwrap().len(), 1);
    // A prefix is a folder, not a string prefix: `left` does not see
    // `leftover/`.
    root.put("leftover/x", Bytes::from_static(b"o"))
        .await
        .unwrap();
    assert_eq!(left.list("").await.unwrap().len(), 1);
    let all: Vec<_> = root
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(all, vec!["left/x/1", "leftover/x", "right/x/1"]);
    left.delete("x/1").await.unwrap();
    assert_eq!(&right.get("x/1").await.unwrap()[..], b"R");
}

#[tokio::test]
async fn s3_errors_say_what_to_check() {
    let server = s3_server();

    // A bucket that does not exist.
    let store = S3Store::new("s3://no-such-bucket/p", server.options()).unwrap();
    let err = store.check_access().await.unwrap_err();
    match &err {
        ObjectStoreError::S3 { kind, .. } => assert_eq!(*kind, S3ErrorKind::NoSuchBucket, "{err}"),
        other => panic!("expected an S3 error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("no-such-bucket"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains(&server.endpoint()), "{message}");
    // A missing bucket is not a missing object.
    assert!(matches!(
        store.get("x").await,
        Err(ObjectStoreError::S3 {
            kind: S3ErrorKind::NoSuchBucket,
            ..
        })
    ));

    // An endpoint nobody listens on: connection refused, retried, then a
    // message naming the endpoint, within the retry budget.
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dead = S3Store::new(
        "s3://bucket/p",
        S3Options {
            endpoint_url: Some(format!("http://127.0.0.1:{dead_port}")),
            ..server.options()
        },
    )
    .unwrap();
    let started = Instant::now();
    let err = dead.put("x", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(60));
    match &err {
        ObjectStoreError::S3 { kind, .. } => assert_eq!(*kind, S3ErrorKind::Unreachable, "{err}"),
        other => panic!("expected an S3 error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{dead_port}")),
        "{message}"
    );
    assert!(!message.contains("shardline-test-secret"), "{message}");
}

#[tokio::test]
async fn open_store_reads_s3_options_from_the_environment_lookup() {
    let server = s3_server();
    let env = server.env();
    let options =
        S3Options::from_lookup(|name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
            .unwrap();
    assert_eq!(
        options.endpoint_url.as_deref(),
        Some(server.endpoint().as_str())
    );
    assert!(options.force_path_style);
    // Keys come from the AWS chain in real use; the test hands them over
    // directly rather than mutating this process's environment.
    let options = S3Options {
        credentials: server.options().credentials,
        ..options
    };
    let store = cache::open_store_with("s3://env-bucket/x", options).unwrap();
    assert_eq!(store.describe(), "s3://env-bucket/x");
    let s3 = S3Store::new("s3://env-bucket/x", server.options()).unwrap();
    assert!(s3.create_bucket_if_missing().await.unwrap());
    store.put("k", Bytes::from_static(b"v")).await.unwrap();
    assert_eq!(&s3.get("k").await.unwrap()[..], b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_retries_server_errors_then_aborts_the_multipart_upload() {
    let server = s3_server();
    let direct = s3_store(&server, "s3://faulty-parts/p").await;
    let (proxy, failed_parts) = failing_parts_proxy(server.addr()).await;
    let store = S3Store::new(
        "s3://faulty-parts/p",
        S3Options {
            endpoint_url: Some(format!("http://{proxy}")),
            ..server.options()
        },
    )
    .unwrap();
    // Requests other than UploadPart pass through the proxy untouched.
    store.put("small", Bytes::from_static(b"s")).await.unwrap();

    let err = store
        .put("big", Bytes::from(vec![7u8; 17 * 1024 * 1024]))
        .await
        .unwrap_err();
    match &err {
        ObjectStoreError::S3 { kind, .. } => assert_eq!(*kind, S3ErrorKind::Server, "{err}"),
        other => panic!("expected an S3 error, got {other:?}"),
    }
    // Every 500 was retried: at least one part used all five attempts.
    assert!(failed_parts.load(Ordering::SeqCst) >= 5, "{err}");
    // The upload was aborted, and nothing became visible under the name.
    let log = server.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("DELETE /faulty-parts/p/big?x-id=AbortMultipartUpload"))
            .count(),
        1,
        "{log}"
    );
    assert!(matches!(
        direct.get("big").await,
        Err(ObjectStoreError::NotFound { .. })
    ));
    assert_eq!(&direct.get("small").await.unwrap()[..], b"s");
}

/// A loopback front for the S3 server that answers every UploadPart with an
/// S3 `500 InternalError` and relays every other request. One request per
/// connection keeps the relay simple.
async fn failing_parts_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let failed = Arc::new(AtomicUsize::new(0));
    let counter = failed.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                // A broken client connection only fails that request.
                let _ = relay(conn, upstream, counter).await;
            });
        }
    });
    (addr, failed)
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    failed: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (head, body) = read_message(&mut client).await?;
    let request_line = head.lines().next().unwrap_or_default().to_string();
    if request_line.contains("x-id=UploadPart") {
        failed.fetch_add(1, Ordering::SeqCst);
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                   <Error><Code>InternalError</Code><Message>injected</Message></Error>";
        let answer = format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        );
        return client.write_all(answer.as_bytes()).await;
    }
    let mut forwarded = with_connection_close(&head).into_bytes();
    forwarded.extend_from_slice(&body);
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&forwarded).await?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).await?;
    let split = find(&answer, b"\r\n\r\n").map_or(answer.len(), |i| i + 4);
    let answer_head = String::from_utf8_lossy(&answer[..split]).to_string();
    client
        .write_all(with_connection_close(&answer_head).as_bytes())
        .await?;
    client.write_all(&answer[split..]).await
}

/// Reads one HTTP message head and its Content-Length body.
async fn read_message(conn: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((head, buf[head_end..head_end + length].to_vec()))
}

/// The same message head asking for the connection to close after it.
fn with_connection_close(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
