//! The bound on client connections open at once (`proxy.max_connections`).
//!
//! Every accepted connection takes a [`Slot`] for its lifetime. At the
//! limit, a new connection takes the slot of the longest-idle connection:
//! one waiting for the first byte of its next request, whether a keep-alive
//! connection between requests or a new one that has sent nothing yet. That
//! connection closes without having sent a byte of a request, which HTTP
//! clients treat as a closed keep-alive connection. A request that arrived
//! just as the slot was taken gets 503 before the close, as a refused
//! connection does. When no connection is idle, the new one is refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

const BUSY: u8 = 0;
const IDLE: u8 = 1;
const EVICTED: u8 = 2;

/// The state of one connection, shared between its session and
/// [`Slots`].
#[derive(Debug)]
struct SlotState {
    state: AtomicU8,
    evicted: Notify,
}

/// The outcome of [`Slots::admit`] for a new connection.
#[derive(Debug)]
pub(super) enum Admission {
    /// Below the limit.
    Admitted(Slot),
    /// At the limit: the idle connection `evicted_conn_id` gives up its slot.
    Evicted { slot: Slot, evicted_conn_id: u64 },
    /// At the limit with no idle connection.
    Refused,
}

/// The connections holding a slot, by connection id, so the oldest comes
/// first.
#[derive(Debug, Default)]
pub(super) struct Slots {
    open: Mutex<BTreeMap<u64, Arc<SlotState>>>,
}

impl Slots {
    /// Gives connection `conn_id` a slot when fewer than `limit` are taken,
    /// or takes the slot of the oldest idle connection.
    pub fn admit(self: &Arc<Self>, conn_id: u64, limit: usize) -> Admission {
        let mut open = self.lock();
        let mut evicted_conn_id = None;
        if open.len() >= limit {
            // Oldest first: the ids grow with each accepted connection.
            let idle = open.iter().find(|(_, slot)| {
                slot.state.compare_exchange(IDLE, EVICTED, Ordering::AcqRel, Ordering::Acquire).is_ok()
            });
            let Some((&id, slot)) = idle else {
                return Admission::Refused;
            };
            slot.evicted.notify_one();
            open.remove(&id);
            evicted_conn_id = Some(id);
        }
        let state = Arc::new(SlotState { state: AtomicU8::new(BUSY), evicted: Notify::new() });
        open.insert(conn_id, state.clone());
        let slot = Slot { conn_id, state, slots: self.clone() };
        match evicted_conn_id {
            Some(evicted_conn_id) => Admission::Evicted { slot, evicted_conn_id },
            None => Admission::Admitted(slot),
        }
    }

    /// Returns how many connections hold a slot.
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// Tells whether connection `conn_id` has a slot and waits idle.
    #[cfg(test)]
    pub fn is_idle(&self, conn_id: u64) -> bool {
        self.lock().get(&conn_id).is_some_and(|slot| slot.state.load(Ordering::Acquire) == IDLE)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<SlotState>>> {
        // The map stays consistent whatever a panicking holder did.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's place under the limit, given back on drop.
#[derive(Debug)]
pub(super) struct Slot {
    conn_id: u64,
    state: Arc<SlotState>,
    slots: Arc<Slots>,
}

impl Slot {
    /// Marks the connection idle, so a new connection may take its slot.
    /// Returns false when it was already evicted.
    pub fn set_idle(&self) -> bool {
        self.state.state.compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire).is_ok()
            || self.state.state.load(Ordering::Acquire) == IDLE
    }

    /// Marks the connection busy again once bytes of a request arrived.
    /// Returns false when the slot went to another connection first, in
    /// which case the connection must close without serving the request.
    pub fn set_busy(&self) -> bool {
        match self.state.state.compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(state) => state == BUSY,
        }
    }

    /// Completes when another connection took this slot.
    pub async fn evicted(&self) {
        self.state.evicted.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        // An evicted slot is already gone from the map.
        if open.get(&self.conn_id).is_some_and(|state| Arc::ptr_eq(state, &self.state)) {
            open.remove(&self.conn_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> Slot {
        match admission {
            Admission::Admitted(slot) => slot,
            other => panic!("expected a free slot, got {other:?}"),
        }
    }

    #[test]
    fn below_limit_admits() {
        let slots = Arc::new(Slots::default());
        let first = admitted(slots.admit(1, 2));
        let _second = admitted(slots.admit(2, 2));
        assert_eq!(slots.open(), 2);
        drop(first);
        assert_eq!(slots.open(), 1);
    }

    #[test]
    fn full_of_busy_refuses() {
        let slots = Arc::new(Slots::default());
        let _first = admitted(slots.admit(1, 1));
        assert!(matches!(slots.admit(2, 1), Admission::Refused));
        assert_eq!(slots.open(), 1);
    }

    #[test]
    fn oldest_idle_is_evicted() {
        let slots = Arc::new(Slots::default());
        let first = admitted(slots.admit(1, 3));
        let second = admitted(slots.admit(2, 3));
        let third = admitted(slots.admit(3, 3));
        assert!(second.set_idle());
        assert!(third.set_idle());

        let Admission::Evicted { slot: fourth, evicted_conn_id } = slots.admit(4, 3) else {
            panic!("expected an eviction");
        };
        assert_eq!(evicted_conn_id, 2, "the oldest idle connection goes first");
        assert!(!second.set_busy(), "an evicted connection may not serve its request");
        assert!(first.set_busy(), "a busy connection stays busy");
        assert_eq!(slots.open(), 3);

        drop(second);
        assert_eq!(slots.open(), 3, "the evicted slot was handed over already");
        drop(fourth);
        assert_eq!(slots.open(), 2);
    }

    #[tokio::test]
    async fn eviction_wakes_the_idle_session() {
        let slots = Arc::new(Slots::default());
        let first = admitted(slots.admit(1, 1));
        assert!(first.set_idle());
        assert!(matches!(slots.admit(2, 1), Admission::Evicted { evicted_conn_id: 1, .. }));
        tokio::time::timeout(std::time::Duration::from_secs(5), first.evicted())
            .await
            .expect("the eviction is signalled even when it came before the wait");
    }

    #[test]
    fn busy_again_is_not_evicted() {
        let slots = Arc::new(Slots::default());
        let first = admitted(slots.admit(1, 1));
        assert!(first.set_idle());
        assert!(first.set_busy());
        assert!(matches!(slots.admit(2, 1), Admission::Refused));
    }
}
