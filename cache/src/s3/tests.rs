//! Unit tests of S3 locations, options and secret redaction.

use super::*;

#[test]
fn parses_locations() {
    let l = S3Location::parse("s3://my-bucket/a/b/").unwrap();
    assert_eq!((l.bucket(), l.prefix()), ("my-bucket", "a/b/"));
    assert_eq!(l.to_string(), "s3://my-bucket/a/b");
    assert_eq!(l.key("segments/x"), "a/b/segments/x");
    let l = S3Location::parse("s3://my-bucket").unwrap();
    assert_eq!((l.bucket(), l.prefix()), ("my-bucket", ""));
    assert_eq!(l.to_string(), "s3://my-bucket");
    assert_eq!(S3Location::parse("s3://my-bucket/").unwrap().prefix(), "");
    for bad in [
        "s3://",
        "s3:///x",
        "s3://UPPER/x",
        "s3://b/x",
        "s3://bucket/a/../b",
        "s3://bucket/a//b",
        "bucket/x",
    ] {
        assert!(
            matches!(
                S3Location::parse(bad),
                Err(ObjectStoreError::Unsupported(..))
            ),
            "{bad}"
        );
    }
}

#[test]
fn options_from_env_lookup() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let o = S3Options::from_lookup(env(&[
        ("AWS_ENDPOINT_URL", "http://aws-env:1"),
        ("SHARDLINE_S3_ENDPOINT", "http://shardline:2"),
        ("SHARDLINE_S3_FORCE_PATH_STYLE", "true"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
    ]))
    .unwrap();
    assert_eq!(o.endpoint_url.as_deref(), Some("http://shardline:2"));
    assert!(o.force_path_style);
    assert_eq!(o.region.as_deref(), Some("eu-west-1"));
    let o = S3Options::from_lookup(env(&[
        ("AWS_ENDPOINT_URL", "http://aws-env:1"),
        ("AWS_REGION", "us-west-2"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
    ]))
    .unwrap();
    assert_eq!(o.endpoint_url.as_deref(), Some("http://aws-env:1"));
    assert!(!o.force_path_style);
    assert_eq!(o.region.as_deref(), Some("us-west-2"));
    assert_eq!(
        S3Options::from_lookup(env(&[])).unwrap(),
        S3Options::default()
    );
    let err =
        S3Options::from_lookup(env(&[("SHARDLINE_S3_FORCE_PATH_STYLE", "maybe")])).unwrap_err();
    assert!(
        err.to_string().contains("SHARDLINE_S3_FORCE_PATH_STYLE"),
        "{err}"
    );
}

#[test]
fn path_style_for_ip_and_localhost_endpoints() {
    let with = |endpoint: &str| S3Options {
        endpoint_url: Some(endpoint.to_string()),
        ..S3Options::default()
    };
    assert!(with("http://127.0.0.1:9000").path_style());
    assert!(with("http://localhost:9000/").path_style());
    assert!(with("http://[::1]:9000").path_style());
    assert!(with("http://user:pw@10.0.0.1").path_style());
    assert!(!with("https://s3.eu-west-1.amazonaws.com").path_style());
    assert!(!S3Options::default().path_style());
}

#[test]
fn secrets_stay_out_of_debug_and_describe() {
    let store = S3Store::new(
        "s3://bucket/p",
        S3Options {
            endpoint_url: Some("http://user:hunter2@127.0.0.1:9000/x".into()),
            credentials: Some(S3Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI-secret".into(),
            }),
            ..S3Options::default()
        },
    )
    .unwrap();
    let shown = format!("{store:?} {} {:?}", store.describe(), store.options);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("wJalrXUtnFEMI-secret"), "{shown}");
    assert!(shown.contains("http://127.0.0.1:9000/x"), "{shown}");
    assert_eq!(store.describe(), "s3://bucket/p");
}
