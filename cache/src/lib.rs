//! Shardline's output cache: object stores (a local directory, S3) and the
//! segment format that holds inference outputs; and the reading of
//! `s3://` datasets with the same S3 settings (`S3Datasets`).

pub mod error;
pub mod local;
pub mod object_store;
pub mod open;
pub mod s3;
#[cfg(feature = "test-support")]
pub mod s3_test_server;
pub mod segment;

pub use error::{ObjectStoreError, S3ErrorKind};
pub use local::LocalDirStore;
pub use object_store::{ObjectMeta, ObjectStore};
pub use open::{open_store, open_store_with};
pub use s3::{S3Credentials, S3Datasets, S3Location, S3Options, S3Store};
#[cfg(feature = "test-support")]
pub use s3_test_server::{S3TestServer, S3TestServerError};
pub use segment::{
    attempt_segments, decode_segment, encode_segment, is_segment_path, list_segments,
    parse_segment_path, partial_segment_path, read_segment, read_segment_keys, segment_path,
    write_segment, SegmentError, SegmentName, SEGMENT_PREFIX,
};
