//! `s3://` datasets read through S3 with the cache's options (endpoint,
//! addressing, region, credentials): the [`jobs::dataset::ObjectSource`]
//! the coordinator and `shardline run` put in their read policy. Any
//! bucket can be named (the dataset roots decide which may), each gets
//! its own client on first use, and every request runs on the bridge's
//! runtime (see `bridge`).

mod bridge;
mod errors;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};

use jobs::dataset::{ObjectSource, ObjectSourceError, RemoteObject};

use super::{S3Options, S3Store};
use bridge::Bridge;
use errors::dataset_error;
use stream::{get_from, ObjectStream};

/// Reads dataset objects from any bucket the options reach.
pub struct S3Datasets {
    options: S3Options,
    bridge: Arc<Bridge>,
    stores: Mutex<HashMap<String, Arc<S3Store>>>,
}

impl fmt::Debug for S3Datasets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The options' own Debug leaves secrets out.
        f.debug_struct("S3Datasets")
            .field("options", &self.options)
            .finish()
    }
}

/// One page of a listing: the objects, and where the next page starts.
struct Page {
    objects: Vec<RemoteObject>,
    next: Option<String>,
}

impl S3Datasets {
    /// Nothing is contacted (nor a thread started) until a dataset is read.
    pub fn new(options: S3Options) -> Self {
        S3Datasets {
            options,
            bridge: Arc::new(Bridge::default()),
            stores: Mutex::new(HashMap::new()),
        }
    }

    fn store(&self, bucket: &str) -> Result<Arc<S3Store>, ObjectSourceError> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = stores.get(bucket) {
            return Ok(store.clone());
        }
        let store = S3Store::new(&format!("s3://{bucket}"), self.options.clone())
            .map_err(|e| ObjectSourceError::Refused(e.to_string()))?;
        let store = Arc::new(store);
        stores.insert(bucket.to_string(), store.clone());
        Ok(store)
    }
}

async fn list_page(
    store: Arc<S3Store>,
    prefix: String,
    delimited: bool,
    token: Option<String>,
) -> Result<Page, ObjectSourceError> {
    let client = store.client().await;
    let page = client
        .list_objects_v2()
        .bucket(store.location().bucket())
        .prefix(&prefix)
        .set_delimiter(delimited.then(|| "/".to_string()))
        .set_continuation_token(token)
        .send()
        .await
        .map_err(|e| dataset_error(&store, "list", &e))?;
    let objects = page
        .contents()
        .iter()
        .filter_map(|object| {
            Some(RemoteObject {
                key: object.key()?.to_string(),
                size: object
                    .size()
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
            })
        })
        .collect();
    let next = match (page.is_truncated(), page.next_continuation_token()) {
        (Some(true), Some(next)) if !next.is_empty() => Some(next.to_string()),
        // A truncated page without a token would list forever.
        (Some(true), _) => {
            return Err(ObjectSourceError::Refused(format!(
                "{} did not page its listing like S3 (a truncated page without a \
                 continuation token); check the endpoint",
                store.endpoint_for_messages()
            )))
        }
        _ => None,
    };
    Ok(Page { objects, next })
}

impl ObjectSource for S3Datasets {
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimited: bool,
        visit: &mut dyn FnMut(RemoteObject) -> bool,
    ) -> Result<(), ObjectSourceError> {
        let store = self.store(bucket)?;
        let mut token = None;
        loop {
            let request = list_page(store.clone(), prefix.to_string(), delimited, token);
            let page = self.bridge.run(request)??;
            for object in page.objects {
                if !visit(object) {
                    return Ok(());
                }
            }
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(()),
            }
        }
    }

    fn open(&self, bucket: &str, key: &str) -> Result<Box<dyn Read + Send>, ObjectSourceError> {
        let store = self.store(bucket)?;
        let request = get_from(store.clone(), key.to_string(), 0, None);
        let body = self.bridge.run(request)??;
        Ok(Box::new(ObjectStream::new(
            self.bridge.clone(),
            store,
            key.to_string(),
            body,
        )))
    }
}
