//! The counters etcd reports at `/v2/stats/store`. Atomic so that reads, which only take the
//! store's shared lock, can count themselves.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

macro_rules! counters {
    ($($field:ident => $json:literal),* $(,)?) => {
        #[derive(Debug, Default)]
        pub(crate) struct Stats {
            $(pub $field: AtomicU64,)*
        }

        /// A copy of the counters, serialised with etcd's names and order.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct StoreStats {
            $(#[serde(rename = $json)] pub $field: u64,)*
            pub watchers: u64,
        }

        impl Stats {
            pub fn read(&self, watchers: u64) -> StoreStats {
                StoreStats {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                    watchers,
                }
            }

            pub fn restore(counts: &StoreStats) -> Stats {
                Stats {
                    $($field: AtomicU64::new(counts.$field),)*
                }
            }
        }
    };
}

counters! {
    gets_success => "getsSuccess",
    gets_fail => "getsFail",
    sets_success => "setsSuccess",
    sets_fail => "setsFail",
    delete_success => "deleteSuccess",
    delete_fail => "deleteFail",
    update_success => "updateSuccess",
    update_fail => "updateFail",
    create_success => "createSuccess",
    create_fail => "createFail",
    compare_and_swap_success => "compareAndSwapSuccess",
    compare_and_swap_fail => "compareAndSwapFail",
    compare_and_delete_success => "compareAndDeleteSuccess",
    compare_and_delete_fail => "compareAndDeleteFail",
    expire_count => "expireCount",
}

impl Stats {
    /// Counts one operation's outcome in its success or failure counter.
    pub fn count<T, E>(success: &AtomicU64, fail: &AtomicU64, result: &Result<T, E>) {
        let counter = if result.is_ok() { success } else { fail };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl StoreStats {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("stats always serialise")
    }
}
