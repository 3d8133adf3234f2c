//! Fair shares of the gateway between namespaces (tenants).
//!
//! Every reconcile may spend the gateway's rate limit, which all namespaces share. The controllers' own queues are
//! first come, first served: a tenant that creates 5,000 keys would queue another tenant's first key behind all of
//! them (minutes at the default 20 requests/s). So the controllers admit every reconcile at once, and reconciles
//! wait here instead: at most `slots` run at a time, and a freed slot goes to the namespace next in turn among
//! those waiting (round robin), not to the oldest waiter. A namespace's own reconciles keep their order.
//!
//! A waiting reconcile is a small parked future (its work is boxed only once admitted), so a backlog of thousands
//! costs little memory, and no API-server or gateway request is made before a slot is held.
//!
//! The admitted reconciles then meet again at the gateway's rate limiter. There a gate of one slot takes the next
//! call in the same round robin (the namespace is the admitting reconcile's, carried in a task-local), so a
//! newcomer's call waits for the one call in progress, not behind every admitted call of a busy namespace.
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

tokio::task_local! {
    /// The namespace whose reconcile this task runs.
    static NAMESPACE: String;
}

#[derive(Clone)]
pub struct FairGate {
    inner: Arc<Inner>,
}

struct Inner {
    slots: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: usize,
    /// Waiters per namespace, oldest first.
    waiting: HashMap<String, VecDeque<oneshot::Sender<Slot>>>,
    /// Namespaces with waiters, in turn.
    turn: VecDeque<String>,
}

/// A running reconcile's slot; dropping it hands the slot on.
struct Slot {
    gate: Option<Arc<Inner>>,
}

impl FairGate {
    pub fn new(slots: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                slots: slots.max(1),
                state: Mutex::default(),
            }),
        }
    }

    /// Runs `work` once a slot is free for `namespace`.
    pub async fn run<F, Fut, T>(&self, namespace: &str, work: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let _slot = self.acquire(namespace).await;
        // Boxed only now: the parked future stays small.
        Box::pin(NAMESPACE.scope(namespace.to_owned(), work())).await
    }

    /// Runs `work` once a slot is free for the namespace of the reconcile this task runs (see `run`); calls made
    /// outside any reconcile (the snapshots' listings) take their turn as a namespace of their own.
    pub async fn run_in_turn<F, Fut, T>(&self, work: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let namespace = NAMESPACE.try_with(String::clone).unwrap_or_default();
        let _slot = self.acquire(&namespace).await;
        work().await
    }

    async fn acquire(&self, namespace: &str) -> Slot {
        let rx = {
            let mut st = self.inner.lock();
            if st.running < self.inner.slots && st.turn.is_empty() {
                st.running += 1;
                return Slot {
                    gate: Some(self.inner.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            let queue = st.waiting.entry(namespace.to_owned()).or_default();
            queue.push_back(tx);
            if queue.len() == 1 {
                st.turn.push_back(namespace.to_owned());
            }
            rx
        };
        // The sender is dropped only by `release`, which sends first: an error cannot happen, and would mean running
        // without a slot, the safe failure.
        rx.await.unwrap_or(Slot { gate: None })
    }

    /// How many namespaces have reconciles waiting, and how many wait in all.
    #[cfg(test)]
    fn waiting(&self) -> (usize, usize) {
        let st = self.inner.lock();
        (st.turn.len(), st.waiting.values().map(VecDeque::len).sum())
    }

    #[cfg(test)]
    fn running(&self) -> usize {
        self.inner.lock().running
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a freed slot to the next namespace in turn, or frees it.
    fn release(self: &Arc<Self>) {
        let mut st = self.lock();
        while let Some(ns) = st.turn.pop_front() {
            let Some(queue) = st.waiting.get_mut(&ns) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                st.waiting.remove(&ns);
            } else {
                st.turn.push_back(ns);
            }
            if let Some(tx) = next {
                match tx.send(Slot {
                    gate: Some(self.clone()),
                }) {
                    Ok(()) => return,
                    // That waiter was cancelled (its reconcile dropped): the slot goes to the next one instead.
                    Err(mut slot) => slot.gate = None,
                }
            }
        }
        st.running = st.running.saturating_sub(1);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A namespace with a backlog of 100 does not hold back another namespace's one reconcile: with one slot, the
    /// newcomer runs second, not 101st.
    #[tokio::test]
    async fn a_backlog_in_one_namespace_does_not_starve_another() {
        let gate = FairGate::new(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let (hold_tx, hold_rx) = oneshot::channel::<()>();
        let first = {
            let (gate, order) = (gate.clone(), order.clone());
            tokio::spawn(async move {
                gate.run("a", || async {
                    let _ = hold_rx.await;
                    order
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push("a0".to_owned());
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        let mut tasks = vec![first];
        for i in 1..=100 {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                gate.run("a", || async move {
                    order
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(format!("a{i}"));
                })
                .await
            }));
        }
        while gate.waiting().1 < 100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (g, o) = (gate.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            g.run("b", || async move {
                o.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push("b".to_owned());
            })
            .await
        }));
        while gate.waiting() != (2, 101) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = hold_tx.send(());
        for t in tasks {
            t.await.expect("task");
        }
        let order = order.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(order.len(), 102);
        let b = order.iter().position(|o| o == "b").expect("b ran");
        assert!(b <= 2, "b ran at position {b}: {order:?}");
        // Within a namespace, first come first served.
        let a: Vec<&String> = order.iter().filter(|o| o.starts_with('a')).collect();
        let expected: Vec<String> = (0..=100).map(|i| format!("a{i}")).collect();
        assert_eq!(a, expected.iter().collect::<Vec<_>>());
        assert_eq!(gate.running(), 0);
        assert_eq!(gate.waiting(), (0, 0));
    }

    /// A call's turn at the gateway is its reconcile's namespace's: inside `run`, `run_in_turn` queues as that one.
    #[tokio::test]
    async fn calls_take_the_turn_of_their_reconciles_namespace() {
        let reconciles = FairGate::new(4);
        let calls = FairGate::new(1);
        let (hold_tx, hold_rx) = oneshot::channel::<()>();
        let c = calls.clone();
        let holder =
            tokio::spawn(async move { c.run_in_turn(|| async { hold_rx.await.ok() }).await });
        while calls.running() < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let c = calls.clone();
        let waiter = tokio::spawn(async move {
            reconciles
                .run(
                    "tenant-b",
                    || async move { c.run_in_turn(|| async { 7 }).await },
                )
                .await
        });
        while calls.waiting() != (1, 1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(calls.inner.lock().waiting.contains_key("tenant-b"));
        let _ = hold_tx.send(());
        holder.await.expect("holder");
        assert_eq!(waiter.await.expect("waiter"), 7);
    }

    /// At most `slots` run at once, and a cancelled waiter neither keeps nor loses a slot.
    #[tokio::test]
    async fn slots_bound_concurrency_and_survive_cancellation() {
        let gate = FairGate::new(2);
        let (tx1, rx1) = oneshot::channel::<()>();
        let (tx2, rx2) = oneshot::channel::<()>();
        let g = gate.clone();
        let t1 = tokio::spawn(async move { g.run("a", || async { rx1.await.ok() }).await });
        let g = gate.clone();
        let t2 = tokio::spawn(async move { g.run("b", || async { rx2.await.ok() }).await });
        while gate.running() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let g = gate.clone();
        let cancelled = tokio::spawn(async move { g.run("c", || async {}).await });
        let g = gate.clone();
        let third = tokio::spawn(async move { g.run("d", || async { 3 }).await });
        while gate.waiting().1 < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(gate.running(), 2, "a third reconcile waits");
        cancelled.abort();
        let _ = cancelled.await;
        let _ = tx1.send(());
        t1.await.expect("t1");
        assert_eq!(third.await.expect("third"), 3);
        let _ = tx2.send(());
        t2.await.expect("t2");
        assert_eq!(gate.running(), 0);
        assert_eq!(gate.waiting(), (0, 0));
    }
}
