//! Shardline's output cache: object stores (a local directory, S3) and the
//! segment format that holds inference outputs.

pub mod local;
pub mod object_store;
pub mod s3;
#[cfg(feature = "test-support")]
pub mod s3_test_server;
pub mod segment;

pub use local::LocalDirStore;
pub use object_store::{open_store, open_store_with, ObjectMeta, ObjectStore, ObjectStoreError};
pub use s3::{S3Credentials, S3ErrorKind, S3Location, S3Options, S3Store};
#[cfg(feature = "test-support")]
pub use s3_test_server::{S3TestServer, S3TestServerError};
pub use segment::{
    decode_segment, encode_segment, is_segment_path, list_segments, read_segment, segment_path,
    write_segment, SegmentError, SEGMENT_PREFIX,
};
