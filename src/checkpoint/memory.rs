//! A checkpoint store in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Checkpoint, CheckpointClaim, CheckpointKey, CheckpointStore, claimed_error};
use crate::error::Result;

/// Keeps checkpoints in memory, encoded in the file format (so a checkpoint that cannot be
/// written to a file cannot be saved here either). For tests, and for an application that
/// persists them its own way. Lost when dropped.
#[derive(Debug, Default)]
pub struct MemoryCheckpointStore {
    entries: Mutex<BTreeMap<CheckpointKey, Vec<u8>>>,
    claims: Arc<Mutex<BTreeSet<CheckpointKey>>>,
}

/// A claim of the memory store: the key is released when it is dropped.
struct MemoryClaim {
    claims: Arc<Mutex<BTreeSet<CheckpointKey>>>,
    key: CheckpointKey,
}

impl Drop for MemoryClaim {
    fn drop(&mut self) {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl MemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryCheckpointStore::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<CheckpointKey, Vec<u8>>) -> R) -> R {
        // Every operation leaves the map consistent, so a poisoned lock is used as is.
        f(&mut self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The stored bytes under `key`, as a file would hold them.
    pub fn raw(&self, key: &CheckpointKey) -> Option<Vec<u8>> {
        self.with(|m| m.get(key).cloned())
    }

    /// Stores raw bytes under `key`, as if a file held them (to test corrupt data).
    pub fn insert_raw(&self, key: CheckpointKey, data: Vec<u8>) {
        self.with(|m| m.insert(key, data));
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn load<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, Result<Option<Checkpoint>>> {
        let raw = self.raw(key);
        async move { raw.map(|d| Checkpoint::from_bytes(&d)).transpose() }.boxed()
    }

    fn save<'a>(
        &'a self,
        key: &'a CheckpointKey,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let data = checkpoint.to_bytes()?;
            self.with(|m| m.insert(key.clone(), data));
            Ok(())
        }
        .boxed()
    }

    fn remove<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, Result<()>> {
        self.with(|m| m.remove(key));
        futures::future::ready(Ok(())).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointKey>>> {
        let keys = self.with(|m| m.keys().cloned().collect());
        futures::future::ready(Ok(keys)).boxed()
    }

    fn claim<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, Result<CheckpointClaim>> {
        let fresh = self
            .claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        let result = if fresh {
            Ok(CheckpointClaim::new(MemoryClaim {
                claims: Arc::clone(&self.claims),
                key: key.clone(),
            }))
        } else {
            Err(claimed_error(key, "another upload in this process"))
        };
        async move { result }.boxed()
    }
}
