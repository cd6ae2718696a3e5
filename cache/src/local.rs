//! Object store on a local directory: one file per object.

use async_trait::async_trait;
use bytes::Bytes;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::ObjectStoreError;
use crate::object_store::{check_path, ObjectMeta, ObjectStore};

/// Objects are files under `root`. Writes go to a temporary file in the same
/// directory, are fsynced, then renamed into place, so a crash never leaves a
/// partial object under its final name.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: PathBuf) -> Self {
        LocalDirStore { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io_err(&self, op: &'static str, path: &str, source: std::io::Error) -> ObjectStoreError {
        if source.kind() == ErrorKind::NotFound && op == "read" {
            return ObjectStoreError::NotFound {
                store: self.describe(),
                path: path.to_string(),
            };
        }
        ObjectStoreError::Io {
            op,
            store: self.describe(),
            path: path.to_string(),
            source,
        }
    }
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn put(&self, path: &str, data: Bytes) -> Result<(), ObjectStoreError> {
        check_path(path)?;
        let target = self.root.join(path);
        let owned_path = path.to_string();
        let result = tokio::task::spawn_blocking(move || write_atomic(&target, &data))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        result.map_err(|e| self.io_err("write", &owned_path, e))
    }

    async fn get(&self, path: &str) -> Result<Bytes, ObjectStoreError> {
        check_path(path)?;
        match tokio::fs::read(self.root.join(path)).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) => Err(self.io_err("read", path, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectStoreError> {
        let root = self.root.clone();
        let prefix_owned = prefix.to_string();
        let listed = tokio::task::spawn_blocking(move || list_dir(&root, &prefix_owned))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        let mut objects = listed.map_err(|e| self.io_err("list", prefix, e))?;
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(objects)
    }

    async fn delete(&self, path: &str) -> Result<(), ObjectStoreError> {
        check_path(path)?;
        match tokio::fs::remove_file(self.root.join(path)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_err("delete", path, e)),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

fn write_atomic(target: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("object path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Temporary names start with '.' so listings skip them.
    let tmp = dir.join(format!(".{}.{}.tmp", file_name, uuid::Uuid::new_v4()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn list_dir(root: &Path, prefix: &str) -> std::io::Result<Vec<ObjectMeta>> {
    // Walk only the deepest directory the prefix names fully.
    let start_rel = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let start = if start_rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(start_rel)
    };
    let mut out = Vec::new();
    let mut stack = vec![start];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let file_type = entry.file_type()?;
            let path = entry.path();
            if file_type.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = match path.strip_prefix(root) {
                Ok(r) => r.to_string_lossy().replace('\\', "/"),
                Err(_) => continue,
            };
            if rel.starts_with(prefix) {
                out.push(ObjectMeta {
                    path: rel,
                    size: entry.metadata()?.len(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().to_path_buf());
        store
            .put("a/b/one", Bytes::from_static(b"1"))
            .await
            .unwrap();
        store
            .put("a/b/two", Bytes::from_static(b"22"))
            .await
            .unwrap();
        store.put("a/c", Bytes::from_static(b"333")).await.unwrap();
        store.put("z", Bytes::from_static(b"4")).await.unwrap();
        assert_eq!(&store.get("a/b/two").await.unwrap()[..], b"22");
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
                ("a/b/one".into(), 1),
                ("a/b/two".into(), 2),
                ("a/c".into(), 3)
            ]
        );
        assert_eq!(store.list("a/b/t").await.unwrap().len(), 1);
        assert_eq!(store.list("").await.unwrap().len(), 4);
        assert!(store.list("nothing/").await.unwrap().is_empty());
        store.delete("a/c").await.unwrap();
        assert!(matches!(
            store.get("a/c").await,
            Err(ObjectStoreError::NotFound { .. })
        ));
        store.delete("a/c").await.unwrap();
    }

    #[tokio::test]
    async fn rejects_escaping_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().to_path_buf());
        for bad in ["../x", "/abs", "a//b", "a/./b", ""] {
            assert!(
                matches!(
                    store.put(bad, Bytes::new()).await,
                    Err(ObjectStoreError::InvalidPath { .. })
                ),
                "{bad}"
            );
        }
    }
}
