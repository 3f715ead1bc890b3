//! Saving an upload's checkpoint in the background while its APPENDs run.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::checkpoint::{Checkpoint, CheckpointKey, CheckpointStore};
use crate::error::Result;

/// How a save ended.
pub(crate) struct Saved {
    /// Segments the saved checkpoint records as acknowledged.
    pub(crate) segments_acked: u32,
    pub(crate) result: Result<()>,
}

/// Saves one upload's checkpoint to the configured store, one save at a time.
///
/// Acknowledgements only mark the checkpoint dirty; a save starts when none is running, with
/// the state at that moment. So any number of segments completing during one save cost one
/// more save, not one each (coalescing), and the store never sees two saves of one upload
/// racing. A save in progress stays here until it ends, even if the future waiting on it
/// is dropped (a cancel), so a later save or removal can wait for it first: otherwise an
/// older checkpoint could land after a newer one, or after the removal.
pub(crate) struct Saver {
    store: Option<Arc<dyn CheckpointStore>>,
    saving: Option<BoxFuture<'static, Saved>>,
    dirty: bool,
}

impl Saver {
    pub(crate) fn new(store: Option<Arc<dyn CheckpointStore>>) -> Self {
        Saver {
            store,
            saving: None,
            dirty: false,
        }
    }

    /// Notes that the upload's state changed since the last save.
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = self.store.is_some();
    }

    pub(crate) fn is_saving(&self) -> bool {
        self.saving.is_some()
    }

    /// Whether a save should start now: a store is set, the state changed, none is running.
    pub(crate) fn wants_save(&self) -> bool {
        self.dirty && self.saving.is_none() && self.store.is_some()
    }

    /// Starts saving `checkpoint` (built by the caller when [`wants_save`] said so); `None`
    /// (nothing to save yet) only clears the dirty mark.
    ///
    /// [`wants_save`]: Saver::wants_save
    pub(crate) fn start(&mut self, checkpoint: Option<Checkpoint>) {
        self.dirty = false;
        let (Some(store), Some(cp)) = (self.store.clone(), checkpoint) else {
            return;
        };
        let segments_acked = u32::try_from(cp.acked.len()).unwrap_or(u32::MAX);
        self.saving = Some(
            async move {
                let key = cp.key();
                let result = store.save(&key, &cp).await;
                Saved {
                    segments_acked,
                    result,
                }
            }
            .boxed(),
        );
    }

    /// Waits for the save in progress to end (forever if there is none). Cancel-safe: if
    /// the returned future is dropped, the save stays in progress here.
    pub(crate) async fn next(&mut self) -> Saved {
        match self.saving.as_mut() {
            Some(f) => {
                let saved = f.await;
                self.saving = None;
                saved
            }
            None => futures::future::pending().await,
        }
    }

    /// Waits for the save in progress, then removes the checkpoints under `keys` and stops
    /// saving. Returns the failures.
    pub(crate) async fn remove(&mut self, keys: &[CheckpointKey]) -> Vec<crate::Error> {
        let mut failures = Vec::new();
        if self.saving.is_some() {
            if let Err(e) = self.next().await.result {
                failures.push(e);
            }
        }
        self.dirty = false;
        let Some(store) = self.store.take() else {
            return failures;
        };
        for key in keys {
            if let Err(e) = store.remove(key).await {
                failures.push(e);
            }
        }
        failures
    }
}
