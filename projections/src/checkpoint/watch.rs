//! Checkpoint notifications for read-your-writes. Every advance of a checkpoint is announced
//! with PostgreSQL `NOTIFY` in its own transaction (so it is delivered at commit, to every
//! instance), and the runner also announces it in-process. One listener per process and
//! pool keeps the latest checkpoint of each projection in memory: a wait wakes when a
//! projection commits instead of polling, and reads the database again only every
//! [`RECHECK`] in case a notification was lost (the listener reconnecting).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

/// The channel checkpoints are announced on: payload `<name> <seq>`.
pub const CHANNEL: &str = "covenant_checkpoints";

/// How often a waiting request reads the checkpoints itself, notifications or not.
pub(super) const RECHECK: Duration = Duration::from_millis(100);

/// The checkpoints announced since the listener started, and a counter bumped at each
/// announcement (or when the listener lost its connection: waiters read the database).
pub(super) struct Watch {
    seqs: Mutex<HashMap<String, u64>>,
    changed: tokio::sync::watch::Sender<u64>,
    alive: AtomicBool,
}

impl Watch {
    /// Wakes on the next announcement.
    pub(super) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The lowest checkpoint announced among `names` (0 for one not announced yet).
    pub(super) fn reached(&self, names: &[&str]) -> u64 {
        let seqs = self.seqs.lock().unwrap_or_else(PoisonError::into_inner);
        names.iter().map(|n| seqs.get(*n).copied().unwrap_or(0)).min().unwrap_or(0)
    }

    fn set(&self, name: &str, seq: u64) {
        {
            let mut seqs = self.seqs.lock().unwrap_or_else(PoisonError::into_inner);
            let at = seqs.entry(name.to_owned()).or_insert(0);
            *at = (*at).max(seq);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// One watch per pool (by the identity of its connect options), while its listener runs.
static WATCHES: LazyLock<Mutex<HashMap<usize, Arc<Watch>>>> = LazyLock::new(Default::default);

fn key(pool: &PgPool) -> usize {
    Arc::as_ptr(&pool.connect_options()) as usize
}

/// The watch of `pool`, its listener started on the current runtime at first use (`None`
/// outside a runtime: the caller polls).
pub(super) fn of(pool: &PgPool) -> Option<Arc<Watch>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let mut watches = WATCHES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(w) = watches.get(&key(pool))
        && w.alive.load(Ordering::Relaxed)
    {
        return Some(w.clone());
    }
    // A first wait on this pool, or its listener ended: forget the ended ones, start one.
    watches.retain(|_, w| w.alive.load(Ordering::Relaxed));
    let w = Arc::new(Watch {
        seqs: Mutex::default(),
        changed: tokio::sync::watch::Sender::new(0),
        alive: AtomicBool::new(true),
    });
    runtime.spawn(listen(pool.clone(), w.clone()));
    watches.insert(key(pool), w.clone());
    Some(w)
}

/// Tells this process's waiters on `pool` that `name` reached `seq` (the runner, right
/// after its commit; other instances learn it from the notification).
pub fn announce(pool: &PgPool, name: &str, seq: u64) {
    let watch = WATCHES.lock().unwrap_or_else(PoisonError::into_inner).get(&key(pool)).cloned();
    if let Some(w) = watch {
        w.set(name, seq);
    }
}

/// Receives the announcements until the pool closes (or the runtime ends), marking the
/// watch dead when it stops so the next wait starts another.
async fn listen(pool: PgPool, watch: Arc<Watch>) {
    /// Marks the watch dead and wakes its waiters, however the listener ends.
    struct Ended(Arc<Watch>);
    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.alive.store(false, Ordering::Relaxed);
            self.0.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
    let _ended = Ended(watch.clone());
    let mut listener = None;
    loop {
        if pool.is_closed() {
            return;
        }
        let l = match &mut listener {
            Some(l) => l,
            None => match connect(&pool).await {
                Ok(l) => listener.insert(l),
                Err(e) => {
                    tracing::debug!(error = %e, "checkpoint listener cannot connect; waits poll meanwhile");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        match l.try_recv().await {
            Ok(Some(n)) => {
                if let Some((name, seq)) = n.payload().split_once(' ')
                    && let Ok(seq) = seq.parse::<u64>()
                {
                    watch.set(name, seq);
                }
            }
            // The connection was lost (and made again): what was announced meanwhile is
            // lost, so the waiters read the database.
            Ok(None) => watch.changed.send_modify(|n| *n = n.wrapping_add(1)),
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::debug!(error = %e, "checkpoint listener failed; reconnecting");
                listener = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen(CHANNEL).await?;
    Ok(l)
}
