//! Shardline's output cache: object stores (a local directory now, S3 later)
//! and the segment format that holds inference outputs.

pub mod local;
pub mod object_store;
pub mod segment;

pub use local::LocalDirStore;
pub use object_store::{open_store, ObjectMeta, ObjectStore, StoreError};
pub use segment::{
    decode_segment, encode_segment, is_segment_path, list_segments, read_segment, segment_path,
    write_segment, SegmentError, SEGMENT_PREFIX,
};
